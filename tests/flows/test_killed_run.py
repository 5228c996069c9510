"""`slimline run` stopped in the middle of a stage leaves nothing behind. Killed with SIGKILL (the
OOM killer, `docker kill`): no temporary Prefect server, no stage process, the last good outputs,
and the next run completes. Cancelled with SIGTERM or SIGINT: the same, and the run is recorded as
such: the Prefect flow run Cancelled, the MLflow run KILLED naming the stage, no alias moved,
exit 130."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.flows.cli import SLIMLINE, copy_project, env, mlflow_client, slimline
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


def start_training(root: Path) -> subprocess.Popen:
    """`slimline run` with a teacher that trains long enough to be stopped in the middle."""
    run = subprocess.Popen(
        [SLIMLINE, "run", "-S", "teacher.epochs=400"], cwd=root, env=env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(
        lambda: [p for p in of_project(root)
                 if "stages/train_teacher.py" in " ".join(p.info["cmdline"] or [])],
        timeout=300, what="the teacher's training",
    )  # fmt: skip
    return run


def test_a_sigkilled_run_leaves_no_process_and_the_next_run_completes(flow_project, tmp_path):
    root = copy_project(flow_project.project, tmp_path / "project")
    before = (root / "metrics/teacher.json").read_bytes()
    run = start_training(root)
    try:
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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_cancelled_run_is_recorded_as_cancelled_and_moves_nothing(flow_project, tmp_path, sig):
    root = copy_project(flow_project.project, tmp_path / "project")
    first = slimline(root, "run")  # the copy's own store: version 1 champion
    assert first.returncode == 0, first.stderr[-3000:]
    before = (root / "metrics/teacher.json").read_bytes()
    client = mlflow_client(root)
    aliases = client.get_registered_model("slimline-digits").aliases
    run = start_training(root)
    try:
        run.send_signal(sig)
        out, err = run.communicate(timeout=120)
        wait_for(lambda: not of_project(root), timeout=30, what="every process of the run to end")
    finally:
        run.kill()
    assert run.returncode == 130, out[-2000:] + err[-3000:]
    assert "run cancelled" in err and "during stage train_teacher" in err
    assert (root / "metrics/teacher.json").read_bytes() == before
    assert client.get_registered_model("slimline-digits").aliases == aliases
    latest = client.search_runs(
        [client.get_experiment_by_name("slimline").experiment_id],
        "tags.slimline.cancelled_stage = 'train_teacher'",
    )
    assert [r.info.status for r in latest] == ["KILLED"]
    with sqlite3.connect(root / ".prefect" / "prefect.db") as db:
        (state,) = db.execute(
            "select state_type from flow_run order by created desc limit 1"
        ).fetchone()
    assert state == "CANCELLED"
