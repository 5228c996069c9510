"""`slimline sweep`: candidates as parallel DVC experiments on a Dask task runner, listed by
`dvc exp show`, logged as MLflow child runs, the Pareto front of their real figures, and the
best one that passed its gates registered as challenger and champion."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from slimline.records.aliases import version_figures
from slimline.records.rounding import for_people
from tests.support.cli import copy_project, mlflow_client, runs, slimline

pytestmark = pytest.mark.slow


def test_a_sweep_runs_candidates_as_experiments_and_promotes_the_best(flow_project, tmp_path):
    root = copy_project(flow_project.project, tmp_path / "project")
    result = slimline(
        root, "sweep", "-S", "prune.ratio=0.3", "-S", "prune.ratio=0.6", "--workers", "2"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    # the user's screen: stage lines and the result, without Dask's or DVC's chatter
    said = result.stdout + result.stderr
    assert "distributed." not in said and "Updating lock file" not in said, said
    assert len(said.splitlines()) <= 50, said
    assert result.stdout.rstrip().splitlines()[-1].startswith("look: reports/sweep.json")
    report = json.loads((root / "reports" / "sweep.json").read_text())
    names = [c["name"] for c in report["candidates"]]
    assert [c["overrides"] for c in report["candidates"]] == [
        ["prune.ratio=0.3"],
        ["prune.ratio=0.6"],
    ]
    cands = {c["name"]: c for c in report["candidates"]}
    assert all(c["ok"] and c["gates_passed"] and c["failing"] == [] for c in cands.values())
    # each ran on a worker of the local Dask cluster, which says so
    assert all(c["worker"] for c in cands.values())
    assert all(
        {"accuracy", "latency_ms", "size_bytes"} <= c["figures"].keys() for c in cands.values()
    )
    # the front, recomputed here from the figures the report gives: accuracy up, latency and
    # size down; on it is every candidate that no other one matches or beats everywhere
    assert [c["name"] for c in cands.values() if c["pareto"]] == front(list(cands.values()))
    # the promoted one passed its gates and is the best by the primary metric (accuracy; a tie
    # goes to the lower latency), as the registry's rule has it
    best = cands[report["best"]]
    assert best["gates_passed"]
    ranked = sorted(
        (c for c in cands.values() if c["gates_passed"]),
        key=lambda c: (-c["figures"]["accuracy"], c["figures"]["latency_ms"]),
    )
    assert best["figures"] == ranked[0]["figures"]
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
    best_run = next(c for c in children if c.info.run_name == report["best"])
    versions = mlflow_client(root).search_model_versions("name='slimline-digits'")
    promoted = [v for v in versions if v.tags.get("run_id") in {c.info.run_id for c in children}]
    assert [v.tags["run_id"] for v in promoted] == [best_run.info.run_id]
    version = str(promoted[0].version)
    assert best_run.data.tags["slimline.model_version"] == version
    # the tags read as people read figures (records.rounding); the full precision the
    # champion defends with is the registering run's metrics
    figures = best["figures"]
    assert promoted[0].tags["accuracy"] == for_people("accuracy", figures["accuracy"])
    assert promoted[0].tags["latency_ms"] == for_people("latency_ms", figures["latency_ms"])
    defended = version_figures(mlflow_client(root), "slimline-digits", version)
    assert defended["accuracy"] == figures["accuracy"]
    assert defended["latency_ms"] == figures["latency_ms"]
    # the copy's store is fresh: the best candidate is challenger, and champion for lack of one
    model = mlflow_client(root).get_registered_model("slimline-digits")
    assert {a: str(v) for a, v in model.aliases.items()} == {
        "champion": version,
        "challenger": version,
    }
    assert f"best: {report['best']}" in result.stdout


def front(cands: list[dict]) -> list[str]:
    """Names of the candidates no other one dominates (at least as good on accuracy, latency
    and size, and better on one), in report order."""

    def dominates(d: dict, c: dict) -> bool:
        a, b = d["figures"], c["figures"]
        at_least = (a["accuracy"] >= b["accuracy"] and a["latency_ms"] <= b["latency_ms"]
                    and a["size_bytes"] <= b["size_bytes"])  # fmt: skip
        return at_least and (a["accuracy"], a["latency_ms"], a["size_bytes"]) != (
            b["accuracy"], b["latency_ms"], b["size_bytes"])  # fmt: skip

    return [c["name"] for c in cands if not any(dominates(d, c) for d in cands if d is not c)]
