"""Five no-op `slimline run`s back to back in one workspace (ephemeral mode) leave nothing but
their records: each exits 0, no process of the workspace outlives it, no open file descriptor
piles up, the Prefect store and mlflow.db grow by about one run's records each time, and each run
is in both stores. bench/soak.py is the long version (50 no-op and 5 full runs, with and without
a running Prefect server)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.cli import copy_project, of_project, open_fds, slimline

pytestmark = pytest.mark.slow

RUNS = 5
# What one no-op run may add: about twice the largest step bench/soak.py measured over 50
# no-op runs in ephemeral mode (bench/results/soak.md, 2026-11-26): .prefect/ +244 KB median,
# +1,218 KB max (the run's records, ~36 events, 22 logs, 10 task runs; the max is the run in
# which prefect.db-wal grew to its ~5 MB plateau); mlflow.db +116 KB median, +164 KB max.
PREFECT_BYTES_PER_RUN = 2_500_000
MLFLOW_BYTES_PER_RUN = 350_000


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in [path, *path.rglob("*")] if p.is_file())


def query(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


FLOW_RUNS = "select id, state_type from flow_run"
PARENT_RUNS = """select run_uuid from runs r where not exists
  (select 1 from tags t where t.run_uuid = r.run_uuid and t.key = 'mlflow.parentRunId')"""


def snapshot(root: Path) -> dict:
    procs = of_project(root)
    mlflow = root / "mlflow.db"
    return {
        "processes": [" ".join(p.info["cmdline"] or []) for p in procs],
        "fds": open_fds(procs),
        "prefect_bytes": size(root / ".prefect"),
        "mlflow_bytes": sum(size(mlflow.with_name(f"mlflow.db{s}")) for s in ("", "-wal")),
        "flow_runs": dict(query(root / ".prefect" / "prefect.db", FLOW_RUNS)),
        "parents": {run for (run,) in query(mlflow, PARENT_RUNS)},
    }


def test_five_noop_runs_leave_nothing_but_their_records(flow_project, tmp_path):
    assert flow_project.result.returncode == 0, flow_project.result.stderr[-3000:]
    root = copy_project(flow_project.project, tmp_path / "project")
    first = slimline(root, "run")  # the copy's own MLflow store, the registry's verdict
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    start = previous = snapshot(root)
    assert start["processes"] == []
    for i in range(RUNS):
        done = slimline(root, "run")
        assert done.returncode == 0, f"run {i + 1}: " + done.stdout[-2000:] + done.stderr[-3000:]
        now = snapshot(root)
        assert now["processes"] == [], f"left after run {i + 1}"
        assert now["fds"] <= start["fds"]
        assert now["prefect_bytes"] - previous["prefect_bytes"] <= PREFECT_BYTES_PER_RUN
        assert now["mlflow_bytes"] - previous["mlflow_bytes"] <= MLFLOW_BYTES_PER_RUN
        # in both stores: one flow run and one MLflow parent run more
        assert len(now["flow_runs"]) == len(previous["flow_runs"]) + 1
        assert len(now["parents"]) == len(previous["parents"]) + 1
        previous = now
    new_flows = [s for run, s in now["flow_runs"].items() if run not in start["flow_runs"]]
    assert new_flows == ["COMPLETED"] * RUNS
    assert len(now["parents"] - start["parents"]) == RUNS
    assert start["parents"] <= now["parents"]
