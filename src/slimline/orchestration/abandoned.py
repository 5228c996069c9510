"""Flow runs that a dead process left Running, closed by the next run in the same workspace.

A flow whose process is killed (SIGKILL, the OOM killer) never reports its end: its flow run
stays Running in Prefect's store for good (the temporary server's database in `.prefect/`, or a
team's server). Each pipeline and sweep flow run, once it holds the workspace lock, tags itself
with the workspace (a tag: the API filters on tags) and labels itself with its pid. The next run
to hold the lock marks Crashed, with the reason, those still open whose process is gone; a run
that only just released the lock is still alive, so it is left alone.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import psutil

WORKSPACE_PREFIX = "slimline-workspace:"
PID_LABEL = "slimline.pid"


def workspace_tag(root: Path) -> str:
    """A short tag for this host and folder (a path would make a long chip in Prefect's UI)."""
    where = f"{socket.gethostname()}:{Path(root).resolve()}"
    return WORKSPACE_PREFIX + hashlib.sha256(where.encode()).hexdigest()[:12]


def claim_and_close(root: Path) -> list[str]:
    """Tag the current flow run as this workspace's, and mark its abandoned ones Crashed;
    the names of those closed. The caller holds the workspace lock."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.runtime import flow_run
    from prefect.states import Crashed

    tag = workspace_tag(root)
    with get_client(sync_client=True) as client:
        me = client.read_flow_run(flow_run.id)
        if tag not in me.tags:  # the update replaces the tags: keep the run's own
            client.update_flow_run(me.id, tags=[*me.tags, tag])
        client.update_flow_run_labels(me.id, {PID_LABEL: str(os.getpid())})
        open_runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[tag]),
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(
                        any_=[StateType.RUNNING, StateType.PENDING, StateType.CANCELLING]
                    )
                ),
            )
        )
        closed = []
        for run in open_runs:
            pid = _pid(run.labels)
            if run.id == me.id or pid is None or _alive(pid):
                continue
            message = (
                f"process {pid} ended (killed) before the run finished; closed by flow run "
                f"{me.name}"
            )
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            closed.append(run.name)
    return closed


def close_abandoned_runs(root: Path, logger) -> None:
    """`claim_and_close`, said in the run's log. Housekeeping: if Prefect refuses it, the run
    goes on and the log says why."""
    try:
        closed = claim_and_close(root)
    except Exception as e:
        logger.warning(f"could not look for abandoned flow runs of this workspace: {e!r}")
        return
    if closed:
        logger.warning(
            f"marked Crashed {len(closed)} flow run(s) of this workspace whose process was "
            f"killed: {', '.join(closed)}"
        )


def _pid(labels: dict) -> int | None:
    value = str(labels.get(PID_LABEL, ""))
    return int(value) if value.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
