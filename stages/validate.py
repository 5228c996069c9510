"""DVC stage validate: the accuracy and size gates on dist/model.onnx.

A failed gate is a result written to reports/gates.json (exit 0), not a crash: promotion
reads the verdict.
"""

from pathlib import Path

from slimline.compression.data import load_split
from slimline.compression.evaluate import accuracy, agreement
from slimline.compression.gates import Gate, describe_failures, report
from slimline.compression.onnx_io import run_logits, session
from slimline.core.atomic import read_json, write_json
from slimline.core.params import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    paths, g = params.paths, params.gates
    test = load_split(root / paths.prepared, "test", lazy=True)
    final = root / paths.dist / "model.onnx"
    logits = run_logits(session(final), test.x)
    fp32_logits = run_logits(session(root / paths.pruned_onnx), test.x)
    acc = accuracy(logits, test.y)
    size = final.stat().st_size
    gates = [
        Gate("min_accuracy", acc, g.min_accuracy, "min"),
        Gate("max_accuracy_drop", read_json(root / paths.teacher_metrics)["accuracy"] - acc,
             g.max_accuracy_drop, "max"),
        Gate("min_agreement", agreement(logits, fp32_logits), g.min_agreement, "min"),
        Gate("max_size_bytes", size, g.max_size_bytes, "max"),
        Gate("min_compression", (root / paths.teacher_onnx).stat().st_size / size,
             g.min_compression, "min"),
    ]  # fmt: skip
    write_json(root / paths.gates_report, report(gates))
    failures = describe_failures(gates)
    return "gates passed" if not failures else "gates FAILED: " + "; ".join(failures)


if __name__ == "__main__":
    run_stage("validate", main)
