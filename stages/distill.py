"""DVC stage distill: the student learns from soft targets (and labels), in `distill.mode`.

offline: from the frozen teacher (models/teacher.pt); online: together with a peer of the
teacher's architecture, both from scratch (the teacher's checkpoint is not read); self: from
earlier generations of itself (nor here). `compression.distill_modes` says how. The same
student (same seed, init, epochs and augmented views) is also trained from labels alone, so
every run records whether distillation helped (kd_gain); in self mode it is generation 0.
"""

from functools import partial
from pathlib import Path

from slimline.compression import distill_modes
from slimline.compression.augment import from_mode
from slimline.compression.data import load_splits
from slimline.compression.device import accelerator, out_of_memory_hint
from slimline.compression.evaluate import accuracy, agreement
from slimline.compression.models import build_model
from slimline.compression.publish import finish_model, model_outputs
from slimline.compression.sizing import check_sizes
from slimline.compression.teacher import OnnxTeacher, load_teacher
from slimline.compression.train import CsvCurve, predict_logits, seed_everything
from slimline.core.atomic import write_json
from slimline.core.params import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    seed_everything(params.seed, params.threads)
    train, val, test = load_splits(root / params.paths.prepared, lazy=True)
    shape, classes, mode = train.input_shape, train.num_classes, params.distill.mode
    check_sizes(params, shape, classes)  # exit 2: not smaller
    if mode == "offline":  # the only mode that learns from the teacher's checkpoint
        teacher = load_teacher(root / params.paths.teacher)
        if isinstance(teacher, OnnxTeacher):  # an imported teacher's size is known once loaded
            check_sizes(params, shape, classes, teacher.param_count)
    acc, augment = accelerator(params.device, params.precision), from_mode(params.data.augment)
    schedule = distill_modes.Schedule(
        params.student, train, val, params.seed, acc, augment, params.loader_workers
    )

    def new_student():
        seed_everything(params.seed, params.threads)  # identical init for every student
        return build_model(params.student, shape, classes)

    with out_of_memory_hint(acc, "student"):
        baseline = new_student()
        base_history = schedule.fit(baseline, "student (labels)")
    base_accuracy = accuracy(predict_logits(baseline, test.x), test.y)

    with model_outputs(root, params, "student") as out, out_of_memory_hint(acc, "student"):
        curve, d = [CsvCurve(out.curve)], params.distill
        if mode == "offline":
            result = distill_modes.offline(teacher, new_student, schedule, d, curve)
        elif mode == "online":
            peer = partial(build_model, params.teacher, shape, classes, "teacher")
            result = distill_modes.online(new_student, peer, schedule, d, curve)
        else:
            result = distill_modes.born_again(
                baseline, base_history, new_student, schedule, d, curve
            )
        metrics = finish_model(result.student, out, test, params)
        taught = predict_logits(acc.prepare(result.teacher), test.x, acc=acc)
        metrics |= {
            "val_accuracy": result.history.best.val_accuracy,
            "best_epoch": result.history.best_epoch,
            "baseline_accuracy": base_accuracy,
            "baseline_val_accuracy": base_history.best.val_accuracy,
            "kd_gain": metrics["accuracy"] - base_accuracy,
            # of what taught the student: the teacher, the online peer, generation n-1
            "teacher_accuracy": accuracy(taught, test.y),
            "teacher_agreement": agreement(predict_logits(result.student, test.x), taught),
            "mode": mode,
            "temperature": d.temperature,
            "alpha": d.alpha,
            "teacher_logits": result.teacher_logits,
            "augment": params.data.augment,
        }
        metrics |= result.figures(test, acc) | acc.describe()
        write_json(out.metrics, metrics)
    return (
        f"student ({mode} KD): test accuracy {metrics['accuracy']:.4f} with KD, "
        f"{base_accuracy:.4f} from labels alone (gain {metrics['kd_gain']:+.4f})"
    )


if __name__ == "__main__":
    run_stage("distill", main)
