"""The distill stage as DVC runs it: its own size check, so that `dvc repro` alone refuses a
student that is not smaller than its teacher (exit 2, both counts named) before training; and
which of its two students (distilled, labels only) it ships."""

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from slimline.compression.data.dataset import Dataset
from slimline.compression.data.store import save_split
from slimline.compression.models.checkpoints import load_checkpoint
from slimline.compression.models.sizing import spec_params
from slimline.compression.training import students
from slimline.compression.training.distillation import choose_student
from slimline.core.params.loading import load_params
from tests.support.params import write_params
from tests.support.paths import ROOT
from tests.support.processes import run_stage


def stage() -> ModuleType:
    """stages/distill.py as a module, to run its `main` in this process."""
    spec = importlib.util.spec_from_file_location("stage_distill", ROOT / "stages/distill.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    # kd_gain compares the two students on test whichever shipped; val chose the shipped one
    assert metrics["kd_gain"] == metrics["distilled_accuracy"] - metrics["baseline_accuracy"]
    kd_val, labels_val = metrics["distilled_val_accuracy"], metrics["baseline_val_accuracy"]
    shipped, why = choose_student(kd_val, labels_val)
    assert (metrics["shipped"], metrics["shipped_reason"]) == (shipped, why)
    prefix = "baseline" if shipped == "labels" else "distilled"
    assert metrics["accuracy"] == metrics[f"{prefix}_accuracy"]
    assert metrics["val_accuracy"] == metrics[f"{prefix}_val_accuracy"]
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
    # generation 0 is the labels-only baseline; the last one is the distilled student
    assert scores[0]["accuracy"] == metrics["baseline_accuracy"]
    assert scores[-1]["accuracy"] == metrics["distilled_accuracy"]
    assert scores[-1]["val_accuracy"] == metrics["distilled_val_accuracy"]


@pytest.mark.usefixtures("restore_torch_state")
def test_a_labels_only_student_better_on_val_is_the_one_saved(tmp_path, monkeypatch):
    # self mode, one generation: the baseline is generation 0, the distilled student's teacher
    prepared_table(tmp_path)
    params_file = write_params(
        tmp_path / "params.yaml",
        teacher={"arch": "mlp"},
        student={"arch": "mlp", "epochs": 2, "batch_size": 16},
        distill={"mode": "self", "generations": 1},
    )
    seen, born_again = {}, students.born_again

    def spy(generation0, *args):
        seen["baseline"] = generation0
        return born_again(generation0, *args)

    monkeypatch.setattr(students, "born_again", spy)
    monkeypatch.setattr(students, "choose_student", lambda kd, labels: ("labels", "forced"))
    stage().main(load_params(params_file), tmp_path)
    metrics = json.loads((tmp_path / "metrics/student.json").read_text())
    assert (metrics["shipped"], metrics["shipped_reason"]) == ("labels", "forced")
    gen0, gen1 = metrics["generation_scores"]
    assert metrics["accuracy"] == metrics["baseline_accuracy"] == gen0["accuracy"]
    assert metrics["val_accuracy"] == metrics["baseline_val_accuracy"] == gen0["val_accuracy"]
    assert metrics["best_epoch"] == gen0["best_epoch"]
    assert metrics["distilled_accuracy"] == gen1["accuracy"]
    assert metrics["kd_gain"] == gen1["accuracy"] - gen0["accuracy"]
    assert metrics["teacher_agreement"] == 1.0  # the shipped student taught the distilled one
    # the checkpoint is the baseline itself (finish_model checked the ONNX export against it)
    saved = load_checkpoint(tmp_path / "models/student.pt").state_dict()
    baseline = seen["baseline"].state_dict()
    assert saved.keys() == baseline.keys()
    assert all(torch.equal(saved[k], baseline[k].cpu()) for k in saved)
    bound = metrics["onnx_parity_bound"]  # the max abs diff, up to a power of two
    assert bound < 2 * load_params(params_file).export.parity_atol
    assert bound == 0 or float(np.log2(bound)).is_integer()
