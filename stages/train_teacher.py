"""DVC stage train_teacher: train the teacher, save, export to ONNX, measure; or, with
`teacher.source: onnx`, check a pretrained ONNX teacher against the data and import it."""

from pathlib import Path

from slimline.compression.data.store import load_splits
from slimline.compression.models.families import build_model
from slimline.compression.release.outputs import finish_model, import_teacher, model_outputs
from slimline.compression.training.device import out_of_memory_hint
from slimline.compression.training.fit import CsvCurve, fit, seed_everything
from slimline.compression.training.setup import stage_setup
from slimline.core.atomic import write_json
from slimline.core.params.schema import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    seed_everything(params.seed, params.threads, params.reproducible)
    train, val, test = load_splits(root / params.paths.prepared, lazy=True)
    if params.teacher.source == "onnx":
        source = root / params.teacher.path
        with model_outputs(root, params, "teacher") as out:
            CsvCurve(out.curve).flush()  # nothing trains: a curve of no epochs
            metrics = import_teacher(source, out, train, test, params)
            write_json(out.metrics, metrics)
        said = "".join(f"\n  {note}" for note in metrics["notes"])
        return (
            f"teacher: imported {params.teacher.path} (sha256 {metrics['sha256'][:12]}, "
            f"{params.teacher.input} input), test accuracy {metrics['accuracy']:.4f}, "
            f"{metrics['params']:,} params{said}"
        )
    # text: the teacher's own tokens, where the student has a vocabulary of its own
    train, val, test = (split.for_teacher() for split in (train, val, test))
    setup = stage_setup(params, params.teacher, train, val)
    model = build_model(
        params.teacher, train.input_shape, train.num_classes, "teacher", train.vocab
    )
    with model_outputs(root, params, "teacher") as out, out_of_memory_hint(setup.acc, "teacher"):
        history = fit(model, setup, callbacks=[CsvCurve(out.curve)], desc="teacher")
        metrics = (
            finish_model(model, out, test, params)
            | {
                "val_accuracy": history.best.val_accuracy,
                "best_epoch": history.best_epoch,
                "source": "train",
                "augment": params.data.augment,
            }
            | setup.acc.describe()
        )
        write_json(out.metrics, metrics)
    return f"teacher: test accuracy {metrics['accuracy']:.4f}, {metrics['params']:,} params"


if __name__ == "__main__":
    run_stage("train_teacher", main)
