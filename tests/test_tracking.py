"""One MLflow parent run per pipeline run, a child per stage, lineage tags; SQLite in tmp."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slimline.records.tracking import log_pipeline_run, tracking_uri
from tests.workspace import STAGES, build

CACHED = {"prepare", "train_teacher"}


def stage_list(failed: str | None = None) -> list[dict]:
    def status(name: str) -> str:
        return "failed" if name == failed else "cached" if name in CACHED else "ran"

    return [{"name": s, "status": status(s), "seconds": 1.5} for s in STAGES]


@pytest.fixture(autouse=True)
def project_store(monkeypatch):
    """The project's own SQLite store, as a user without MLFLOW_TRACKING_URI gets it."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def logged(tmp_path):
    import mlflow

    root = tmp_path / "ws"
    params = build(root)
    record = log_pipeline_run(root, params, stage_list())
    client = mlflow.MlflowClient(record.tracking_uri)
    children = {
        r.info.run_name: r
        for r in client.search_runs(
            [record.experiment_id], f"tags.mlflow.parentRunId = '{record.run_id}'"
        )
    }
    return root, record, client, client.get_run(record.run_id), children


def git(root: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args]
    return subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout


def test_parent_run_holds_flat_params_summary_and_stage_status(logged):
    root, record, _, parent, children = logged
    assert record.tracking_uri == f"sqlite:///{root.resolve()}/mlflow.db"
    assert parent.info.status == "FINISHED"
    assert record.run_name.startswith("slimline-") and record.run_name.endswith("-unknown")
    assert parent.data.params["prune.ratio"] == "0.5"
    assert parent.data.params["tracking.model_name"] == "slimline-test"
    assert parent.data.metrics["final.accuracy"] == 1.0
    assert parent.data.metrics["gates_passed"] == 1.0
    assert parent.data.tags["slimline.cached_stages"] == "prepare,train_teacher"
    assert set(children) == set(STAGES) == set(record.stage_runs)
    assert children["prepare"].data.tags["slimline.stage.status"] == "cached"
    assert children["prune"].data.tags["slimline.stage.status"] == "ran"
    assert all(c.data.metrics["seconds"] == 1.5 for c in children.values())


def test_each_stage_child_has_its_metrics_and_curves(logged):
    _, _, client, _, children = logged
    teacher = children["train_teacher"]
    assert teacher.data.metrics["accuracy"] == 1.0
    curve = client.get_metric_history(teacher.info.run_id, "curve/val_loss")
    assert [m.step for m in curve] == [1, 2, 3, 4, 5]
    assert children["distill"].data.metrics["kd_gain"] == 0.0
    steps = client.get_metric_history(children["prune"].info.run_id, "steps.accuracy_after")
    assert [m.step for m in steps] == [0, 1]
    assert children["quantize"].data.params["mode"] == "static"
    gates = children["validate"].data.metrics
    assert gates["min_accuracy.value"] == 1.0 and gates["min_accuracy.threshold"] == 0.9
    bench = children["benchmark"].data.metrics
    assert bench["final_int8.latency_ms_b1_p50"] == 0.05 and bench["speedup_gate.passed"] == 1
    assert children["prepare"].data.metrics["expectations_failed"] == 0
    assert children["prepare"].data.params["sha256"] == "d" * 64


def test_artifacts_land_in_mlartifacts_beside_the_store(logged):
    root, record, client, _, children = logged

    def paths(run_id: str, folder: str = "") -> set[str]:
        return {a.path for a in client.list_artifacts(run_id, folder or None)}

    assert {"dist", "plots", "reports", "dvc.lock", "params.yaml"} <= paths(record.run_id)
    assert {"dist/model.onnx", "dist/model_card.md"} <= paths(record.run_id, "dist")
    assert "reports/gates.json" in paths(record.run_id, "reports")
    assert "plots/tradeoff.png" in paths(record.run_id, "plots")
    teacher = children["train_teacher"].info.run_id
    assert "models/onnx/teacher.onnx" in paths(teacher, "models/onnx")
    assert (root / "mlartifacts").is_dir() and not (root / "mlruns").exists()
    assert not Path("mlruns").exists()  # SQLite's default root would be ./mlruns of the cwd


def test_lineage_tags_name_commit_dirty_lock_hashes_and_data(tmp_path):
    import mlflow

    root = tmp_path / "ws"
    params = build(root)
    git(root, "init", "-q")
    git(root, "add", "params.yaml", "dvc.lock")
    git(root, "commit", "-q", "-m", "x")
    head = git(root, "rev-parse", "HEAD").strip()
    record = log_pipeline_run(root, params, stage_list())
    tags = mlflow.MlflowClient(record.tracking_uri).get_run(record.run_id).data.tags
    assert tags["slimline.git_commit"] == head and record.run_name.endswith(head[:7])
    assert tags["slimline.git_dirty"] == "false"
    entry = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["prune"]
    md5 = hashlib.md5(json.dumps(entry, sort_keys=True).encode()).hexdigest()
    assert tags["slimline.dvc_lock.prune"] == md5
    assert tags["slimline.data_sha256"] == "d" * 64
    assert tags["slimline.version"] == "0.1.0"
    (root / "params.yaml").write_text((root / "params.yaml").read_text() + "\n# edit\n")
    again = log_pipeline_run(root, params, stage_list())
    tags = mlflow.MlflowClient(again.tracking_uri).get_run(again.run_id).data.tags
    assert tags["slimline.git_dirty"] == "true"


def test_missing_outputs_of_a_failed_stage_are_tagged_not_fatal(tmp_path):
    import mlflow

    root = tmp_path / "ws"
    gone = ("metrics/pruned.json", "plots/pruned_curve.csv", "reports/benchmark.json")
    params = build(root, omit=gone)
    record = log_pipeline_run(root, params, stage_list(failed="prune"))
    client = mlflow.MlflowClient(record.tracking_uri)
    assert record.missing["prune"] == ["metrics/pruned.json", "plots/pruned_curve.csv"]
    prune = client.get_run(record.stage_runs["prune"])
    assert prune.info.status == "FAILED"
    assert prune.data.tags["slimline.missing"] == "metrics/pruned.json,plots/pruned_curve.csv"
    parent = client.get_run(record.run_id)
    assert parent.info.status == "FINISHED"
    assert set(parent.data.tags["slimline.missing_outputs"].split(",")) == set(gone)


def test_tracking_uri_env_wins_and_sqlite_artifacts_go_beside_its_file(tmp_path, monkeypatch):
    store = tmp_path / "elsewhere"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/other.db")
    root = tmp_path / "ws"
    store.mkdir()
    record = log_pipeline_run(root, build(root), stage_list())
    assert record.tracking_uri == f"sqlite:///{store}/other.db"
    assert (store / "mlartifacts").is_dir() and not (root / "mlflow.db").exists()


def test_importing_the_library_has_no_side_effects(tmp_path):
    code = (
        "import sys, slimline.records.tracking, slimline.records.registry,"
        " slimline.records.aliases, slimline.cli;"
        "print(sorted(m for m in ('mlflow', 'onnxruntime', 'prefect') if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]" and list(tmp_path.iterdir()) == []
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
