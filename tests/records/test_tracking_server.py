"""Tracking and promotion against a real `mlflow server` on 127.0.0.1, and against none."""

from __future__ import annotations

import sys
import time

import pytest

from slimline.records.aliases import rollback
from slimline.records.registry import decide_and_promote
from slimline.records.tracking import TrackingError, log_pipeline_run
from tests.support.servers import free_port, start, stop
from tests.support.workspace import STAGES, reported, scored_accuracy

NAME = "slimline-test"
STAGE_LIST = [{"name": s, "status": "ran", "seconds": 1.0} for s in STAGES]
# MLflow's own client waits ~246 s on a dead server (docs: STACK.md); slimline's bounded retries
# give up in seconds. A bound of half the default hang tells the two apart on any load.
DEFAULT_HANG = 246
pytestmark = pytest.mark.slow  # every test records a copy of the session's real pipeline run


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
        "--artifacts-destination", str(store / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    started = time.monotonic()
    proc = start(command, port, store / "server.log")
    print(f"mlflow server healthy in {time.monotonic() - started:.1f} s")
    yield f"http://127.0.0.1:{port}"
    stop(proc)


def aliases(server: str) -> dict[str, str]:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        model = mlflow.MlflowClient(server, server).get_registered_model(NAME)
    except MlflowException:  # not registered yet
        return {}
    return {a: str(v) for a, v in model.aliases.items()}


@pytest.fixture
def recorded(workspace):
    def record(root, **variations):
        params = workspace(root, **variations)
        return params, log_pipeline_run(root, params, STAGE_LIST)

    return record


def test_tracking_and_promotion_over_http(tmp_path, server, monkeypatch, recorded):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    started = time.monotonic()
    params, record = recorded(tmp_path / "first", accuracy=0.5)  # below the real run's
    verdict = decide_and_promote(tmp_path / "first", params, record.run_id)
    print(f"tracking + registration over HTTP: {time.monotonic() - started:.1f} s")
    assert verdict.champion and record.tracking_uri == server
    client = mlflow.MlflowClient(server, server)
    assert len(client.search_runs([record.experiment_id])) == len(STAGES) + 1
    assert aliases(server)["champion"] == verdict.version
    second = tmp_path / "second"
    params, record = recorded(second)  # the real run's figures, untouched
    better = decide_and_promote(second, params, record.run_id)
    assert better.champion and better.previous_champion == verdict.version
    (tmp_path / "dl").mkdir()
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion", dst_path=str(tmp_path / "dl"))
    gates = reported(second, params)["gates_report"]["gates"]
    accuracy = next(g["value"] for g in gates if g["name"] == "min_accuracy")
    assert accuracy == better.figures["accuracy"] > 0.5
    assert scored_accuracy(second, params, lambda x: model.predict(x)["logits"]) == pytest.approx(
        accuracy, abs=1e-12
    )  # the champion served over HTTP scores what validate measured
    assert rollback(second, params) == verdict.version
    assert (second / ".promotion.lock").exists()  # an HTTP store locks in the project root


def test_unreachable_server_fails_fast_naming_the_uri_and_moves_nothing(
    tmp_path, server, monkeypatch, recorded
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    root = tmp_path / "ws"
    params, record = recorded(root, accuracy=0.999)  # would be champion, were MLflow there
    before = aliases(server)
    outputs = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    calls = {
        "track": lambda: log_pipeline_run(root, params, STAGE_LIST),
        "promote": lambda: decide_and_promote(root, params, record.run_id),
    }
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(TrackingError, match=dead):
            call()
        print(f"{name}: TrackingError after {time.monotonic() - started:.1f} s")
        assert time.monotonic() - started < DEFAULT_HANG / 2
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == outputs
    assert aliases(server) == before
