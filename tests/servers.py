"""Real servers for tests: started in their own process group, stopped as a group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(
    command: list[str], port: int, log: Path, cwd: Path | None = None, health: str = "/health"
) -> subprocess.Popen:
    """Start a server (`mlflow server`, `slimline ui`, `prefect server start`); return once
    GET `health` answers 200."""
    # the job runner would add ~10 processes and 1.2 GB that no test uses
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{health}", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"no server on port {port}:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the group (uvicorn's worker outlives a signal to its parent alone), then KILL
    after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
