"""`slimline run` is the Prefect flow over the DVC stages: every stage a task, one complete
MLflow record per run, the registry's verdict, a Prefect artifact, the contract's exit codes."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing

import pytest

from slimline.orchestration.dvc_run import stage_order
from tests.support.cli import mlflow_client, runs, slimline

pytestmark = pytest.mark.slow


def test_a_cold_run_runs_every_stage_records_it_and_promotes(flow_project):
    root, result = flow_project.project, flow_project.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stages = stage_order(root)
    # each stage's output was streamed into its Prefect task's log (Prefect logs to stderr),
    # without DVC's bookkeeping lines or MLflow's registry notes around it
    for stage in stages:
        assert f"Task run '{stage}' - [{stage}] " in result.stderr
    said = result.stdout + result.stderr
    assert "Updating lock file" not in said and "Successfully registered model" not in said
    assert len(said.splitlines()) <= 60, said
    # the summary table and the verdict end the output, then where to look
    for variant in ("teacher_fp32", "student_fp32", "pruned_fp32", "final_int8"):
        assert variant in result.stdout
    assert "registry: version 1 is champion (was none)" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("look: dist/model_card.md")

    client, found = runs(root)
    parent = next(r for r in found if r.data.tags.get("slimline.ran_stages"))
    assert parent.data.tags["slimline.ran_stages"] == ",".join(stages)
    assert parent.data.tags["slimline.promotion"] == "champion"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(c.info.run_name for c in children) == sorted(stages)
    assert {c.data.tags["slimline.stage.status"] for c in children} == {"ran"}


def test_a_new_projects_first_run_keeps_its_prefect_database_for_the_next(flow_project):
    # against the real Prefect, what the unit tests fake: its migrated database is kept
    # before the run (schema version, block registry, no flow run) in rollback-journal mode
    (template,) = (flow_project.cache / "slimline").glob("prefect-*.db")
    assert template.read_bytes()[18:20] == b"\x01\x01"
    with closing(sqlite3.connect(template)) as db:
        count = lambda table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
        assert (count("alembic_version"), count("flow_run"), count("flow")) == (1, 0, 0)
        assert count("block_type") > 0
    project_db = sqlite3.connect(flow_project.project / ".prefect" / "prefect.db")
    with closing(project_db):  # the project's own database went on to record the run
        assert project_db.execute("SELECT count(*) FROM flow_run").fetchone()[0] >= 1


def test_the_prefect_ui_gets_the_gates_and_benchmark_as_an_artifact(flow_project):
    db = flow_project.project / ".prefect" / "prefect.db"  # ephemeral mode, inside the project
    with sqlite3.connect(db) as con:
        rows = con.execute("select key, type, data from artifact").fetchall()
    key, kind, data = rows[-1]
    assert (key, kind) == ("slimline-pipeline", "markdown")
    assert "## Gates" in data and "min_accuracy" in data and "final_int8" in data


def test_a_run_with_nothing_changed_is_a_quick_recorded_no_op(flow_project):
    root = flow_project.project
    client = mlflow_client(root)
    versions = len(client.search_model_versions("name='slimline-digits'"))
    start = time.monotonic()
    result = slimline(root, "run")
    # for the log only: a time comparison between two runs breaks on a loaded machine
    print(f"no-op run {time.monotonic() - start:.1f} s, cold run {flow_project.seconds:.1f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # quick because nothing ran: no stage process, every stage reported cached
    assert "Running stage" not in result.stderr
    assert "stages: ran: none; cached: prepare, train_teacher" in result.stdout
    _, found = runs(root)
    latest = next(r for r in found if "mlflow.parentRunId" not in r.data.tags)
    assert latest.data.tags.get("slimline.ran_stages", "") == ""
    assert latest.data.tags["slimline.cached_stages"] == ",".join(stage_order(root))
    # the same model is not registered again: the earlier verdict is reused and recorded
    assert latest.data.tags["slimline.promotion"] == "unchanged"
    assert latest.data.tags["slimline.model_version"] == "1"
    assert len(client.search_model_versions("name='slimline-digits'")) == versions


def test_bad_params_exit_2_before_anything_starts(flow_project):
    root = flow_project.project
    before = (root / "params.yaml").read_bytes()
    result = slimline(root, "run", "-S", "prune.ratio=1.5", "-S", "distill.alpha=2")
    assert result.returncode == 2
    assert "prune.ratio" in result.stderr and "distill.alpha" in result.stderr
    # before anything starts: no flow run, no stage
    assert "Beginning flow run" not in result.stdout + result.stderr
    assert "Running stage" not in result.stdout + result.stderr
    assert (root / "params.yaml").read_bytes() == before


def test_check_after_a_run_reruns_nothing_and_names_what_an_override_would_rerun(flow_project):
    import json

    root = flow_project.project
    before = (root / "params.yaml").read_bytes()
    same = slimline(root, "check", "--json")
    assert same.returncode == 0, same.stderr[-3000:]
    doc = json.loads(same.stdout)
    assert [s["name"] for s in doc["stages"]] == stage_order(root)
    assert doc["rerun"] == [] and doc["may_rerun"] == []
    # what `slimline run -S prune.ratio=...` would rerun, read from dvc.lock, written nowhere
    pruned = json.loads(slimline(root, "check", "-S", "prune.ratio=0.3", "--json").stdout)
    assert pruned["rerun"] == ["prune"]
    assert {"quantize", "export", "validate", "benchmark"} <= set(pruned["may_rerun"])
    assert "prepare" not in pruned["may_rerun"] and "distill" not in pruned["may_rerun"]
    assert (root / "params.yaml").read_bytes() == before
