"""DVC stage train_teacher: train the teacher, save, export to ONNX, measure."""

from pathlib import Path

from slimline.compression.data import load_splits
from slimline.compression.models import build_model
from slimline.compression.publish import finish_model, model_outputs
from slimline.compression.train import CsvCurve, fit_spec, seed_everything
from slimline.core.atomic import write_json
from slimline.core.params import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    seed_everything(params.seed, params.threads)
    train, val, test = load_splits(root / params.paths.prepared)
    model = build_model(params.teacher, train.input_shape, train.num_classes)
    with model_outputs(root, params, "teacher") as out:
        history = fit_spec(
            model, params.teacher, train, val, seed=params.seed,
            callbacks=[CsvCurve(out.curve)], desc="teacher",
        )  # fmt: skip
        metrics = finish_model(model, out, test, params) | {
            "val_accuracy": history.best.val_accuracy,
            "best_epoch": history.best_epoch,
        }
        write_json(out.metrics, metrics)
    return f"teacher: test accuracy {metrics['accuracy']:.4f}, {metrics['params']:,} params"


if __name__ == "__main__":
    run_stage("train_teacher", main)
