"""Registration only through the gates; champion moves only to a better model, under a lock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slimline.cli import app
from slimline.records.aliases import RegistryError, list_versions, promote, rollback
from slimline.records.registry import decide_and_promote
from slimline.records.tracking import log_pipeline_run
from tests.workspace import STAGES, build, scored_accuracy

NAME = "slimline-test"


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """One registry shared by every workspace of the test, as a team's store would be."""
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    (tmp_path / "store").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def pipeline(root: Path, **outcome):
    """Build a finished workspace, record it, and let the registry decide."""
    params = build(root, **outcome)
    stages = [{"name": s, "status": "ran", "seconds": 1.0} for s in STAGES]
    record = log_pipeline_run(root, params, stages)
    return params, record, decide_and_promote(root, params, record.run_id)


def aliases(uri: str) -> dict[str, str]:
    return {a: str(v) for a, v in client(uri).get_registered_model(NAME).aliases.items()}


def test_failed_gate_registers_nothing_moves_nothing_and_tags_the_run(tmp_path, store):
    _, _, first = pipeline(tmp_path / "a", accuracy=0.97)
    before = aliases(store)
    params, record, verdict = pipeline(tmp_path / "b", accuracy=0.99, gates_pass=False)
    assert not verdict.passed and verdict.version is None
    assert [g.name for g in verdict.failing] == ["min_accuracy"]
    assert aliases(store) == before == {"champion": first.version, "challenger": first.version}
    assert [v.version for v in list_versions(tmp_path / "b", params)] == [first.version]
    tags = client(store).get_run(record.run_id).data.tags
    assert tags["slimline.promotion"] == "rejected"
    assert tags["slimline.gates.failing"] == "min_accuracy (value=0.99, threshold=1.01)"


def test_speedup_gate_from_the_benchmark_counts_and_a_missing_report_fails_closed(tmp_path, store):
    _, _, slow = pipeline(tmp_path / "a", speedup_pass=False)
    assert [g.name for g in slow.failing] == ["min_speedup"]
    params, _, blind = pipeline(tmp_path / "b", omit=("reports/gates.json",))
    assert [g.name for g in blind.failing] == ["reports/gates.json:gates"]
    assert list_versions(tmp_path / "b", params) == []


def test_champion_moves_only_to_a_better_model_and_ties_go_to_lower_latency(tmp_path, store):
    _, _, v1 = pipeline(tmp_path / "1", accuracy=0.97)
    assert v1.champion and aliases(store) == {"champion": "1", "challenger": "1"}
    _, _, v2 = pipeline(tmp_path / "2", accuracy=0.99)
    assert v2.champion and v2.previous_champion == "1"
    _, _, v3 = pipeline(tmp_path / "3", accuracy=0.98)
    assert not v3.champion and aliases(store) == {"champion": "2", "challenger": "3"}
    _, _, v4 = pipeline(tmp_path / "4", accuracy=0.99, latency_ms=0.05)
    assert not v4.champion  # same accuracy, same latency: not better
    _, _, v5 = pipeline(tmp_path / "5", accuracy=0.99, latency_ms=0.04)
    assert v5.champion and aliases(store)["champion"] == "5"


def test_version_carries_verdict_figures_and_lineage_tags(tmp_path, store):
    _, record, verdict = pipeline(tmp_path / "a", accuracy=0.97, latency_ms=0.08)
    tags = client(store).get_model_version(NAME, verdict.version).tags
    assert tags["gates"] == "passed" and tags["run_id"] == record.run_id
    assert float(tags["accuracy"]) == 0.97 and float(tags["latency_ms"]) == 0.08
    assert float(tags["size_bytes"]) == 1000 and tags["data_sha256"] == "d" * 64
    assert tags["git_commit"] == "unknown"
    run_tags = client(store).get_run(record.run_id).data.tags
    assert run_tags["slimline.model_version"] == verdict.version
    assert run_tags["slimline.gate.min_speedup"] == "passed value=12.5 threshold=5.0"


def test_champion_loads_with_pyfunc_and_scores_the_reported_accuracy(tmp_path, store):
    import mlflow

    root = tmp_path / "a"
    params, _, verdict = pipeline(root)  # accuracy measured on the test split
    (tmp_path / "dl").mkdir()
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion", dst_path=str(tmp_path / "dl"))
    accuracy = scored_accuracy(root, params, lambda x: model.predict(x)["logits"])
    reported = json.loads((root / "reports/gates.json").read_text())["gates"][0]["value"]
    assert accuracy == reported == verdict.figures["accuracy"] == 1.0
    assert model.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 1, 8, 8)


def test_promote_and_rollback_follow_the_champion_history(tmp_path, store):
    params, _, _ = pipeline(tmp_path / "1", accuracy=0.97)
    pipeline(tmp_path / "2", accuracy=0.99)
    root = tmp_path / "2"
    assert rollback(root, params) == "1" and aliases(store)["champion"] == "1"
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(root, params)
    promote(root, params, "2")
    promote(root, params, "1", alias="challenger")
    assert aliases(store) == {"champion": "2", "challenger": "1"}
    assert rollback(root, params) == "1"
    with pytest.raises(RegistryError, match="has no version '99'"):
        promote(root, params, "99")
    unchecked = client(store).create_model_version(NAME, str(tmp_path / "1" / "dist"))
    with pytest.raises(RegistryError, match="did not pass its gates"):
        promote(root, params, str(unchecked.version))
    assert aliases(store) == {"champion": "1", "challenger": "1"}


def test_cli_models_promote_rollback(tmp_path, store):
    pipeline(tmp_path / "1", accuracy=0.97)
    pipeline(tmp_path / "2", accuracy=0.99)
    params = str(tmp_path / "2" / "params.yaml")
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "--params", params], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    assert "champion" in listed.stdout and "0.9900" in listed.stdout
    bad = runner.invoke(app, ["promote", "7", "--params", params])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: slimline-test has no version")
    back = runner.invoke(app, ["rollback", "--params", params])
    assert back.exit_code == 0 and "version 1" in back.stdout
    ok = runner.invoke(app, ["promote", "2", "--params", params])
    assert ok.exit_code == 0 and aliases(store)["champion"] == "2"


RACER = """
import pathlib, sys, time
from slimline.records import registry
from slimline.core.params import load_params

root, run_id, go = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
read_holder = registry._alias_holder

def slow_holder(*args):
    # widen the read-compare-set window: unlocked, both racers would read "no champion"
    holder = read_holder(*args)
    time.sleep(1.5)
    return holder

registry._alias_holder = slow_holder
params = load_params(root / "params.yaml")
while not go.exists():
    time.sleep(0.01)
verdict = registry.decide_and_promote(root, params, run_id)
print(verdict.previous_champion)
"""


def test_two_racing_promotions_leave_exactly_one_champion_the_better(tmp_path, store):
    runs = {}
    for name, acc in (("better", 0.99), ("worse", 0.96)):
        params = build(tmp_path / name, accuracy=acc)
        stages = [{"name": s, "status": "ran", "seconds": 1.0} for s in STAGES]
        runs[name] = log_pipeline_run(tmp_path / name, params, stages).run_id
    go = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(RACER), str(tmp_path / n), runs[n], str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in runs
    ]
    go.touch()
    outputs = [p.communicate(timeout=120) for p in racers]
    assert all(p.returncode == 0 for p in racers), [err for _, err in outputs]
    # serialized: the second racer saw the first's champion (unlocked, both would see none)
    assert [out.strip() for out, _ in outputs].count("None") == 1
    version_of = {
        n: client(store).get_run(runs[n]).data.tags["slimline.model_version"] for n in runs
    }
    assert aliases(store)["champion"] == version_of["better"]
    history = json.loads(client(store).get_registered_model(NAME).tags["slimline.champion_history"])
    assert history[-1] == version_of["better"] and len(history) == len(set(history))
