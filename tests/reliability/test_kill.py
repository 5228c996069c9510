"""SIGKILL during training (issue 8, item 14): `dvc repro` and its stage process are killed as
a group mid-training; the previous outputs are intact and the next `dvc repro` completes.

The outputs survive because dvc.yaml marks them `persist: true` (DVC would delete them before
the stage runs otherwise) and every write goes to a hidden temp file renamed only at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slimline.compression.models import load_checkpoint
from tests.project import dvc_repro
from tests.reliability.pipeline import OUTPUT_DIRS, outputs, set_params, tool_env, visible

TEACHER = ["models/teacher.pt", "models/onnx/teacher.onnx", "metrics/teacher.json",
           "plots/teacher_curve.csv"]  # fmt: skip


def temp_files(project: Path) -> list[str]:
    """Hidden temp files (`.<name>.XXXX<suffix>`) a killed writer left in the output folders."""
    return sorted(
        str(p.relative_to(project))
        for folder in OUTPUT_DIRS
        for p in (project / folder).rglob(".*")
        if p.is_file()
    )


def wait_for_training(project: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until the teacher's curve (a temp file until the stage ends) has an epoch row: the
    stage process is then inside its training loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "dvc repro ended before training started"
        for curve in (project / "plots").glob(".teacher_curve.csv.*"):
            if len(curve.read_text().splitlines()) >= 2:
                return
        time.sleep(0.1)
    raise AssertionError(f"no training epoch within {timeout} s")


@pytest.mark.slow
def test_sigkill_mid_training_keeps_last_outputs_and_next_repro_completes(project):
    before = outputs(project)
    set_params(project, teacher={"epochs": 1000})  # long enough to be killed mid-training
    log = (project.parent / "repro.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "train_teacher"],
        cwd=project, env=tool_env(), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: dvc and the stage it started
    )  # fmt: skip
    try:
        wait_for_training(project, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.5)  # the stage process dies with its group; let the kernel reap it
    # every output of the last good run, byte for byte; only hidden temp files were added
    assert visible(outputs(project)) == visible(before)
    left = temp_files(project)  # training runs while the stage's temp outputs are open
    assert left and all(Path(t).name.lstrip(".").startswith("teacher") for t in left), left

    set_params(project, teacher={"epochs": 2})  # a new, short run
    result = dvc_repro(project, "train_teacher")
    assert result.returncode == 0, result.stderr
    assert "Running stage 'train_teacher'" in result.stdout
    assert temp_files(project) == []  # the next write of each target removed the stale ones
    after = outputs(project)
    assert all(after[name] != before[name] for name in TEACHER)
    assert "\n2," in (project / "plots/teacher_curve.csv").read_text()  # two epochs
    load_checkpoint(project / "models/teacher.pt")  # complete and loadable
