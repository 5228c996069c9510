"""DVC stage quantize: INT8 (or, with bits 4, INT4 weight-only) quantization of the pruned
model, accuracy-aware. A pruned model with weights that 4 bits cannot pack exits 2.

With `quantize.qat` (auto: only when PTQ and its FP32 fallback stay out of bound) the pruned
checkpoint is fine-tuned with fake quantization and KD from the teacher (prune's epochs and lr,
on `device`), and the better of PTQ / QAT ships; the teacher is loaded only then."""

from pathlib import Path

from slimline.compression.data.dataset import Split
from slimline.compression.data.store import load_splits
from slimline.compression.runtime.calibration import stratified_sample
from slimline.compression.runtime.int8_target import Int8Target
from slimline.compression.runtime.quantize import QatFn, QatUnavailable, quantize
from slimline.core.atomic import atomic_paths, write_json
from slimline.core.params.schema import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    paths, q = params.paths, params.quantize
    train, val, test = load_splits(root / paths.prepared, lazy=True)  # read in batches
    calib_x, _ = stratified_sample(train.x, train.y, q.calibration_samples, params.seed)
    targets = [root / paths.quantized_onnx, root / paths.quantize_metrics]
    with atomic_paths(targets) as (model_tmp, metrics_tmp):
        report = quantize(
            root / paths.pruned_onnx, model_tmp, calib_x=calib_x, val_x=val.x, val_y=val.y,
            test_x=test.x, test_y=test.y, q=q, qat=_qat(params, root, train, val, calib_x),
        )  # fmt: skip
        write_json(metrics_tmp, report)
    how = q.mode if q.bits == 8 else "4-bit weight-only"
    path = f" via {report['path']}" if "path" in report else ""
    return (
        f"quantize ({how}{path}): {report['fp32_size_bytes']:,} -> {report['int8_size_bytes']:,} "
        f"bytes, test accuracy {report['fp32_accuracy']:.4f} -> {report['int8_accuracy']:.4f}, "
        f"{len(report['excluded_nodes'])} node(s) kept in FP32"
    )


def _qat(params: Params, root: Path, train: Split, val: Split, calib_x) -> QatFn:
    """QAT of the pruned checkpoint, as prune fine-tunes it (KD, epochs, lr, device)."""

    def finetune(out: Path, fmt: Int8Target) -> dict:
        from slimline.compression.models.checkpoints import load_checkpoint
        from slimline.compression.models.teacher import load_teacher
        from slimline.compression.runtime.onnx_io import ParityError, check_parity
        from slimline.compression.training.augment import from_mode
        from slimline.compression.training.device import accelerator, out_of_memory_hint
        from slimline.compression.training.fit import distill_loss, seed_everything
        from slimline.compression.training.qat import finetune_qat

        seed_everything(params.seed, params.threads, params.reproducible)
        model = load_checkpoint(root / params.paths.pruned)
        try:  # QAT can only fine-tune the model the quantized file came from
            check_parity(model, root / params.paths.pruned_onnx, val.x[:128], 1e-3)
        except ParityError as e:
            raise QatUnavailable(f"{params.paths.pruned} is not the model in {e}") from None
        teacher = load_teacher(root / params.paths.teacher)
        acc, augment = accelerator(params.device, params.precision), from_mode(params.data.augment)
        kd = distill_loss(teacher, train, params.distill, acc, augment)
        with out_of_memory_hint(acc, "student"):
            done = finetune_qat(
                model, kd, train, val, calib_x, out, epochs=params.prune.finetune_epochs,
                lr=params.prune.lr, batch_size=params.student.batch_size,
                weight_decay=params.student.weight_decay, seed=params.seed,
                per_channel=params.quantize.per_channel, weight_grid=fmt.weight_grid,
                opset=params.export.opset, acc=acc, augment=augment,
                loader_workers=params.loader_workers,
            )  # fmt: skip
        return done | {"source": str(params.paths.pruned)} | acc.describe()

    return finetune


if __name__ == "__main__":
    run_stage("quantize", main)
