"""DVC stage distill: the student learns from soft targets (and labels), in `distill.mode`.

offline: from the frozen teacher (models/teacher.pt); online: together with a peer of the
teacher's architecture, both from scratch (the teacher's checkpoint is not read); self: from
earlier generations of itself (nor here). `compression.training.distillation` says how. The
same student is also trained from labels alone, so every run records whether distillation
helped (kd_gain, on test); in self mode it is generation 0. Whichever of the two scores higher
on val ships (`training.students.ship`); the curve is the distilled student's either way.
"""

from pathlib import Path

from slimline.compression.data.store import load_splits
from slimline.compression.release.outputs import finish_model, model_outputs
from slimline.compression.training import students
from slimline.compression.training.device import out_of_memory_hint
from slimline.compression.training.fit import CsvCurve, seed_everything
from slimline.compression.training.setup import stage_setup
from slimline.core.atomic import write_json
from slimline.core.params.schema import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    seed_everything(params.seed, params.threads, params.reproducible)
    train, val, test = load_splits(root / params.paths.prepared, lazy=True)
    # exit 2 for a student not smaller than the teacher, before anything trains
    teacher = students.offline_teacher(params, root / params.paths.teacher, train)
    setup = stage_setup(params, params.student, train, val)
    nets = students.networks(params, train)
    with out_of_memory_hint(setup.acc, "student"):
        baseline = students.labels_only(nets, setup, test)
    d = params.distill
    with model_outputs(root, params, "student") as out, out_of_memory_hint(setup.acc, "student"):
        curve = [CsvCurve(out.curve)]
        result = students.by_mode(d, teacher, nets, baseline, setup, curve)
        shipment = students.ship(result, baseline, test)
        metrics = finish_model(shipment.student.model, out, test, params) | shipment.figures
        metrics |= students.taught_figures(result, shipment, test, setup.acc)
        metrics |= {"mode": d.mode, "temperature": d.temperature, "alpha": d.alpha,
                    "augment": params.data.augment} | setup.acc.describe()  # fmt: skip
        write_json(out.metrics, metrics)
    f = shipment.figures
    return (
        f"student ({d.mode} KD): test accuracy {f['distilled_accuracy']:.4f} with KD, "
        f"{f['baseline_accuracy']:.4f} from labels alone (gain {f['kd_gain']:+.4f}); "
        f"shipped the {shipment.shipped} student ({shipment.why})"
    )


if __name__ == "__main__":
    run_stage("distill", main)
