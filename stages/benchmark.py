"""DVC stage benchmark: every variant through onnxruntime, same inputs, interleaved.

Also measures the pruned model quantized dynamically, for comparison with the static INT8
model, and reads the speed-up gate (teacher / final batch-1 latency) from the figures. With
quantize.bits 4 the final model holds INT4 weights; the INT8 model the quantize stage makes
with bits 8 is rebuilt here (same calibration sample) and compared with it. `final_int8` keeps
its contract name whichever variant export shipped; the report names that variant, and the
CPU's instruction sets, since the INT8 / FP32 ranking changes with them.
"""

import logging
import tempfile
from pathlib import Path

from slimline.compression.data.store import load_split, load_splits
from slimline.compression.models.onnx_teacher import feed_logits, teacher_feed
from slimline.compression.release.gates import Gate
from slimline.compression.release.latency import (
    compare,
    markdown_table,
    measure_many,
    tradeoff_plot,
)
from slimline.compression.release.objective import FP32
from slimline.compression.runtime.calibration import stratified_sample
from slimline.compression.runtime.int8_target import warning
from slimline.compression.runtime.onnx_io import read_metadata, run_logits, session
from slimline.compression.runtime.quantize import quantize
from slimline.compression.scores import accuracy, confusion_matrix, plot_confusion, predictions
from slimline.core.atomic import atomic_paths, read_json, write_json
from slimline.core.cpu import cpu_info, describe
from slimline.core.params.schema import Params
from slimline.core.stage import run_stage

log = logging.getLogger("slimline")
INT8 = "pruned_int8_static"  # with quantize.bits 4: the INT8 model it is compared with


def main(params: Params, root: Path) -> str:
    paths, b = params.paths, params.benchmark
    test = load_split(root / paths.prepared, "test", lazy=True)
    metrics = {role: read_json(root / getattr(paths, f"{role}_metrics"))
               for role in ("teacher", "student", "pruned")}  # fmt: skip
    models = {
        "teacher_fp32": (root / paths.teacher_onnx, metrics["teacher"]["params"]),
        "student_fp32": (root / paths.student_onnx, metrics["student"]["params"]),
        "pruned_fp32": (root / paths.pruned_onnx, metrics["pruned"]["params"]),
        "final_int8": (root / paths.dist / "model.onnx", metrics["pruned"]["params"]),
    }
    # an imported ONNX teacher is called as it asks (raw values, its shape, a fixed batch)
    feed = teacher_feed(metrics["teacher"], test.mean, test.std, test.scale)
    feeds = {} if feed is None else {"teacher_fp32": feed}
    with tempfile.TemporaryDirectory(prefix="slimline-bench-") as tmp:
        dynamic = Path(tmp) / "pruned_int8_dynamic.onnx"
        quantize(models["pruned_fp32"][0], dynamic, calib_x=test.x[:0], val_x=test.x,
                 val_y=test.y, test_x=test.x, test_y=test.y,
                 q=params.quantize.model_copy(update={"mode": "dynamic", "bits": 8}))  # fmt: skip
        models["pruned_int8_dynamic"] = (dynamic, metrics["pruned"]["params"])
        if params.quantize.bits == 4 and params.quantize.mode == "static":
            models[INT8] = (_int8_reference(params, root, Path(tmp)), metrics["pruned"]["params"])
        timings = measure_many(
            {name: path for name, (path, _) in models.items()}, test.x[:1],
            test.x[: b.throughput_batch], threads=b.threads, warmup=b.warmup, runs=b.runs,
            throughput_runs=b.throughput_runs, feeds=feeds,
        )  # fmt: skip
        logits = {
            name: feed_logits(feeds[name], session(path), test.x) if name in feeds
            else run_logits(session(path), test.x)
            for name, (path, _) in models.items()
        }  # fmt: skip
        variants = [
            {"name": name, "accuracy": accuracy(logits[name], test.y),
             "size_bytes": path.stat().st_size, "params": n_params} | timings[name]
            for name, (path, n_params) in models.items()
        ]  # fmt: skip
    int4 = _int4_comparison(variants, params.quantize.mode) if params.quantize.bits == 4 else None
    speedup = (
        timings["teacher_fp32"]["latency_ms_b1_p50"] / timings["final_int8"]["latency_ms_b1_p50"]
    )
    gate = Gate("min_speedup", speedup, params.gates.min_speedup, "min")
    shipped = read_json(root / paths.dist / "settings.json")["variant"]
    final_variant = {k: shipped[k] for k in ("variant", "objective")}
    final, cpu = final_variant["variant"], cpu_info()
    cpu_warning = warning(read_metadata(models["final_int8"][0]), cpu)  # a native INT8 model
    cm = confusion_matrix(test.y, predictions(logits["final_int8"]), test.num_classes)
    targets = [root / p for p in (paths.benchmark_report, paths.benchmark_table,
                                  paths.tradeoff_plot, paths.confusion_plot)]  # fmt: skip
    with atomic_paths(targets) as (report_tmp, table_tmp, tradeoff_tmp, confusion_tmp):
        write_json(report_tmp, {"threads": b.threads, "cpu": cpu, "final_variant": final_variant,
                                "variants": variants, "speedup": speedup,
                                "speedup_gate": gate.as_dict(), "cpu_warning": cpu_warning}
                   | ({} if int4 is None else {"int4_vs_int8": int4[0]}))  # fmt: skip
        title = f"# Benchmark ({b.threads} thread(s), batch-1 latency after {b.warmup} warm-ups)"
        head = (f"CPU: {describe(cpu)}.\n\nfinal_int8 is dist/model.onnx: `{final}` "
                f"(export.objective {final_variant['objective']}).")  # fmt: skip
        if cpu_warning:
            head += f"\n\n**Warning:** {cpu_warning}"
        more = "" if int4 is None else int4[1]
        table_tmp.write_text(f"{title}\n\n{head}\n\n{markdown_table(variants)}{more}")
        tradeoff_plot(variants, tradeoff_tmp)
        plot_confusion(cm, test.class_names, confusion_tmp)
    precision = "FP32" if final == FP32 else f"INT{params.quantize.bits}"
    if cpu_warning:
        log.warning("warning: %s", cpu_warning)
    return f"benchmark: final {precision} {speedup:.2f}x faster than the teacher at batch 1" + (
        "" if gate.passed else f" (gate min_speedup {gate.threshold:g} FAILED)"
    )


def _int4_comparison(variants: list[dict], mode: str) -> tuple[dict, str]:
    """Mark the final row as 4-bit (it keeps its contract name) and compare it with the INT8
    model of the same pruned network: the figures for the report and a table for the page."""
    reference = INT8 if mode == "static" else "pruned_int8_dynamic"
    next(v for v in variants if v["name"] == "final_int8")["bits"] = 4
    rows = [v for v in variants if v["name"] in ("pruned_fp32", reference, "final_int8")]
    table = markdown_table(rows, reference=reference)
    heading = "## 4-bit weights against INT8, same pruned network"
    return compare(variants, "final_int8", reference), f"\n{heading}\n\n{table}"


def _int8_reference(params: Params, root: Path, tmp: Path) -> Path:
    """The INT8 model the quantize stage writes with bits 8: same calibration sample, val
    split and fallback, so the comparison with the INT4 final model is like for like."""
    train, val, test = load_splits(root / params.paths.prepared, lazy=True)
    q = params.quantize.model_copy(update={"bits": 8})
    calib_x, _ = stratified_sample(train.x, train.y, q.calibration_samples, params.seed)
    out = tmp / f"{INT8}.onnx"
    quantize(root / params.paths.pruned_onnx, out, calib_x=calib_x, val_x=val.x, val_y=val.y,
             test_x=test.x, test_y=test.y, q=q)  # fmt: skip
    return out


if __name__ == "__main__":
    run_stage("benchmark", main)
