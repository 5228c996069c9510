"""The distill stage as DVC runs it: its own size check, so that `dvc repro` alone refuses a
student that is not smaller than its teacher (exit 2, both counts named) before training."""

import json
from pathlib import Path

import numpy as np
import pytest

from slimline.compression.data import Dataset, save_split
from slimline.compression.sizing import spec_params
from slimline.core.params import load_params
from tests.conftest import run_stage, write_params


def prepared_table(root: Path, features: int = 13, classes: int = 3) -> None:
    """Prepared splits of tabular (N, F) data, as the prepare stage writes them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, features)).astype(np.float32)
    y = np.arange(30, dtype=np.int64) % classes
    ds = Dataset(x, y, [str(k) for k in range(classes)], 1.0)
    (root / "data/prepared").mkdir(parents=True)
    for name in ("train", "val", "test"):
        save_split(root / f"data/prepared/{name}.npz", x, y, ds, np.zeros(1), np.ones(1))


def test_distill_refuses_a_student_not_smaller_than_its_teacher(tmp_path):
    prepared_table(tmp_path)
    params_file = write_params(
        tmp_path / "params.yaml",
        teacher={"arch": "mlp", "width": 8, "depth": 1},
        student={"arch": "mlp", "width": 64, "depth": 3},
    )
    result = run_stage("distill", params_file)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    params = load_params(params_file)
    teacher = spec_params(params.teacher, (13,), 3, "teacher")
    student = spec_params(params.student, (13,), 3, "student")
    assert student >= teacher
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: student: {student:,} parameters (mlp, width 64, depth 3) is not smaller than "
        f"the teacher's {teacher:,} (mlp, width 8, depth 1) for input (13,) and 3 classes "
        "(student.width, student.depth; the student should be at most a tenth of the teacher)"
    ]
    # refused before anything was trained or written
    assert not (tmp_path / "models").exists() and not (tmp_path / "metrics").exists()


def test_distill_with_default_mlp_sizes_passes_the_check(tmp_path):
    # the same tabular data with width / depth left to the mlp defaults: the check passes and
    # the stage goes on to the teacher's checkpoint (absent here: its own exit-2 message)
    prepared_table(tmp_path)
    params_file = write_params(
        tmp_path / "params.yaml", teacher={"arch": "mlp"}, student={"arch": "mlp"}
    )
    result = run_stage("distill", params_file)
    assert result.returncode == 2, result.stderr
    assert "checkpoint not found" in result.stderr and "is not smaller" not in result.stderr


def run_mode(root: Path, mode: str, **distill) -> dict:
    """The distill stage in `mode` on the tabular splits, with no teacher checkpoint at all."""
    prepared_table(root)
    params_file = write_params(
        root / "params.yaml",
        teacher={"arch": "mlp"},
        student={"arch": "mlp", "epochs": 2, "batch_size": 16},
        distill={"mode": mode, **distill},
    )
    result = run_stage("distill", params_file)
    assert result.returncode == 0, result.stderr
    assert not (root / "models/teacher.pt").exists()
    assert (root / "models/student.pt").exists() and (root / "models/onnx/student.onnx").exists()
    curve = (root / "plots/student_curve.csv").read_text().splitlines()
    assert len(curve) == 1 + 2  # header, then the student's own epochs
    metrics = json.loads((root / "metrics/student.json").read_text())
    assert metrics["mode"] == mode and "kd" not in metrics
    assert metrics["kd_gain"] == metrics["accuracy"] - metrics["baseline_accuracy"]
    return metrics


@pytest.mark.slow
def test_online_distill_trains_a_peer_and_needs_no_teacher(tmp_path):
    metrics = run_mode(tmp_path, "online")
    assert metrics["teacher_logits"] == "per_batch"  # the peer's, of each batch, as it trains
    assert 0 <= metrics["teacher_accuracy"] <= 1 and "generations" not in metrics


@pytest.mark.slow
def test_self_distill_teaches_each_generation_by_the_one_before(tmp_path):
    metrics = run_mode(tmp_path, "self", generations=2)
    assert metrics["teacher_logits"] == "cached" and metrics["generations"] == 2
    scores = metrics["generation_scores"]
    assert [s["generation"] for s in scores] == [0, 1, 2]
    # generation 0 is the labels-only baseline; the last one is the student
    assert scores[0]["accuracy"] == metrics["baseline_accuracy"]
    assert scores[-1]["accuracy"] == metrics["accuracy"]
    assert scores[-1]["val_accuracy"] == metrics["val_accuracy"]
