"""The promotion lock holds across processes: a file lock beside the store, and a Prefect
global concurrency limit (alone, with the file lock disabled) when a Prefect server is set."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.racing import race
from tests.support.servers import free_port, start, stop

# Two holders take the lock. Whichever gets it first keeps it until the other has asked for
# it (a file each writes just before asking), then gives the other a moment to get in anyway:
# that moment only lets a broken lock show itself, nothing waits on it to pass.
HOLDER = """
import contextlib, json, sys, time
from pathlib import Path

sys.path.insert(0, sys.argv[7])  # the repo root: tests.waiting
from tests.support.waiting import wait_for
import filelock

if sys.argv[4] == "prefect-only":  # leave Prefect's limit as the only thing serializing
    filelock.FileLock = lambda *args, **kwargs: contextlib.nullcontext()
from slimline.records.aliases import promotion_lock

folder, me, other = Path(sys.argv[3]), sys.argv[5], sys.argv[6]
times = {"requested": time.time()}
(folder / f"{me}.requested").touch()
with promotion_lock(Path(sys.argv[1]), sys.argv[2], "slimline-test"):
    times["acquired"] = time.time()
    (folder / f"{me}.acquired").touch()
    wait_for(lambda: (folder / f"{other}.requested").exists(), timeout=300,
             what=f"holder {other} to ask for the lock")
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: (folder / f"{other}.acquired").exists(), timeout=1.0)
    times["released"] = time.time()
print(json.dumps(times))
"""


def held(tmp_path: Path, uri: str, mode: str, env: dict) -> tuple[dict, dict]:
    """Run the two holders; their times (requested, acquired, released), by acquisition."""
    folder = tmp_path / "holders"
    folder.mkdir()
    argv = [str(tmp_path), uri, str(folder), mode]
    seen = race(HOLDER, ("a", "b"), lambda me, other: [*argv, me, other, str(ROOT)], env)
    times = list(seen.values())
    first, second = sorted(times, key=lambda t: t["acquired"])
    return first, second


def assert_serialized(first: dict, second: dict) -> None:
    # contended: the second asked before the first let go, and got it only after
    assert second["requested"] < first["released"] <= second["acquired"]


def test_file_lock_beside_the_sqlite_store_serializes_two_processes(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    assert_serialized(*held(tmp_path, uri, "both", env))
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
    assert_serialized(*held(tmp_path, uri, "prefect-only", env))
