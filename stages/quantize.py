"""DVC stage quantize: INT8 (or, with bits 4, INT4 weight-only) quantization of the pruned
model, accuracy-aware. A pruned model with weights that 4 bits cannot pack exits 2.

With `quantize.qat` (auto: only when PTQ and its FP32 fallback stay out of bound) the pruned
checkpoint is fine-tuned with fake quantization and KD from the teacher (prune's epochs and lr,
on `device`: `release.pruned_qat`), and the better of PTQ / QAT ships; the teacher is loaded
only then."""

from pathlib import Path

from slimline.compression.data.store import load_splits
from slimline.compression.release.pruned_qat import pruned_qat
from slimline.compression.runtime.calibration import stratified_sample
from slimline.compression.runtime.quantize import quantize
from slimline.core.atomic import atomic_paths, write_json
from slimline.core.params.schema import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    paths, q = params.paths, params.quantize
    train, val, test = load_splits(root / paths.prepared, lazy=True)  # read in batches
    calib_x, _ = stratified_sample(train.x, train.y, q.calibration_samples, params.seed)
    targets = [root / paths.quantized_onnx, root / paths.quantize_metrics]
    qat = pruned_qat(params, root, train, val, calib_x)  # runs only if quantize asks for it
    with atomic_paths(targets) as (model_tmp, metrics_tmp):
        report = quantize(
            root / paths.pruned_onnx, model_tmp, calib_x=calib_x, val_x=val.x, val_y=val.y,
            test_x=test.x, test_y=test.y, q=q, qat=qat,
        )  # fmt: skip
        write_json(metrics_tmp, report)
    how = q.mode if q.bits == 8 else "4-bit weight-only"
    path = f" via {report['path']}" if "path" in report else ""
    return (
        f"quantize ({how}{path}): {report['fp32_size_bytes']:,} -> {report['int8_size_bytes']:,} "
        f"bytes, test accuracy {report['fp32_accuracy']:.4f} -> {report['int8_accuracy']:.4f}, "
        f"{len(report['excluded_nodes'])} node(s) kept in FP32"
    )


if __name__ == "__main__":
    run_stage("quantize", main)
