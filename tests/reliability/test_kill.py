"""SIGKILL during training (issue 8, item 14): `dvc repro` and its stage process are killed as
a group mid-training; the previous outputs are intact and the next `dvc repro` completes.

The outputs survive because dvc.yaml marks them `persist: true` (DVC would delete them before
the stage runs otherwise) and every write goes to a hidden temp file renamed only at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from slimline.compression.models.checkpoints import load_checkpoint
from tests.support.outputs import OUTPUT_DIRS, outputs, set_params, visible
from tests.support.processes import tool_env
from tests.support.project import dvc_repro
from tests.support.waiting import wait_for

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


def training(project: Path, proc: subprocess.Popen) -> bool:
    """Whether the teacher's curve (a temp file until the stage ends) has an epoch row: the
    stage process is then inside its training loop."""
    assert proc.poll() is None, "dvc repro ended before training started"
    curves = (project / "plots").glob(".teacher_curve.csv.*")
    return any(len(curve.read_text().splitlines()) >= 2 for curve in curves)


def group_gone(pgid: int) -> bool:
    """No live (non-zombie) process is left in the process group."""
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return False
    return True


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
        wait_for(lambda: training(project, proc), timeout=300, what="a training epoch")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    # dvc is reaped; the stage process it started dies with the group, a moment later
    wait_for(lambda: group_gone(proc.pid), timeout=60, what="the stage process to die")
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
