"""Every alias move of the registry verdict, `challenger` included, happens under the
promotion lock (records/aliases.py): MLflow's alias update is last-writer-wins."""

from __future__ import annotations

import contextlib
import json

from slimline.core.params.loading import load_params
from slimline.records import registry
from tests.support.paths import ROOT


def test_challenger_and_champion_move_only_under_the_promotion_lock(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns of the cwd
    params = load_params(ROOT / "params.yaml")
    name = params.tracking.model_name
    passed = {"value": 1.0, "threshold": 0.5, "passed": True}
    for rel, report in (
        (params.paths.gates_report, {"gates": [{"name": "min_accuracy", **passed}]}),
        (params.paths.benchmark_report, {"speedup_gate": {"name": "min_speedup", **passed}}),
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps(report))
    # a run whose model is already registered (as after a retried task): no ONNX logging
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = client.create_run(
        client.create_experiment("locks"), tags={"slimline.model_version": "1"}
    ).info.run_id
    client.create_registered_model(name)
    client.create_model_version(name, source=str(tmp_path), run_id=run_id)

    held: list[bool] = []
    moves: list[tuple[str, bool]] = []
    real_lock, real_set = registry.promotion_lock, mlflow.MlflowClient.set_registered_model_alias

    @contextlib.contextmanager
    def watched(*args):
        with real_lock(*args):
            held.append(True)
            try:
                yield
            finally:
                held.pop()

    def set_alias(self, model, alias, version):
        moves.append((alias, bool(held)))
        return real_set(self, model, alias, version)

    monkeypatch.setattr(registry, "promotion_lock", watched)
    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_alias", set_alias)
    verdict = registry.decide_and_promote(tmp_path, params, run_id)
    assert verdict.passed and verdict.champion and verdict.version == "1"
    assert moves == [("challenger", True), ("champion", True)]
    assert {a: str(v) for a, v in client.get_registered_model(name).aliases.items()} == {
        "challenger": "1",
        "champion": "1",
    }
