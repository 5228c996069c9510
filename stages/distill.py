"""DVC stage distill: the student learns from the teacher's soft targets (and labels).

The same student (same seed, init, epochs and augmented views) is also trained from labels
alone, so every run records whether distillation helped (kd_gain). With `data.augment`, the
teacher's logits are those of each augmented batch (online KD); otherwise they are computed
once for the train split (offline).
"""

from pathlib import Path

from slimline.compression.augment import from_mode
from slimline.compression.data import load_splits
from slimline.compression.device import accelerator, out_of_memory_hint
from slimline.compression.evaluate import accuracy, agreement
from slimline.compression.models import build_model
from slimline.compression.publish import finish_model, model_outputs
from slimline.compression.sizing import check_sizes
from slimline.compression.teacher import OnnxTeacher, load_teacher
from slimline.compression.train import (
    CsvCurve,
    distill_loss,
    fit_spec,
    predict_logits,
    seed_everything,
)
from slimline.core.atomic import write_json
from slimline.core.params import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    seed_everything(params.seed, params.threads)
    train, val, test = load_splits(root / params.paths.prepared, lazy=True)
    check_sizes(params, train.input_shape, train.num_classes)  # exit 2: not smaller
    teacher = load_teacher(root / params.paths.teacher)
    if isinstance(teacher, OnnxTeacher):  # an imported teacher's size is known once loaded
        check_sizes(params, train.input_shape, train.num_classes, teacher.param_count)
    acc, augment = accelerator(params.device, params.precision), from_mode(params.data.augment)
    kd = distill_loss(teacher, train, params.distill, acc, augment)
    spec = params.student
    where = {
        "acc": acc, "augment": augment, "seed": params.seed,
        "loader_workers": params.loader_workers,
    }  # fmt: skip

    def new_student():
        seed_everything(params.seed, params.threads)  # identical init for both students
        return build_model(spec, train.input_shape, train.num_classes)

    with out_of_memory_hint(acc, "student"):
        baseline = new_student()
        base_history = fit_spec(baseline, spec, train, val, desc="student (labels)", **where)
    base_accuracy = accuracy(predict_logits(baseline, test.x), test.y)

    student = new_student()
    with model_outputs(root, params, "student") as out, out_of_memory_hint(acc, "student"):
        history = fit_spec(
            student, spec, train, val, loss_fn=kd, callbacks=[CsvCurve(out.curve)],
            desc="student (KD)", **where,
        )  # fmt: skip
        metrics = finish_model(student, out, test, params)
        metrics |= {
            "val_accuracy": history.best.val_accuracy,
            "best_epoch": history.best_epoch,
            "baseline_accuracy": base_accuracy,
            "baseline_val_accuracy": base_history.best.val_accuracy,
            "kd_gain": metrics["accuracy"] - base_accuracy,
            "teacher_agreement": agreement(
                predict_logits(student, test.x), predict_logits(teacher, test.x, acc=acc)
            ),
            "temperature": params.distill.temperature,
            "alpha": params.distill.alpha,
            "kd": "online" if augment else "offline",
            "augment": params.data.augment,
        } | acc.describe()
        write_json(out.metrics, metrics)
    return (
        f"student: test accuracy {metrics['accuracy']:.4f} with KD, "
        f"{base_accuracy:.4f} from labels alone (gain {metrics['kd_gain']:+.4f})"
    )


if __name__ == "__main__":
    run_stage("distill", main)
