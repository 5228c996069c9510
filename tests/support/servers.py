"""Real servers for tests: started in their own process group, stopped as a group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from slimline.core.http import Unhealthy, wait_healthy
from slimline.orchestration.processes import stop_tree


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(
    command: list[str],
    port: int,
    log: Path,
    cwd: Path | None = None,
    health: str = "/health",
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start a server (`mlflow server`, `slimline ui`, `prefect server start`) in `env` (this
    process's by default); return once GET `health` answers 200."""
    # the job runner would add ~10 processes and 1.2 GB that no test uses
    env = (env or dict(os.environ)) | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}{health}", 90, running=lambda: proc.poll() is None)
    except Unhealthy as e:
        stop(proc)
        raise RuntimeError(f"no server on port {port} ({e}):\n{log.read_text()[-3000:]}") from None
    return proc


def stop(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the group (uvicorn's worker outlives a signal to its parent alone), then KILL
    after `grace` seconds."""
    stop_tree(proc, (signal.SIGTERM, signal.SIGKILL), grace)
