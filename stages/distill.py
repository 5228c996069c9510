"""DVC stage distill: the student learns from soft targets (and labels), in `distill.mode`.

offline: from the frozen teacher (models/teacher.pt); online: together with a peer of the
teacher's architecture, both from scratch (the teacher's checkpoint is not read); self: from
earlier generations of itself (nor here). `compression.distill_modes` says how. The same
student (same seed, init, epochs and augmented views) is also trained from labels alone, so
every run records whether distillation helped (kd_gain, on test); in self mode it is generation
0. Whichever of the two scores higher on val ships (`distillation.choose_student`; a tie keeps
the distilled one); the curve is the distilled student's either way.
"""

from functools import partial
from pathlib import Path

from slimline.compression.data.store import load_splits
from slimline.compression.models.families import build_model
from slimline.compression.models.sizing import check_sizes
from slimline.compression.models.teacher import OnnxTeacher, load_teacher
from slimline.compression.release.outputs import finish_model, model_outputs
from slimline.compression.scores import accuracy, agreement
from slimline.compression.training import distillation
from slimline.compression.training.augment import from_mode
from slimline.compression.training.device import accelerator, out_of_memory_hint
from slimline.compression.training.fit import CsvCurve, predict_logits, seed_everything
from slimline.core.atomic import write_json
from slimline.core.params.schema import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    seed_everything(params.seed, params.threads, params.reproducible)
    train, val, test = load_splits(root / params.paths.prepared, lazy=True)
    shape, classes, mode = train.input_shape, train.num_classes, params.distill.mode
    check_sizes(params, shape, classes)  # exit 2: not smaller
    if mode == "offline":  # the only mode that learns from the teacher's checkpoint
        teacher = load_teacher(root / params.paths.teacher)
        if isinstance(teacher, OnnxTeacher):  # an imported teacher's size is known once loaded
            check_sizes(params, shape, classes, teacher.param_count)
    acc, augment = accelerator(params.device, params.precision), from_mode(params.data.augment)
    schedule = distillation.Schedule(
        params.student, train, val, params.seed, acc, augment, params.loader_workers
    )

    def new_student():
        # identical init for every student
        seed_everything(params.seed, params.threads, params.reproducible)
        return build_model(params.student, shape, classes)

    with out_of_memory_hint(acc, "student"):
        baseline = new_student()
        base_history = schedule.fit(baseline, "student (labels)")
    base_logits = predict_logits(baseline, test.x)  # now, on the CPU: self mode moves it
    base_accuracy = accuracy(base_logits, test.y)

    with model_outputs(root, params, "student") as out, out_of_memory_hint(acc, "student"):
        curve, d = [CsvCurve(out.curve)], params.distill
        if mode == "offline":
            result = distillation.offline(teacher, new_student, schedule, d, curve)
        elif mode == "online":
            peer = partial(build_model, params.teacher, shape, classes, "teacher")
            result = distillation.online(new_student, peer, schedule, d, curve)
        else:
            result = distillation.born_again(
                baseline, base_history, new_student, schedule, d, curve
            )
        kd_logits = predict_logits(result.student, test.x)
        distilled_accuracy = accuracy(kd_logits, test.y)
        shipped, why = distillation.choose_student(
            result.history.best.val_accuracy, base_history.best.val_accuracy
        )
        labels = shipped == "labels"
        student, history = (baseline, base_history) if labels else (result.student, result.history)
        metrics = finish_model(distillation.on_cpu(student), out, test, params)
        taught = predict_logits(acc.prepare(result.teacher), test.x, acc=acc)
        metrics |= {
            # accuracy, loss, val_accuracy, best_epoch: the shipped student's
            "val_accuracy": history.best.val_accuracy,
            "best_epoch": history.best_epoch,
            "shipped": shipped,
            "shipped_reason": why,
            "distilled_accuracy": distilled_accuracy,
            "distilled_val_accuracy": result.history.best.val_accuracy,
            "baseline_accuracy": base_accuracy,
            "baseline_val_accuracy": base_history.best.val_accuracy,
            "kd_gain": distilled_accuracy - base_accuracy,  # on test: a report, not the choice
            # of what taught the distilled student: the teacher, the online peer, generation
            # n-1; the agreement is the shipped student's with it
            "teacher_accuracy": accuracy(taught, test.y),
            "teacher_agreement": agreement(base_logits if labels else kd_logits, taught),
            "mode": mode,
            "temperature": d.temperature,
            "alpha": d.alpha,
            "teacher_logits": result.teacher_logits,
            "augment": params.data.augment,
        }
        metrics |= result.figures(test, acc) | acc.describe()
        write_json(out.metrics, metrics)
    return (
        f"student ({mode} KD): test accuracy {distilled_accuracy:.4f} with KD, "
        f"{base_accuracy:.4f} from labels alone (gain {metrics['kd_gain']:+.4f}); "
        f"shipped the {shipped} student ({why})"
    )


if __name__ == "__main__":
    run_stage("distill", main)
