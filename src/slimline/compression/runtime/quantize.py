"""Post-training quantization with onnxruntime, an accuracy-aware fallback, a small file.

static:  quant_pre_process -> calibrate once -> quantize_static (QDQ, U8S8) -> compact
dynamic: quant_pre_process -> quantize_dynamic (INT8 weights)             -> compact
INT8 weights are 7-bit or 8-bit by `quantize.target` (int8_target.py: U8S8 saturates on CPUs
without VNNI unless they are 7-bit); calibration ranges are rounded to a grid
(calibration.round_ranges) so that CPUs whose FP32 kernels differ in the last bit agree.
bits 4:  Gemm -> MatMul -> MatMulNBits (block-wise INT4 weights, float activations; int4.py)
When the quantized val accuracy falls more than `max_accuracy_drop` below FP32, the most damaging
nodes are kept in FP32 (`nodes_to_exclude`), one more per round, up to `max_excluded_nodes`.
The best attempt is returned either way: the validate stage's gates decide, not this step.
QAT (`quantize.qat`, static INT8 only): when the fallback's budget is spent and the drop is
still out of bound (`auto`), or always (`always`), the caller's fine-tuning (qat.py) makes new
FP32 weights, which go through the very same quantizer; the file shipped is whichever of PTQ /
QAT is within bound, the smaller if both are (ties: PTQ), the more accurate if neither is.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slimline.compression.runtime import int4, sensitivity
from slimline.compression.runtime.calibration import BATCH, batch_reader, range_cache
from slimline.compression.runtime.compact import compact_file
from slimline.compression.runtime.int8_target import Int8Target, choose
from slimline.compression.runtime.onnx_io import (
    add_metadata,
    file_feeds,
    is_text_file,
    run_logits,
    session,
)
from slimline.compression.scores import accuracy, agreement
from slimline.core.atomic import atomic_path
from slimline.core.cpu import cpu_info
from slimline.core.errors import InputError
from slimline.core.params.release import Quantize

log = logging.getLogger(__name__)

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
# quantize_static runs entropy with 128 bins and 128 quantized bins: a single candidate
# threshold, the full range, so "entropy" came out byte-identical to minmax. We calibrate
# ourselves with room for the KL search (512 bins: ~1 s on a small CNN; 2048 took 6 s).
CALIBRATOR_OPTIONS = {"entropy": {"num_bins": 512, "num_quantized_bins": 128}}
SENSITIVITY_SAMPLES = 512
# what static quantization may touch in a text model: its linear layers and the embedding table
TEXT_STATIC_OPS = ("MatMul", "Gemm", "Gather")
EPS = 1e-9  # accuracies are fractions k/n: compare with a margin, not exactly


# writes fine-tuned FP32 weights as ONNX at the path given, for the INT8 format given (its
# weight range); returns what it did (the report's)
QatFn = Callable[[Path, Int8Target], dict[str, Any]]


class QuantizeError(RuntimeError):
    """onnxruntime failed to quantize; the cause is chained."""


class QatUnavailable(RuntimeError):
    """QAT cannot run here (e.g. the checkpoint is not the model the ONNX file holds): the
    PTQ result stays, and the report says why."""


@dataclass
class _Attempt:
    """One way to an INT8 file (PTQ of the pruned model, or of its QAT weights): its best round."""

    builder: Any
    best: dict
    rounds: list[dict]
    ranking: list[dict]
    drop: float
    within: bool

    @property
    def size(self) -> int:
        return Path(self.best["path"]).stat().st_size

    def summary(self) -> dict[str, Any]:
        return {
            "val_accuracy": self.best["val_accuracy"],
            "drop": round(self.drop, 6),
            "within_bound": self.within,
            "excluded_nodes": self.best["excluded"],
            "size_bytes": self.size,
        }


def quantize(
    fp32_path: str | Path,
    out_path: str | Path,
    *,
    calib_x: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    q: Quantize,
    threads: int = 1,
    qat: QatFn | None = None,
    cpu: dict | None = None,
) -> dict[str, Any]:
    """Quantize fp32_path to out_path (atomically); return the metrics/quantize.json content.

    `qat` (static INT8 only) is called when q.qat asks for QAT; the report then gains `path`
    (ptq | qat), `path_reason`, and a summary of each candidate (`ptq`, `qat`). Without it
    (the benchmark's reference quantizations) this is PTQ whatever q.qat says.

    With q.bits 4 the report keeps the int8_* keys (their readers: export, the registry) for
    the INT4 model's figures, and adds bits, block_sizes, symmetric and accuracy_level.

    `cpu` (core.cpu.cpu_info of this machine by default) decides `quantize.target: native`."""
    q = q.resolved(is_text_file(fp32_path))
    if q.bits == 8 and q.mode == "static" and len(calib_x) == 0:
        raise QuantizeError("static quantization needs calibration samples; or set mode: dynamic")
    if qat is not None and q.qat == "always" and (q.bits != 8 or q.mode != "static"):
        raise InputError(
            "quantize.qat: always fine-tunes for static INT8 quantization; set mode: static and "
            f"bits: 8, or qat: auto / never (got mode {q.mode!r}, bits {q.bits})"
        )
    fp32_path = Path(fp32_path)
    fp32 = session(fp32_path, threads)
    fp32_val = accuracy(run_logits(fp32, val_x), val_y)
    fmt = choose(q.target, cpu_info() if cpu is None else cpu)
    search: dict[str, Any] = {"val_x": val_x, "val_y": val_y, "fp32_val": fp32_val, "q": q,
                              "threads": threads}  # fmt: skip
    decision: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="slimline-quantize-") as tmp:
        chosen = ptq = _attempt(fp32_path, Path(tmp) / "ptq", calib_x, fmt, **search)
        if qat is not None and _wants_qat(q, ptq):
            chosen, decision = _with_qat(ptq, qat, Path(tmp) / "qat", calib_x, fmt, search)
        best, rounds, ranking, builder = chosen.best, chosen.rounds, chosen.ranking, chosen.builder
        with atomic_path(out_path) as out:
            shutil.copyfile(best["path"], out)
    fp32_test, int8_test = run_logits(fp32, test_x), run_logits(session(out_path, threads), test_x)
    fp32_size, int8_size = fp32_path.stat().st_size, Path(out_path).stat().st_size
    within = chosen.within
    if not within:
        log.warning(
            "INT%d val accuracy %.4f is still more than %.4f below FP32 %.4f with %d nodes in FP32",
            q.bits,
            best["val_accuracy"],
            q.max_accuracy_drop,
            fp32_val,
            len(best["excluded"]),
        )
    made = (
        _settings(q, len(calib_x), fmt)
        if isinstance(builder, _Builder)
        else int4.settings(builder.block_sizes(best["excluded"]), q.max_accuracy_drop)
    )
    return {
        **made,
        "fp32_size_bytes": fp32_size,
        "int8_size_bytes": int8_size,
        "size_ratio": round(fp32_size / int8_size, 4),
        "fp32_val_accuracy": fp32_val,
        "int8_val_accuracy": best["val_accuracy"],
        "fp32_accuracy": accuracy(fp32_test, test_y),
        "int8_accuracy": accuracy(int8_test, test_y),
        "agreement": agreement(int8_test, fp32_test),
        "excluded_nodes": best["excluded"],
        "fallback_rounds": len(rounds) - 1,
        "rounds": [
            {"excluded_nodes": r["excluded"], "val_accuracy": r["val_accuracy"]} for r in rounds
        ],
        "sensitivity": ranking[: max(q.max_excluded_nodes, len(best["excluded"]))],
        "within_bound": within,
    } | decision


def _attempt(
    fp32_path: Path, tmp: Path, calib_x: np.ndarray, fmt: Int8Target, **search: Any
) -> _Attempt:
    """Quantize one FP32 file, with the fallback: its best round."""
    q, val_x = search["q"], search["val_x"]
    tmp.mkdir()
    builder: _Builder | int4.Int4Builder = (
        _Builder(fp32_path, tmp, q, fmt, calib_x, val_x[:BATCH])
        if q.bits == 8
        else int4.Int4Builder(fp32_path, tmp, val_x[:BATCH])
    )
    best, rounds, ranking = _search(builder, **search)
    drop = search["fp32_val"] - best["val_accuracy"]
    return _Attempt(builder, best, rounds, ranking, drop, drop <= q.max_accuracy_drop + EPS)


def _wants_qat(q: Quantize, ptq: _Attempt) -> bool:
    if q.bits != 8 or q.mode != "static" or q.qat == "never":
        return False
    return q.qat == "always" or not ptq.within


def _with_qat(
    ptq: _Attempt,
    qat: QatFn,
    tmp: Path,
    calib_x: np.ndarray,
    fmt: Int8Target,
    search: dict[str, Any],
) -> tuple[_Attempt, dict[str, Any]]:
    """Fine-tune, quantize the new weights the same way, pick; the report's decision keys.
    The drop stays measured against the pruned FP32 model this stage was given."""
    tmp.mkdir()
    start = time.perf_counter()
    try:
        done = qat(tmp / "qat_fp32.onnx", fmt)
    except QatUnavailable as e:
        log.warning("QAT not run: %s", e)
        return ptq, {"path": "ptq", "path_reason": f"qat not run: {e}", "ptq": ptq.summary()}
    log.info("QAT fine-tuning took %.1f s", time.perf_counter() - start)  # not in metrics
    fp32_qat = accuracy(
        run_logits(session(tmp / "qat_fp32.onnx"), search["val_x"]), search["val_y"]
    )
    fine = _attempt(tmp / "qat_fp32.onnx", tmp / "int8", calib_x, fmt, **search)
    path, why = _choose(ptq, fine, search["q"])
    log.info("quantize path %s: %s", path, why)
    return (fine if path == "qat" else ptq), {
        "path": path,
        "path_reason": why,
        "ptq": ptq.summary(),
        "qat": fine.summary() | done | {"fp32_val_accuracy": fp32_qat},
    }


def _choose(ptq: _Attempt, qat: _Attempt, q: Quantize) -> tuple[str, str]:
    """Within bound wins; both within: the smaller file (ties: PTQ); neither: the more
    accurate (ties: PTQ)."""
    bound = q.max_accuracy_drop
    ptq_says = f"ptq drop {ptq.drop:.4f} with {len(ptq.best['excluded'])} nodes in FP32"
    qat_says = f"qat drop {qat.drop:.4f} with {len(qat.best['excluded'])} nodes in FP32"
    if ptq.within and qat.within:
        size = f"{qat.size:,} vs {ptq.size:,} bytes"
        if qat.size < ptq.size:
            return "qat", f"both within {bound:g} ({ptq_says}; {qat_says}); qat is smaller: {size}"
        return "ptq", f"both within {bound:g} ({ptq_says}; {qat_says}); qat is not smaller: {size}"
    if qat.within:
        return "qat", f"{ptq_says} > {bound:g}; {qat_says} within bound"
    if ptq.within:
        return "ptq", f"{ptq_says} within bound; {qat_says} > {bound:g}"
    if qat.best["val_accuracy"] > ptq.best["val_accuracy"]:
        return "qat", f"neither within {bound:g} ({ptq_says}; {qat_says}); qat is more accurate"
    return "ptq", f"neither within {bound:g} ({ptq_says}; {qat_says}); qat is not more accurate"


def _settings(q: Quantize, calibration_samples: int, fmt: Int8Target) -> dict[str, Any]:
    """Every setting that made the file, so the metrics document themselves."""
    static = q.mode == "static"
    return fmt.report() | {
        "mode": q.mode,
        "calibration_method": q.calibration_method if static else "none",
        "calibration_samples": calibration_samples if static else 0,
        "per_channel": q.per_channel,
        "max_accuracy_drop": q.max_accuracy_drop,
    }


def _search(builder, val_x, val_y, fp32_val, q, threads) -> tuple[dict, list[dict], list[dict]]:
    """Round 0 quantizes everything; each further round keeps one more node in FP32."""

    def attempt(excluded: list[str]) -> dict:
        path = builder.build(excluded, round_=len(rounds))
        acc = accuracy(run_logits(session(path, threads), val_x), val_y)
        rounds.append({"excluded": list(excluded), "val_accuracy": acc, "path": path})
        return rounds[-1]

    rounds: list[dict] = []
    best = attempt([])
    ranking: list[dict] = []
    if fp32_val - best["val_accuracy"] > q.max_accuracy_drop + EPS and q.max_excluded_nodes:
        ranking = builder.ranking(val_x[:SENSITIVITY_SAMPLES])
        for k in range(1, min(q.max_excluded_nodes, len(ranking)) + 1):
            result = attempt([r["node"] for r in ranking[:k]])
            if result["val_accuracy"] > best["val_accuracy"]:  # ties keep fewer FP32 nodes
                best = result
            if fp32_val - result["val_accuracy"] <= q.max_accuracy_drop + EPS:
                break
    return best, rounds, ranking


class _Builder:
    """Owns the temp dir: pre-processed model, calibration ranges, one INT8 file per round."""

    def __init__(
        self, fp32_path: Path, tmp: Path, q: Quantize, fmt: Int8Target, calib_x, check_x
    ) -> None:
        from onnxruntime.quantization import CalibrationMethod
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.tmp, self.q, self.fmt, self.calib_x, self.check_x = tmp, q, fmt, calib_x, check_x
        self.pre, self.raw0 = tmp / "pre.onnx", tmp / "raw0.onnx"
        self.text = is_text_file(fp32_path)
        self.method = getattr(CalibrationMethod, METHODS[q.calibration_method])
        with _step("pre-processing"):
            quant_pre_process(str(fp32_path), str(self.pre))
        self.feed = file_feeds(self.pre)  # how every round's calibration reader feeds it
        self.cache = None
        if q.mode == "static":  # calibrated once: every round reuses the ranges
            options = CALIBRATOR_OPTIONS.get(q.calibration_method, {})
            with _step("calibration"):
                self.cache = range_cache(self.pre, calib_x, self.method, options, tmp)

    def build(self, excluded: list[str], round_: int) -> Path:
        from onnxruntime.quantization import (
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )

        raw = self.tmp / f"raw{round_}.onnx"
        common = {
            "per_channel": self.q.per_channel,
            "reduce_range": self.fmt.reduce_range,
            "nodes_to_exclude": excluded,
        }
        if self.text and self.q.mode == "static":
            # the attention mask's large negative inside a Where ruins a QDQ range: static
            # text models scored 0.22 against 0.75 in FP32 on TREC-6 with every op quantized
            common["op_types_to_quantize"] = list(TEXT_STATIC_OPS)
        with _step(f"{self.q.mode} quantization"):
            if self.q.mode == "static":
                reader = batch_reader(self.calib_x, self.feed)
                quantize_static(
                    str(self.pre), str(raw), reader, QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8,
                    weight_type=getattr(QuantType, self.fmt.weight_type),
                    calibrate_method=self.method, calibration_cache_path=str(self.cache), **common,
                )  # fmt: skip
            else:
                quantize_dynamic(
                    str(self.pre),
                    str(raw),
                    weight_type=getattr(QuantType, self.fmt.weight_type),
                    **common,
                )
        small = compact_file(raw, self.tmp / f"int8_{round_}.onnx", self.check_x)
        add_metadata(small, small, self.fmt.metadata())  # which CPUs compute it exactly
        return small

    def ranking(self, x: np.ndarray) -> list[dict]:
        if self.q.mode == "static":
            return sensitivity.activation_ranking(self.pre, self.raw0, x, self.tmp)
        return sensitivity.weight_ranking(self.pre)


@contextlib.contextmanager
def _step(what: str) -> Iterator[None]:
    """Wrap onnxruntime failures as QuantizeError with the step named and the cause chained."""
    try:
        yield
    except Exception as e:
        raise QuantizeError(f"{what} failed: {type(e).__name__}: {e}") from e
