"""DVC stage prune: structured channel pruning in steps, each fine-tuned with KD."""

from pathlib import Path

from slimline.compression.data.store import load_splits
from slimline.compression.models.checkpoints import load_checkpoint
from slimline.compression.models.teacher import load_teacher
from slimline.compression.release.outputs import finish_model, model_outputs
from slimline.compression.training.augment import from_mode
from slimline.compression.training.device import accelerator, out_of_memory_hint
from slimline.compression.training.fit import CsvCurve, distill_loss, seed_everything
from slimline.compression.training.pruning import prune_and_finetune
from slimline.core.atomic import write_json
from slimline.core.params.schema import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    seed_everything(params.seed, params.threads, params.reproducible)
    train, val, test = load_splits(root / params.paths.prepared, lazy=True)
    student = load_checkpoint(root / params.paths.student)
    teacher = load_teacher(root / params.paths.teacher)
    acc, augment = accelerator(params.device, params.precision), from_mode(params.data.augment)
    kd = distill_loss(teacher, train, params.distill, acc, augment)
    with model_outputs(root, params, "pruned") as out, out_of_memory_hint(acc, "student"):
        curve = CsvCurve(out.curve)
        pruned, report = prune_and_finetune(
            student, kd, train, val, params.prune,
            batch_size=params.student.batch_size, weight_decay=params.student.weight_decay,
            seed=params.seed, callbacks=[curve], acc=acc, augment=augment,
            loader_workers=params.loader_workers,
        )  # fmt: skip
        curve.flush()  # ratio 0 fine-tunes nothing: the curve is then a header alone
        metrics = report | finish_model(pruned, out, test, params) | acc.describe()
        write_json(out.metrics, metrics)
    return (
        f"pruned: {metrics['params_before']:,} -> {metrics['params_after']:,} params, "
        f"test accuracy {metrics['accuracy']:.4f}"
    )


if __name__ == "__main__":
    run_stage("prune", main)
