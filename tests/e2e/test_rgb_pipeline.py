"""The real pipeline through `dvc repro` on 32x32 RGB images (a generated image folder of
coloured shapes), with train-time crops and flips, so distillation runs online."""

import json

import numpy as np
import onnx
import pytest

from tests.support.project import dvc_repro, make_project

pytestmark = pytest.mark.slow
SHAPES = ("disc", "square", "bar")


def shapes_folder(root, per_class: int = 40, size: int = 32, seed: int = 0) -> None:
    """Coloured shapes on noisy backgrounds, placed at random: one folder per shape."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for name in SHAPES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
            cy, cx, r = *rng.integers(10, size - 10, 2), int(rng.integers(5, 9))
            mask = {
                "disc": (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r,
                "square": (abs(yy - cy) <= r) & (abs(xx - cx) <= r),
                "bar": (abs(yy - cy) <= 2) & (abs(xx - cx) <= r + 3),
            }[name]
            img[mask] = rng.integers(120, 256, 3)
            Image.fromarray(img, mode="RGB").save(root / name / f"{i}.png")


def test_rgb_images_with_augmentation_through_the_pipeline(tmp_path):
    project = make_project(
        tmp_path / "project",
        data={"source": "image-folder", "path": "data/raw/shapes", "image_size": 32,
              "augment": "crop_flip"},
        teacher={"arch": "resnet", "width": 8, "depth": 1, "epochs": 6, "batch_size": 32,
                 "lr": 0.01},
        student={"arch": "cnn", "width": 4, "depth": 2, "epochs": 6, "batch_size": 32,
                 "lr": 0.01},
    )  # fmt: skip
    shapes_folder(project / "data/raw/shapes")
    result = dvc_repro(project)
    assert result.returncode == 0, result.stdout + result.stderr

    with np.load(project / "data/prepared/train.npz") as z:
        assert z["x"].shape[1:] == (3, 32, 32)  # RGB kept at its real size
    teacher = json.loads((project / "metrics/teacher.json").read_text())
    student = json.loads((project / "metrics/student.json").read_text())
    pruned = json.loads((project / "metrics/pruned.json").read_text())
    assert teacher["augment"] == student["augment"] == "crop_flip"
    # cached clean-view logits would teach the wrong targets: the teacher sees each batch
    assert student["teacher_logits"] == "per_batch" and student["mode"] == "offline"
    for metrics in (teacher, student, pruned):
        assert metrics["device"] == "cpu" and metrics["precision"] == "fp32"
    assert teacher["accuracy"] > 0.6  # three classes: chance is a third

    final = onnx.load(str(project / "dist/model.onnx"))
    dims = [d.dim_value for d in final.graph.input[0].type.tensor_type.shape.dim[1:]]
    assert dims == [3, 32, 32]
    bench = json.loads((project / "reports/benchmark.json").read_text())
    assert {v["name"] for v in bench["variants"]} >= {"teacher_fp32", "final_int8"}
    card = (project / "dist/model_card.md").read_text()
    assert "augmentation `crop_flip`, offline KD" in card
