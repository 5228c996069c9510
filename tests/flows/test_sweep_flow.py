"""`slimline sweep`: candidates as parallel DVC experiments on a Dask task runner, listed by
`dvc exp show`, logged as MLflow child runs, a Pareto plot, and the best one registered."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.flows.cli import copy_project, mlflow_client, runs, slimline

pytestmark = pytest.mark.slow


def test_a_sweep_runs_candidates_as_experiments_and_promotes_the_best(flow_project, tmp_path):
    root = copy_project(flow_project.project, tmp_path / "project")
    result = slimline(root, "sweep", "-S", "prune.ratio=0.3,0.6", "--workers", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    report = json.loads((root / "reports" / "sweep.json").read_text())
    names = [c["name"] for c in report["candidates"]]
    assert [c["overrides"] for c in report["candidates"]] == [
        ["prune.ratio=0.3"],
        ["prune.ratio=0.6"],
    ]
    assert all(c["ok"] and c["gates_passed"] for c in report["candidates"])
    assert any(c["pareto"] for c in report["candidates"])
    assert (root / "reports" / "pareto.png").read_bytes().startswith(b"\x89PNG")

    # DVC lists both experiments, with their params and their metrics
    shown = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    exps = {
        rev["name"]: rev["data"]
        for base in json.loads(shown.stdout)
        for exp in base.get("experiments") or []
        for rev in exp["revs"]
    }
    assert set(names) <= exps.keys()
    ratio = exps[names[0]]["params"]["params.yaml"]["data"]["prune"]["ratio"]
    assert ratio == 0.3
    assert "metrics/pruned.json" in exps[names[0]]["metrics"]

    # one sweep run with a child per candidate; the best one registered from its child run
    client, found = runs(root)
    sweep = next(r for r in found if r.data.tags.get("slimline.kind") == "sweep")
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
    assert sorted(c.info.run_name for c in children) == sorted(names)
    assert {c.data.tags["slimline.dvc_exp_rev"] for c in children} != {""}
    best = next(c for c in children if c.info.run_name == report["best"])
    versions = mlflow_client(root).search_model_versions("name='slimline-digits'")
    promoted = [v for v in versions if v.tags.get("run_id") in {c.info.run_id for c in children}]
    assert [v.tags["run_id"] for v in promoted] == [best.info.run_id]
    assert best.data.tags["slimline.model_version"] == str(promoted[0].version)
    assert f"best: {report['best']}" in result.stdout
