"""DVC stage prune: structured channel pruning in steps, each fine-tuned with KD."""

from pathlib import Path

from slimline.compression.data.store import load_splits
from slimline.compression.models.checkpoints import load_checkpoint
from slimline.compression.models.teacher import load_teacher
from slimline.compression.release.outputs import finish_model, model_outputs
from slimline.compression.training.device import out_of_memory_hint
from slimline.compression.training.fit import CsvCurve, distill_loss, seed_everything
from slimline.compression.training.pruning import prune_and_finetune
from slimline.compression.training.setup import finetune_setup
from slimline.core.atomic import write_json
from slimline.core.params.schema import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    seed_everything(params.seed, params.threads, params.reproducible)
    train, val, test = load_splits(root / params.paths.prepared, lazy=True)
    student = load_checkpoint(root / params.paths.student)
    teacher = load_teacher(root / params.paths.teacher)
    setup = finetune_setup(params, train, val)  # prune's epochs and lr, the student's batches
    kd = distill_loss(teacher, setup, params.distill)
    with model_outputs(root, params, "pruned") as out, out_of_memory_hint(setup.acc, "student"):
        curve = CsvCurve(out.curve)
        pruned, report = prune_and_finetune(student, setup, kd, params.prune, [curve])
        curve.flush()  # ratio 0 fine-tunes nothing: the curve is then a header alone
        metrics = report | finish_model(pruned, out, test, params) | setup.acc.describe()
        write_json(out.metrics, metrics)
    return (
        f"pruned: {metrics['params_before']:,} -> {metrics['params_after']:,} params, "
        f"test accuracy {metrics['accuracy']:.4f}"
    )


if __name__ == "__main__":
    run_stage("prune", main)
