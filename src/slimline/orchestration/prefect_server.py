"""Prefect's temporary server for one command, started first and in parallel.

Prefect's ephemeral mode starts the same server (uvicorn running Prefect's app with its
ephemeral set of services, state in PREFECT_HOME) only when the flow first needs it, after
importing Prefect's server code in this process (~2.6 s), and then waits ~5-8 s for it. Started
here before anything else, its boot overlaps with what this process imports and asks DVC
meanwhile: ~5 s less per `slimline run`. It is stopped (its process group) when the block ends,
and by its guard (`orchestration.guard`) when this process dies without ending it. A new
project's database starts as a copy of a migrated one (`orchestration.prefect_template`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from slimline.core.http import Unhealthy, wait_healthy
from slimline.orchestration import guard
from slimline.orchestration.prefect_template import keep, start_from_template
from slimline.orchestration.processes import stop_tree

LOG = "server.log"  # in the Prefect home, beside its database
# what Prefect's own SubprocessASGIServer sets for its ephemeral server (prefect 3.8)
EPHEMERAL = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    home: Path
    new_database: bool  # migrated by this server: `wait_ready` keeps it as the template

    @property
    def log(self) -> Path:
        return self.home / LOG


@contextlib.contextmanager
def temporary_server(home: Path) -> Iterator[Server]:
    """Start the server; yield at once (call `wait_ready` before using it)."""
    home.mkdir(parents=True, exist_ok=True)
    new_database = start_from_template(home)
    port = _free_port()
    spec = importlib.util.find_spec("prefect")
    assert spec is not None and spec.origin is not None  # prefect is a dependency
    app_dir = Path(spec.origin).parents[1]  # site-packages
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(app_dir),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]
    with (home / LOG).open("ab") as log:
        proc = subprocess.Popen(
            guard.command(argv),  # dies with this process, however it dies
            cwd=home,
            env=os.environ | EPHEMERAL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Server(f"http://127.0.0.1:{port}/api", proc, home, new_database)
    finally:
        _stop(proc)


def wait_ready(server: Server, timeout: float) -> None:
    """Until GET /health answers 200; a server that exited or never answered raises. A
    database this server migrated becomes the next new project's template, before any run."""
    try:
        alive = lambda: server.proc.poll() is None  # noqa: E731
        wait_healthy(f"{server.url}/health", timeout, interval=0.1, running=alive)
    except Unhealthy as e:
        tail = server.log.read_text(errors="replace")[-2000:] if server.log.exists() else ""
        raise RuntimeError(
            f"Prefect's temporary server at {server.url} did not start "
            f"(exit {server.proc.poll()}; {e.reason}, last: {e.last}):\n{tail}"
        ) from None
    if server.new_database:
        keep(server.home)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    # SIGTERM lets it finish writing its database, as Prefect's own stop does; then KILL
    stop_tree(proc, (signal.SIGTERM, signal.SIGKILL), grace=10)
