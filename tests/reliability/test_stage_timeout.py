"""A stage past its timeout (issue 8, item 22): its whole process group is killed, the flow
fails cleanly with exit 1 naming the stage, the last good outputs stay, MLflow records the
failed stage, and DVC is left usable (no stale lock)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import psutil
import pytest

from tests.support.cli import runs, slimline
from tests.support.outputs import outputs, set_params, visible
from tests.support.processes import run

pytestmark = pytest.mark.slow


def processes_in(project: Path) -> list[str]:
    """Command lines of live processes whose working directory is the project."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if Path(proc.cwd()) == project:
                found.append(" ".join(proc.cmdline()))
    return found


def test_a_stage_past_its_timeout_is_killed_and_the_flow_fails_cleanly(project):
    before = visible(outputs(project))
    # train_teacher must run again and still be training when the 2 s timeout fires: at 5
    # epochs an idle machine finished it just as the kill came, after its outputs were
    # renamed into place (a clean-clone CI run saw them change)
    set_params(project, teacher={"epochs": 300})
    result = slimline(project, "run", "--stage-timeout", "2", timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "stage train_teacher ran past its timeout of 2 s; its processes were killed" in (
        result.stderr
    )
    assert processes_in(project.resolve()) == []
    after = visible(outputs(project))
    # the killed stage wrote nothing; dvc.lock is unchanged (file names, not a byte diff:
    # pytest's diff of two dicts of file contents runs for minutes)
    assert sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)) == []

    _, found = runs(project)
    parent = next(r for r in found if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.tags["slimline.cached_stages"] == "prepare"
    children = {
        r.info.run_name: r
        for r in found
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert children["train_teacher"].data.tags["slimline.stage.status"] == "failed"
    assert children["train_teacher"].info.status == "FAILED"
    assert "slimline.verdict" not in parent.data.tags  # a failed run never reaches the registry

    status = run([sys.executable, "-m", "dvc", "status", "train_teacher"], project, timeout=60)
    assert status.returncode == 0 and "Unable to acquire lock" not in status.stderr
