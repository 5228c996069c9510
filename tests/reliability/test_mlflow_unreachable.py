"""MLflow unreachable (issue 8, item 20): the pipeline's outputs are kept, retries are bounded,
the message names the tracking URI, and nothing falls back to another store.

tests/records/test_tracking_server.py covers a dead port next to a real server that keeps its
aliases; here the server is alive but hangs (what MLflow's default client waits ~4 min on), and
the `slimline` command meets a dead port.
"""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest

from slimline.core.params.loading import load_params
from slimline.records.tracking import CLIENT_DEFAULTS, TrackingError, log_pipeline_run
from tests.support.cli import SLIMLINE
from tests.support.outputs import STAGES, outputs
from tests.support.processes import run, tool_env
from tests.support.servers import free_port

pytestmark = pytest.mark.slow  # both compare a copy of the session's trained run before and after

STAGE_LIST = [{"name": s, "status": "ran", "seconds": 1.0} for s in STAGES]


class HungServer:
    """An HTTP server on 127.0.0.1 that answers GET /health and holds every other request
    open without a reply: up for a health probe, dead for the API."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.uri = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.api_requests: list[str] = []
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                conn.close()
                return
            data += chunk
        request = data.split(b"\r\n", 1)[0].decode()
        if request.startswith("GET /health "):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
            conn.close()
        else:
            self.api_requests.append(request)
            self._held.append(conn)

    def close(self) -> None:
        self._sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def client_env(monkeypatch):
    """slimline sets MLflow's client defaults with setdefault: restore them after the test."""
    for key in CLIENT_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_hung_server_fails_after_bounded_retries_naming_the_uri(project, client_env):
    params = load_params(project / "params.yaml")
    before = outputs(project)
    server = HungServer()
    client_env.setenv("MLFLOW_TRACKING_URI", server.uri)
    client_env.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")  # a user's value wins over ours
    started = time.monotonic()
    try:
        with pytest.raises(TrackingError, match=re.escape(f"MLflow at {server.uri}")):
            log_pipeline_run(project, params, STAGE_LIST)
    finally:
        server.close()
    elapsed = time.monotonic() - started
    retries = int(CLIENT_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    assert len(server.api_requests) == 1 + retries, server.api_requests  # then it gave up
    # the user's 1 s per request won: three take seconds, where slimline's own default (30 s)
    # would take 90 s and MLflow's ~4 min; the bound sits far from both (no timing on load)
    assert elapsed < 60, f"took {elapsed:.0f} s"
    assert outputs(project) == before
    assert not (project / "mlflow.db").exists()  # no silent fallback to a local store


def test_cli_with_mlflow_down_exits_1_naming_the_uri(project):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    before = outputs(project)
    started = time.monotonic()
    result = run([SLIMLINE, "promote", "1", "--params", "params.yaml"], project,
                 env=tool_env(MLFLOW_TRACKING_URI=dead), timeout=300)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error: MLflow at {dead} is unreachable"), result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 120  # bounded probes, not MLflow's ~246 s of retries
    assert outputs(project) == before
    assert not (project / "mlflow.db").exists()
