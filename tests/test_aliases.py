"""The promotion lock holds across processes: a file lock beside the store, and a Prefect
global concurrency limit (alone, with the file lock disabled) when a Prefect server is set."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.servers import free_port, start, stop

HOLDER = """
import contextlib, sys, time
from pathlib import Path
import filelock

if sys.argv[4] == "prefect-only":  # leave Prefect's limit as the only thing serializing
    filelock.FileLock = lambda *args, **kwargs: contextlib.nullcontext()
from slimline.records.aliases import promotion_lock

go = Path(sys.argv[3])
while not go.exists():
    time.sleep(0.01)
with promotion_lock(Path(sys.argv[1]), sys.argv[2], "slimline-test"):
    start = time.time()
    time.sleep(1.0)
    print(start, time.time())
"""


def held_intervals(tmp_path: Path, uri: str, mode: str, env: dict) -> list[tuple[float, float]]:
    go = tmp_path / "go"
    argv = [sys.executable, "-c", textwrap.dedent(HOLDER), str(tmp_path), uri, str(go), mode]
    holders = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    go.touch()
    outs = [p.communicate(timeout=120) for p in holders]
    assert all(p.returncode == 0 for p in holders), [err for _, err in outs]
    return sorted(tuple(map(float, out.split()[-2:])) for out, _ in outs)


def test_file_lock_beside_the_sqlite_store_serializes_two_processes(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    first, second = held_intervals(tmp_path, uri, "both", env)
    assert second[0] >= first[1]  # the second got the lock only after the first let go
    assert (tmp_path / "mlflow.db.promotion.lock").exists()


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    command = [str(Path(sys.executable).with_name("prefect")), "server", "start",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(home))
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        proc = start(command, port, home / "server.log", health="/api/health")
    yield f"http://127.0.0.1:{port}/api", home
    stop(proc)


def test_prefect_concurrency_limit_alone_serializes_promotions(tmp_path, prefect_api):
    api, home = prefect_api
    env = os.environ | {"PREFECT_API_URL": api, "PREFECT_HOME": str(home)}
    uri = "http://127.0.0.1:1"  # an HTTP store: the lock never talks to it
    first, second = held_intervals(tmp_path, uri, "prefect-only", env)
    assert second[0] >= first[1]
