"""One MLflow parent run per pipeline run, a child per stage, lineage tags; SQLite in tmp."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slimline.records.stage_outputs import stage_files
from slimline.records.tracking import log_pipeline_run, tracking_uri
from tests.support.processes import git
from tests.support.workspace import STAGES, final, reported

CACHED = {"prepare", "train_teacher"}


START = 1_790_000_000.0  # epoch seconds (2026-09-21)


def stage_list(failed: str | None = None) -> list[dict]:
    def status(name: str) -> str:
        return "failed" if name == failed else "cached" if name in CACHED else "ran"

    # as the flow reports them: each stage started 2 s after the previous, an hour ago
    return [
        {"name": s, "status": status(s), "seconds": 1.5, "started": START + 2 * i}
        for i, s in enumerate(STAGES)
    ]


@pytest.fixture(autouse=True)
def project_store(monkeypatch):
    """The project's own SQLite store, as a user without MLFLOW_TRACKING_URI gets it."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def logged(tmp_path, workspace, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)  # an empty cwd: where SQLite's default ./mlruns would appear
    root = tmp_path / "ws"
    params = workspace(root)
    record = log_pipeline_run(root, params, stage_list())
    client = mlflow.MlflowClient(record.tracking_uri)
    children = {
        r.info.run_name: r
        for r in client.search_runs(
            [record.experiment_id], f"tags.mlflow.parentRunId = '{record.run_id}'"
        )
    }
    return root, params, record, client, children


def curve(path: Path, column: str) -> list[tuple[int, float]]:
    with path.open(newline="") as f:
        return [(int(row["epoch"]), float(row[column])) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_parent_run_holds_flat_params_summary_and_stage_status(logged):
    root, params, record, client, children = logged
    parent = client.get_run(record.run_id)
    bench = reported(root, params)["benchmark_report"]
    assert record.tracking_uri == f"sqlite:///{root.resolve()}/mlflow.db"
    assert parent.info.status == "FINISHED"
    assert record.run_name.startswith("slimline-") and record.run_name.endswith("-unknown")
    assert parent.data.params["prune.ratio"] == str(params.prune.ratio)
    assert parent.data.params["tracking.model_name"] == "slimline-test"
    # the deployed model's figures, from the benchmark the stage wrote
    summary = {k: v for k, v in parent.data.metrics.items() if k.startswith("final.")}
    assert summary["final.accuracy"] == final(bench)["accuracy"]
    assert summary["final.latency_ms_b1_p50"] == final(bench)["latency_ms_b1_p50"]
    assert summary["final.size_bytes"] == final(bench)["size_bytes"]
    assert summary["final.speedup"] == bench["speedup"]
    assert parent.data.metrics["gates_passed"] == 1.0
    assert parent.data.tags["slimline.cached_stages"] == "prepare,train_teacher"
    assert set(children) == set(STAGES) == set(record.stage_runs)
    assert children["prepare"].data.tags["slimline.stage.status"] == "cached"
    assert children["prune"].data.tags["slimline.stage.status"] == "ran"
    assert all(c.data.metrics["seconds"] == 1.5 for c in children.values())


@pytest.mark.slow
def test_each_stage_child_has_its_metrics_and_curves(logged):
    root, params, record, client, children = logged
    real = reported(root, params)
    # the runs span the time the stages ran (not the second it took to record them)
    for i, stage in enumerate(STAGES):
        info = children[stage].info
        assert (info.start_time, info.end_time) == (int((START + 2 * i) * 1000),
                                                    int((START + 2 * i + 1.5) * 1000))  # fmt: skip
    assert client.get_run(record.run_id).info.start_time == int(START * 1000)

    def history(stage: str, key: str) -> list[tuple[int, float]]:
        return [
            (m.step, m.value) for m in client.get_metric_history(children[stage].info.run_id, key)
        ]

    teacher = children["train_teacher"].data.metrics
    assert teacher["accuracy"] == real["teacher_metrics"]["accuracy"]
    assert teacher["best_epoch"] == real["teacher_metrics"]["best_epoch"]
    for column in ("val_loss", "val_accuracy", "lr"):  # each epoch a step
        expected = curve(root / params.paths.teacher_curve, column)
        assert len(expected) == params.teacher.epochs
        assert history("train_teacher", f"curve/{column}") == expected
    student = children["distill"].data.metrics
    assert student["kd_gain"] == real["student_metrics"]["kd_gain"]
    assert student["baseline_accuracy"] == real["student_metrics"]["baseline_accuracy"]
    # one prune step per iteration, as step metrics under the stage's own keys
    steps = real["pruned_metrics"]["steps"]
    assert len(steps) == params.prune.steps
    for key in ("accuracy_after_finetune", "accuracy_before_finetune", "params"):
        assert history("prune", f"steps.{key}") == [(i, s[key]) for i, s in enumerate(steps)]
    assert children["prune"].data.metrics["params_ratio"] == real["pruned_metrics"]["params_ratio"]
    quantize = children["quantize"]
    assert quantize.data.params["mode"] == params.quantize.mode == "static"
    assert quantize.data.metrics["agreement"] == real["quantize_metrics"]["agreement"]
    # every gate validate judged: value, threshold and verdict
    gates = children["validate"].data.metrics
    assert gates["passed"] == 1.0
    assert len(real["gates_report"]["gates"]) == 5
    for g in real["gates_report"]["gates"]:
        assert gates[f"{g['name']}.value"] == g["value"]
        assert gates[f"{g['name']}.threshold"] == g["threshold"]
        assert gates[f"{g['name']}.passed"] == 1.0
    bench = children["benchmark"].data.metrics
    for v in real["benchmark_report"]["variants"]:
        assert bench[f"{v['name']}.latency_ms_b1_p50"] == v["latency_ms_b1_p50"]
        assert bench[f"{v['name']}.accuracy"] == v["accuracy"]
    assert bench["speedup_gate.passed"] == 1.0
    assert bench["speedup_gate.value"] == real["benchmark_report"]["speedup"]
    prepare = children["prepare"].data
    data = real["data_report"]
    assert prepare.metrics["expectations"] == len(data["expectations"]) > 0
    assert prepare.metrics["expectations_failed"] == 0
    assert prepare.metrics["test.samples"] == data["splits"]["test"]["samples"]
    assert prepare.params["sha256"] == data["sha256"]
    # the degenerate-data checks' verdict is reviewable beside the run, not only in the report
    assert prepare.params["learnability.verdict"] == data["learnability"]["verdict"]
    assert prepare.metrics["learnability.accuracy.knn"] == data["learnability"]["accuracy"]["knn"]
    assert prepare.metrics["conflicting_labels.share"] == data["conflicting_labels"]["share"]


@pytest.mark.slow
def test_artifacts_land_in_mlartifacts_beside_the_store(logged):
    root, _, record, client, children = logged

    def paths(run_id: str, folder: str = "") -> set[str]:
        return {a.path for a in client.list_artifacts(run_id, folder or None)}

    assert {"dist", "plots", "reports", "dvc.lock", "params.yaml"} <= paths(record.run_id)
    assert {"dist/model.onnx", "dist/model_card.md", "dist/settings.json"} <= paths(
        record.run_id, "dist"
    )
    assert {"reports/gates.json", "reports/benchmark.json"} <= paths(record.run_id, "reports")
    assert {"plots/tradeoff.png", "plots/confusion.png"} <= paths(record.run_id, "plots")
    teacher = children["train_teacher"].info.run_id
    assert "models/onnx/teacher.onnx" in paths(teacher, "models/onnx")
    assert (root / "mlartifacts").is_dir() and not (root / "mlruns").exists()
    assert not Path("mlruns").exists()  # SQLite's default root: ./mlruns of the cwd (tmp_path)


@pytest.mark.slow
def test_lineage_tags_name_commit_dirty_lock_hashes_and_data(tmp_path, workspace):
    import mlflow

    root = tmp_path / "ws"
    params = workspace(root)
    git(root, "init", "-q")
    git(root, "add", "params.yaml", "dvc.lock")
    git(root, "commit", "-q", "-m", "x")
    head = git(root, "rev-parse", "HEAD").strip()
    record = log_pipeline_run(root, params, stage_list())
    tags = mlflow.MlflowClient(record.tracking_uri).get_run(record.run_id).data.tags
    assert tags["slimline.git_commit"] == head and record.run_name.endswith(head[:7])
    assert tags["slimline.git_dirty"] == "false"
    for stage in STAGES:  # each stage's entry of the real dvc.lock
        entry = yaml.safe_load((root / "dvc.lock").read_text())["stages"][stage]
        md5 = hashlib.md5(json.dumps(entry, sort_keys=True).encode()).hexdigest()
        assert tags[f"slimline.dvc_lock.{stage}"] == md5
    assert tags["slimline.data_sha256"] == reported(root, params)["data_report"]["sha256"]
    assert tags["slimline.params_sha256"] == params.digest()
    assert tags["slimline.version"] == "0.1.0"
    (root / "params.yaml").write_text((root / "params.yaml").read_text() + "\n# edit\n")
    again = log_pipeline_run(root, params, stage_list())
    tags = mlflow.MlflowClient(again.tracking_uri).get_run(again.run_id).data.tags
    assert tags["slimline.git_dirty"] == "true"


@pytest.mark.slow
def test_missing_outputs_of_a_failed_stage_are_tagged_not_fatal(tmp_path, workspace):
    import mlflow

    root = tmp_path / "ws"
    gone = ("metrics/pruned.json", "plots/pruned_curve.csv", "reports/benchmark.json")
    params = workspace(root, omit=gone)
    record = log_pipeline_run(root, params, stage_list(failed="prune"))
    client = mlflow.MlflowClient(record.tracking_uri)
    assert record.missing["prune"] == ["metrics/pruned.json", "plots/pruned_curve.csv"]
    prune = client.get_run(record.stage_runs["prune"])
    assert prune.info.status == "FAILED"
    assert prune.data.tags["slimline.missing"] == "metrics/pruned.json,plots/pruned_curve.csv"
    assert "models/onnx/pruned.onnx" in {
        a.path for a in client.list_artifacts(prune.info.run_id, "models/onnx")
    }  # what the stage did leave is still logged
    parent = client.get_run(record.run_id)
    assert parent.info.status == "FAILED"  # the run did not get through: MLflow says so
    assert parent.data.tags["slimline.failed_stage"] == "prune"
    assert set(parent.data.tags["slimline.missing_outputs"].split(",")) == set(gone)
    assert not any(k.startswith("final.") for k in parent.data.metrics)  # no benchmark, no figures


@pytest.mark.slow
def test_tracking_uri_env_wins_and_sqlite_artifacts_go_beside_its_file(
    tmp_path, monkeypatch, workspace
):
    store = tmp_path / "elsewhere"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/other.db")
    root = tmp_path / "ws"
    store.mkdir()
    record = log_pipeline_run(root, workspace(root), stage_list())
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


@pytest.mark.slow
def test_a_cached_stage_points_at_the_run_holding_its_files_instead_of_copying_them(
    logged, workspace
):
    root, params, first, client, children = logged
    store = root / "mlartifacts"
    size = lambda: sum(f.stat().st_size for f in store.rglob("*") if f.is_file())  # noqa: E731
    before = size()
    # a no-op run: every stage cached, the same dvc.lock
    again = log_pipeline_run(root, params, [s | {"status": "cached"} for s in stage_list()])
    for stage, run_id in again.stage_runs.items():
        run = client.get_run(run_id)
        holder = run.data.tags["slimline.artifacts_run"]
        assert holder == children[stage].info.run_id  # the first run's child of that stage
        assert not client.list_artifacts(run_id)
        assert run.data.metrics["seconds"] == 1.5  # the figures are logged all the same
    # a third no-op points at the same holder, not at the second run's empty child
    third = log_pipeline_run(root, params, [s | {"status": "cached"} for s in stage_list()])
    teacher = client.get_run(third.stage_runs["train_teacher"])
    assert teacher.data.tags["slimline.artifacts_run"] == children["train_teacher"].info.run_id
    # the holder deleted (a clean-up in the UI): the next no-op logs the files again
    client.delete_run(children["train_teacher"].info.run_id)
    fourth = log_pipeline_run(root, params, [s | {"status": "cached"} for s in stage_list()])
    teacher = client.get_run(fourth.stage_runs["train_teacher"])
    assert "slimline.artifacts_run" not in teacher.data.tags
    assert "models/onnx/teacher.onnx" in {
        a.path for a in client.list_artifacts(teacher.info.run_id, "models/onnx")}  # fmt: skip
    # exactly the parent's files of each run (reports, plots, the bundle, dvc.lock and
    # params.yaml), and the stages' files only once more, after their holder was deleted
    parent_files = [f for d in ("dist", "reports", "plots") for f in (root / d).glob("*")
                    if f.is_file()] + [root / "dvc.lock", root / "params.yaml"]  # fmt: skip
    teacher_files = sum((root / f).stat().st_size for f in stage_files(params, "train_teacher"))
    assert size() - before == 3 * sum(f.stat().st_size for f in parent_files) + teacher_files
