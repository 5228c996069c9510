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

from tests.support.cli import SLIMLINE, copy_project, env, mlflow_client, of_project, slimline
from tests.support.processes import git
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def start_training(root: Path) -> subprocess.Popen:
    """`slimline run` with a teacher that trains long enough to be stopped in the middle."""
    run = start(root, "-S", "teacher.epochs=400")
    wait_for(lambda: running(root, "stages/train_teacher.py"), timeout=300,
             what="the teacher's training")  # fmt: skip
    return run


def start(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [SLIMLINE, "run", *args], cwd=root, env=env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def running(root: Path, command: str) -> list[psutil.Process]:
    return [p for p in of_project(root) if command in " ".join(p.info["cmdline"] or [])]


def open_mlflow_runs(root: Path) -> list[str]:
    """Ids of the runs MLflow's store has open (RUNNING) right now."""
    db = root / "mlflow.db"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return [r for (r,) in con.execute("select run_uuid from runs where status='RUNNING'")]
    except sqlite3.OperationalError:  # the tables are not there yet
        return []


def flow_run_states(root: Path) -> dict[str, str]:
    with sqlite3.connect(root / ".prefect" / "prefect.db") as db:
        return dict(db.execute("select name, state_type from flow_run"))


# where `slimline run` is killed: while its temporary Prefect server boots, in the middle of a
# stage, and while it records the run in MLflow (a no-op run: the stages are done at once)
KILL_POINTS = {
    "server start": (("-S", "teacher.epochs=400"), lambda root: running(root, "uvicorn")),
    "stage": (("-S", "teacher.epochs=400"),
              lambda root: running(root, "stages/train_teacher.py")),
    "mlflow logging": ((), open_mlflow_runs),
}  # fmt: skip


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_sigkilled_run_leaves_no_process_and_the_next_run_completes(
    flow_project, tmp_path, point
):
    root = copy_project(flow_project.project, tmp_path / "project")
    if point == "mlflow logging":  # the copy's own store with a first run in it
        assert slimline(root, "run").returncode == 0
    before = {p: (root / p).read_bytes() for p in ("metrics/teacher.json", "dist/model.onnx")}
    flows_before = flow_run_states(root) if (root / ".prefect" / "prefect.db").exists() else {}
    args, reached = KILL_POINTS[point]
    run = start(root, *args)
    try:
        wait_for(lambda: reached(root), timeout=300, what=point)
        run.send_signal(signal.SIGKILL)
        run.wait()
        wait_for(lambda: not of_project(root), timeout=30, what="every process of the run to end")
    finally:
        run.kill()
        for p in of_project(root):
            p.kill()
    assert {p: (root / p).read_bytes() for p in before} == before  # the last good outputs
    left_open = open_mlflow_runs(root)
    killed_flows = {n for n, s in flow_run_states(root).items() if n not in flows_before}
    git(root, "checkout", "-q", "params.yaml")
    again = slimline(root, "run")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert not of_project(root)
    # what the killed run left open, the next run closed: no half-record stays RUNNING
    assert not open_mlflow_runs(root)
    if point == "mlflow logging":
        assert left_open, "the run was killed after it recorded; nothing to close"
    client = mlflow_client(root)
    for run_id in left_open:
        closed = client.get_run(run_id)
        assert closed.info.status == "KILLED"
        assert "ended (killed) before it finished recording" in closed.data.tags[
            "slimline.abandoned"]  # fmt: skip
    states = flow_run_states(root)
    assert {states[n] for n in killed_flows} <= {"CRASHED"}, states
    assert "RUNNING" not in states.values()


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
