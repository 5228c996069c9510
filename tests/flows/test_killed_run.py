"""`slimline run` killed with SIGKILL (the OOM killer, `docker kill`) in the middle of a stage
leaves nothing behind: no temporary Prefect server, no stage process, and the last good outputs;
the next run completes."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.flows.cli import SLIMLINE, copy_project, env, slimline
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


def of_project(root: Path) -> list[psutil.Process]:
    """Live processes that belong to the run in `root`: started there or naming it."""
    found = []
    for p in psutil.process_iter(["cmdline", "cwd", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        text = " ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or "")
        if str(root) in text:
            found.append(p)
    return found


def test_a_sigkilled_run_leaves_no_process_and_the_next_run_completes(flow_project, tmp_path):
    root = copy_project(flow_project.project, tmp_path / "project")
    before = (root / "metrics/teacher.json").read_bytes()
    run = subprocess.Popen(
        [SLIMLINE, "run", "-S", "teacher.epochs=400"], cwd=root, env=env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        training = wait_for(
            lambda: [p for p in of_project(root)
                     if "stages/train_teacher.py" in " ".join(p.info["cmdline"] or [])],
            timeout=300, what="the teacher's training",
        )  # fmt: skip
        assert training
        assert any("uvicorn" in " ".join(p.info["cmdline"] or []) for p in of_project(root))
        run.send_signal(signal.SIGKILL)
        run.wait()
        wait_for(lambda: not of_project(root), timeout=30, what="every process of the run to end")
    finally:
        run.kill()
        for p in of_project(root):
            p.kill()
    assert (root / "metrics/teacher.json").read_bytes() == before  # the last good outputs
    subprocess.run(["git", "checkout", "-q", "params.yaml"], cwd=root, check=True)
    again = slimline(root, "run")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert not of_project(root)
