"""Which INT8 format is right on every CPU: accuracy and speed of the candidates for
`quantize.target: portable`, on the pipeline's pruned model, natively and under an emulated
AVX2-only CPU.

Run by hand from the repo root (not by CI), after `dvc repro quantize`:

    .venv/bin/python bench/int8_formats.py [--no-qemu]

Formats, all static QDQ per-channel with the quantize stage's calibration (same stratified
train sample, MinMax, ranges on slimline's grid):
- U8S8 8-bit: uint8 activations, int8 weights (onnxruntime's default; exact only with
  VNNI/AMX; what `native` ships on such a CPU)
- U8S8 7-bit: the same with `reduce_range` (what `native` ships on a CPU without VNNI)
- U8U8: uint8 weights too (what `portable` ships)
- S8S8: int8 activations
Each is scored on the test split here and, unless --no-qemu, again in a child process under
`qemu-x86_64 -cpu Haswell` (AVX2, no AVX-512 / VNNI): the U8S8 saturation shows as a
different accuracy there on a VNNI machine, and here on an AVX2 one against FP32. Latency
(batch 1, p50) and throughput (batch 64) come from `bench.measure_many`, natively only.
Writes bench/results/int8_formats.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from published import publish, python, table_head

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from slimline.compression.data.store import load_splits  # noqa: E402
from slimline.compression.release.latency import measure_many  # noqa: E402
from slimline.compression.runtime.calibration import (  # noqa: E402
    batch_reader,
    range_cache,
    stratified_sample,
)
from slimline.compression.runtime.onnx_io import file_feeds, run_logits, session  # noqa: E402
from slimline.compression.scores import accuracy, agreement  # noqa: E402
from slimline.core.cpu import cpu_info, describe  # noqa: E402
from slimline.core.params.loading import load_params  # noqa: E402

# name: (activation type, weight type, reduce_range)
FORMATS = {
    "U8S8 8-bit (native, VNNI/AMX)": ("QUInt8", "QInt8", False),
    "U8S8 7-bit (native, no VNNI)": ("QUInt8", "QInt8", True),
    "U8U8 (portable)": ("QUInt8", "QUInt8", False),
    "S8S8": ("QInt8", "QInt8", False),
}


def build(pre: Path, out: Path, calib_x: np.ndarray, fmt: tuple[str, str, bool], tmp: Path):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    cache = tmp / "calibration.json"
    if not cache.exists():  # the quantize stage's ranges: the same sample, method and grid
        range_cache(pre, calib_x, CalibrationMethod.MinMax, {}, tmp)
    act, weight, reduce = fmt
    reader = batch_reader(calib_x, file_feeds(pre))
    quantize_static(
        str(pre), str(out), reader, QuantFormat.QDQ, per_channel=True,
        activation_type=getattr(QuantType, act), weight_type=getattr(QuantType, weight),
        reduce_range=reduce, calibration_cache_path=str(cache),
    )  # fmt: skip


def score(paths: dict[str, Path], test_npz: Path) -> dict[str, list[int]]:
    """Top-1 predictions of each model on the test split (run in this process)."""
    with np.load(test_npz) as z:
        x = z["x"]
    return {name: run_logits(session(p), x).argmax(1).tolist() for name, p in paths.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-qemu", action="store_true")
    parser.add_argument("--score", nargs=2, metavar=("MODELS_JSON", "TEST_NPZ"))
    args = parser.parse_args()
    if args.score:  # the child under qemu
        paths = {k: Path(v) for k, v in json.loads(Path(args.score[0]).read_text()).items()}
        print(json.dumps(score(paths, Path(args.score[1]))))
        return
    from onnxruntime.quantization.shape_inference import quant_pre_process

    params = load_params(ROOT / "params.yaml")
    train, val, test = load_splits(ROOT / params.paths.prepared, lazy=False)
    calib_x, _ = stratified_sample(train.x, train.y, params.quantize.calibration_samples,
                                   params.seed)  # fmt: skip
    fp32 = ROOT / params.paths.pruned_onnx
    with tempfile.TemporaryDirectory(prefix="int8-formats-") as t:
        tmp = Path(t)
        pre = tmp / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        paths = {"FP32": fp32}
        for name, fmt in FORMATS.items():
            paths[name] = tmp / f"{name.split()[0]}_{len(paths)}.onnx"
            build(pre, paths[name], calib_x, fmt, tmp)
        logits = {n: run_logits(session(p), test.x) for n, p in paths.items()}
        times = measure_many(paths, test.x[:1], test.x[:64], threads=1, warmup=50, runs=500,
                             throughput_runs=30)  # fmt: skip
        emulated = {}
        if not args.no_qemu and shutil.which("qemu-x86_64"):
            np.savez(tmp / "test.npz", x=test.x)
            (tmp / "models.json").write_text(json.dumps({k: str(v) for k, v in paths.items()}))
            child = [__file__, "--score", str(tmp / "models.json"), str(tmp / "test.npz")]
            emulated = json.loads(python(child, haswell=True).strip().splitlines()[-1])
    rows = []
    for name in paths:
        pred = logits[name].argmax(1)
        row = {
            "format": name,
            "accuracy": accuracy(logits[name], test.y),
            "agreement_fp32": agreement(logits[name], logits["FP32"]),
            "latency_ms_b1_p50": times[name]["latency_ms_b1_p50"],
            "throughput_b64": times[name]["throughput_b64"],
        }
        if emulated:
            haswell = np.asarray(emulated[name])
            row["haswell_accuracy"] = float(np.mean(haswell == test.y))
            row["haswell_same_predictions"] = bool(np.array_equal(haswell, pred))
        rows.append(row)
    columns = ["format", "accuracy", "agreement with FP32", "b1 p50 ms", "b64 img/s"]
    columns += ["Haswell accuracy", "same predictions"] if emulated else []
    lines = [f"# INT8 formats on the pruned model ({len(test.y)} test samples)", "",
             f"CPU: {describe(cpu_info())}. 1 thread.", "", *table_head(columns)]  # fmt: skip
    for r in rows:
        line = (f"| {r['format']} | {r['accuracy']:.4f} | {r['agreement_fp32']:.4f} | "
                f"{r['latency_ms_b1_p50']:.4f} | {r['throughput_b64']:,.0f} |")  # fmt: skip
        if emulated:
            line += f" {r['haswell_accuracy']:.4f} | {r['haswell_same_predictions']} |"
        lines.append(line)
    publish("int8_formats", lines, {"cpu": cpu_info(), "rows": rows})


if __name__ == "__main__":
    main()
