"""DVC stage validate: the accuracy and size gates on dist/model.onnx.

A failed gate is a result written to reports/gates.json (exit 0), not a crash: promotion
reads the verdict. The report also names the variant judged and why export chose it
(dist/settings.json). The accuracy gates carry their 95% interval: the drop against the
teacher compares the teacher FP32 ONNX and the model on the same test rows.
"""

from pathlib import Path

from slimline.compression.data.store import load_split
from slimline.compression.models.onnx_teacher import teacher_logits
from slimline.compression.release.gates import (
    Evidence,
    describe_failures,
    model_gates,
    report,
    undecidable_notes,
)
from slimline.compression.runtime.onnx_io import run_logits, session
from slimline.compression.scores import predictions
from slimline.core.atomic import read_json, write_json
from slimline.core.params.schema import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    paths = params.paths
    test = load_split(root / paths.prepared, "test", lazy=True)
    final = root / paths.dist / "model.onnx"
    logits = run_logits(session(final), test.x)
    fp32_logits = run_logits(session(root / paths.pruned_onnx), test.x)
    teacher_metrics = read_json(root / paths.teacher_metrics)
    teacher = teacher_logits(root / paths.teacher_onnx, teacher_metrics, test)
    evidence = Evidence.of(predictions(logits), predictions(teacher), predictions(fp32_logits),
                           test.y)  # fmt: skip
    gates = model_gates(
        params.gates,
        evidence,
        size_bytes=final.stat().st_size,
        teacher_size_bytes=(root / paths.teacher_onnx).stat().st_size,
    )
    chosen = read_json(root / paths.dist / "settings.json")["variant"]
    variant = {k: chosen[k] for k in ("variant", "objective", "reason")}
    write_json(root / paths.gates_report, report(gates) | {"judged": variant})
    failures = describe_failures(gates)
    judged = f"{variant['variant']} (objective {variant['objective']})"
    notes = "".join(f"\n  {note}" for note in undecidable_notes(gates))
    return (
        f"gates passed on {judged}"
        if not failures
        else (f"gates FAILED on {judged}: " + "; ".join(failures))
    ) + notes


if __name__ == "__main__":
    run_stage("validate", main)
