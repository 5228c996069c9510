"""The benchmark stage's figures: every variant through onnxruntime, same inputs, interleaved.

Besides the four contract variants (teacher_fp32, student_fp32, pruned_fp32, final_int8) it
measures the pruned model quantized dynamically, for comparison with the static INT8 model,
and reads the speed-up gate (teacher / final batch-1 latency) from the figures. With
quantize.bits 4 the final model holds INT4 weights; the INT8 model the quantize stage makes
with bits 8 is rebuilt here (same calibration sample) and compared with it. `final_int8` keeps
its contract name whichever variant export shipped; the report names that variant, and the
CPU's instruction sets, since the INT8 / FP32 ranking changes with them. `latency` measures
and draws; this module decides what is measured and what the report and the page say.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slimline.compression.data.dataset import Split
from slimline.compression.data.store import load_splits
from slimline.compression.models.onnx_teacher import TeacherFeed, feed_logits, teacher_feed
from slimline.compression.release.gates import Gate
from slimline.compression.release.latency import compare, markdown_table, measure_many
from slimline.compression.release.objective import FP32
from slimline.compression.runtime.calibration import stratified_sample
from slimline.compression.runtime.int8_target import warning
from slimline.compression.runtime.onnx_io import read_metadata, run_logits, session
from slimline.compression.runtime.quantize import quantize
from slimline.compression.scores import accuracy, confusion_matrix, predictions
from slimline.core.atomic import read_json
from slimline.core.cpu import cpu_info, describe
from slimline.core.params.schema import Params

INT8 = "pruned_int8_static"  # with quantize.bits 4: the INT8 model it is compared with
Variants = dict[str, tuple[Path, int]]  # name -> (ONNX file, parameter count)
# text: batch-1 latency also at these lengths (a short query; the default max_len), where
# below the data's max_len (at max_len it is latency_ms_b1_p50 itself)
TOKEN_LENGTHS = (16, 64)


@dataclass
class Benchmark:
    """What the stage writes: reports/benchmark.json (`report`), reports/benchmark.md (`page`),
    the trade-off plot (of `variants`) and the final model's confusion matrix."""

    params: Params
    variants: list[dict[str, Any]]  # one row per variant, as reports/benchmark.json lists them
    speedup: float  # teacher / final batch-1 p50 latency
    gate: Gate  # min_speedup
    final_variant: dict[str, str]  # what export shipped as final_int8: variant, objective
    cpu: dict[str, Any]
    cpu_warning: str | None  # a native INT8 model on a CPU that lacks what it needs
    int4: tuple[dict[str, Any], str] | None  # bits 4: the comparison with INT8 and its table
    confusion: np.ndarray  # (K, K) of the final model on the test split

    def report(self) -> dict[str, Any]:
        b = self.params.benchmark
        report = {
            "threads": b.threads,
            "cpu": self.cpu,
            "final_variant": self.final_variant,
            "variants": self.variants,
            "speedup": self.speedup,
            "speedup_gate": self.gate.as_dict(),
            "cpu_warning": self.cpu_warning,
        }
        return report | ({} if self.int4 is None else {"int4_vs_int8": self.int4[0]})

    def page(self) -> str:
        b, final = self.params.benchmark, self.final_variant
        title = f"# Benchmark ({b.threads} thread(s), batch-1 latency after {b.warmup} warm-ups)"
        head = (f"CPU: {describe(self.cpu)}.\n\nfinal_int8 is dist/model.onnx: "
                f"`{final['variant']}` (export.objective {final['objective']}).")  # fmt: skip
        if self.cpu_warning:
            head += f"\n\n**Warning:** {self.cpu_warning}"
        more = "" if self.int4 is None else self.int4[1]
        if self.params.data.source == "text":
            more += _token_table(self.variants, self.params.data.max_len)
        return f"{title}\n\n{head}\n\n{markdown_table(self.variants)}{more}"

    def summary(self) -> str:
        final = self.final_variant["variant"]
        precision = "FP32" if final == FP32 else f"INT{self.params.quantize.bits}"
        failed = "" if self.gate.passed else f" (gate min_speedup {self.gate.threshold:g} FAILED)"
        return (
            f"benchmark: final {precision} {self.speedup:.2f}x faster than the teacher at "
            f"batch 1{failed}"
        )


def contract_variants(params: Params, root: Path) -> Variants:
    """The four variants every report lists, with the parameter counts their stages wrote."""
    paths = params.paths
    metrics = {role: read_json(root / getattr(paths, f"{role}_metrics"))
               for role in ("teacher", "student", "pruned")}  # fmt: skip
    return {
        "teacher_fp32": (root / paths.teacher_onnx, metrics["teacher"]["params"]),
        "student_fp32": (root / paths.student_onnx, metrics["student"]["params"]),
        "pruned_fp32": (root / paths.pruned_onnx, metrics["pruned"]["params"]),
        "final_int8": (root / paths.dist / "model.onnx", metrics["pruned"]["params"]),
    }


def run_benchmark(params: Params, root: Path, test: Split) -> Benchmark:
    """Measure every variant on the test split (the contract four, the pruned model quantized
    dynamically and, with bits 4, the INT8 reference) and decide the speed-up gate."""
    paths, q = params.paths, params.quantize
    models = contract_variants(params, root)
    # an imported ONNX teacher is called as it asks (raw values, its shape, a fixed batch)
    teacher = read_json(root / paths.teacher_metrics)
    feed = teacher_feed(teacher, test.mean, test.std, test.scale)
    feeds = {} if feed is None else {"teacher_fp32": feed}
    with tempfile.TemporaryDirectory(prefix="slimline-bench-") as tmp:
        extra = _comparison_variants(params, root, test, models, Path(tmp))
        variants, logits = _measure(params, test, models | extra, feeds)
    int4 = _int4_comparison(variants, q.mode) if q.bits == 4 else None
    by_name = {v["name"]: v for v in variants}
    speedup = (
        by_name["teacher_fp32"]["latency_ms_b1_p50"] / by_name["final_int8"]["latency_ms_b1_p50"]
    )
    shipped = read_json(root / paths.dist / "settings.json")["variant"]
    cpu = cpu_info()
    return Benchmark(
        params=params,
        variants=variants,
        speedup=speedup,
        gate=Gate("min_speedup", speedup, params.gates.min_speedup, "min"),
        final_variant={k: shipped[k] for k in ("variant", "objective")},
        cpu=cpu,
        cpu_warning=warning(read_metadata(models["final_int8"][0]), cpu),
        int4=int4,
        confusion=confusion_matrix(test.y, predictions(logits["final_int8"]), test.num_classes),
    )


def _comparison_variants(
    params: Params, root: Path, test: Split, models: Variants, tmp: Path
) -> Variants:
    """The pruned model quantized dynamically and, with bits 4 (static), the INT8 model the
    quantize stage writes with bits 8; both in `tmp`."""
    q, pruned_fp32, n_params = params.quantize, models["pruned_fp32"][0], models["pruned_fp32"][1]
    dynamic = tmp / "pruned_int8_dynamic.onnx"
    quantize(pruned_fp32, dynamic, calib_x=test.x[:0], val_x=test.x, val_y=test.y,
             test_x=test.x, test_y=test.y,
             q=q.model_copy(update={"mode": "dynamic", "bits": 8}))  # fmt: skip
    extra = {"pruned_int8_dynamic": (dynamic, n_params)}
    if q.bits == 4 and q.mode == "static":
        extra[INT8] = (_int8_reference(params, root, tmp), n_params)
    return extra


def _measure(
    params: Params, test: Split, models: Variants, feeds: dict[str, TeacherFeed]
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Each variant's row (accuracy, size, params, latencies, throughput) and test logits.
    A text teacher with a tokenizer of its own reads its own ids of the same texts."""
    b = params.benchmark
    own = {"teacher_fp32": test.for_teacher().x} if test.teacher_x is not None else {}
    timings = measure_many(
        {name: path for name, (path, _) in models.items()}, test.x[:1],
        test.x[: b.throughput_batch], threads=b.threads, warmup=b.warmup, runs=b.runs,
        throughput_runs=b.throughput_runs, feeds=feeds, own_x=own, token_lengths=TOKEN_LENGTHS,
    )  # fmt: skip
    logits = {
        name: feed_logits(feeds[name], session(path), own.get(name, test.x)) if name in feeds
        else run_logits(session(path), own.get(name, test.x))
        for name, (path, _) in models.items()
    }  # fmt: skip
    variants = [
        {"name": name, "accuracy": accuracy(logits[name], test.y),
         "size_bytes": path.stat().st_size, "params": n_params} | timings[name]
        for name, (path, n_params) in models.items()
    ]  # fmt: skip
    return variants, logits


def _token_table(variants: list[dict[str, Any]], max_len: int) -> str:
    """Batch-1 p50 of each variant at each measured sequence length, and the speed-up over
    the teacher at that length (n/a: a model whose graph takes no such length)."""
    lengths = sorted({n for n in TOKEN_LENGTHS if n < max_len} | {max_len})

    def p50(v: dict[str, Any], n: int) -> float | None:
        return v["latency_ms_b1_p50"] if n == max_len else v.get(f"latency_ms_b1_p50_{n}tok")

    teacher = next(v for v in variants if v["name"] == "teacher_fp32")
    head = "| variant | " + " | ".join(f"{n} tokens: p50 (ms), speed-up" for n in lengths) + " |"
    rows = [head, "|" + " --- |" * (len(lengths) + 1)]
    for v in variants:
        cells = []
        for n in lengths:
            ms, ref = p50(v, n), p50(teacher, n)
            cells.append("n/a" if ms is None else
                         f"{ms:.4f}" + ("" if ref is None else f", {ref / ms:.2f}x"))  # fmt: skip
        rows.append(f"| {v['name']} | " + " | ".join(cells) + " |")
    return "\n## Batch 1 by sequence length (text)\n\n" + "\n".join(rows) + "\n"


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
