"""The distill stage as DVC runs it: its own size check, so that `dvc repro` alone refuses a
student that is not smaller than its teacher (exit 2, both counts named) before training."""

from pathlib import Path

import numpy as np

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
