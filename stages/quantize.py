"""DVC stage quantize: INT8 (or, with bits 4, INT4 weight-only) quantization of the pruned
model, accuracy-aware. A pruned model with weights that 4 bits cannot pack exits 2."""

from pathlib import Path

from slimline.compression.calibration import stratified_sample
from slimline.compression.data import load_splits
from slimline.compression.quantize import quantize
from slimline.core.atomic import atomic_paths, write_json
from slimline.core.params import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    paths, q = params.paths, params.quantize
    train, val, test = load_splits(root / paths.prepared)
    calib_x, _ = stratified_sample(train.x, train.y, q.calibration_samples, params.seed)
    targets = [root / paths.quantized_onnx, root / paths.quantize_metrics]
    with atomic_paths(targets) as (model_tmp, metrics_tmp):
        report = quantize(
            root / paths.pruned_onnx, model_tmp, calib_x=calib_x, val_x=val.x, val_y=val.y,
            test_x=test.x, test_y=test.y, q=q,
        )  # fmt: skip
        write_json(metrics_tmp, report)
    how = q.mode if q.bits == 8 else "4-bit weight-only"
    return (
        f"quantize ({how}): {report['fp32_size_bytes']:,} -> {report['int8_size_bytes']:,} "
        f"bytes, test accuracy {report['fp32_accuracy']:.4f} -> {report['int8_accuracy']:.4f}, "
        f"{len(report['excluded_nodes'])} node(s) kept in FP32"
    )


if __name__ == "__main__":
    run_stage("quantize", main)
