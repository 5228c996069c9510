"""A sweep in MLflow: one parent run, a child run per candidate (its DVC experiment, params,
figures, gates, whether it is on the Pareto front), the plot and the table as artifacts."""

from __future__ import annotations

from pathlib import Path

from slimline.core import gitinfo
from slimline.core.params.schema import Params
from slimline.records.candidates import Candidate, Checkout
from slimline.records.tracking import (
    close_abandoned,
    connect,
    entities,
    lineage_tags,
    owner_tags,
    tracking_errors,
)


def log_sweep(
    root: Path,
    params: Params,
    sweep_name: str,
    specs: list[str],
    candidates: list[Candidate],
    checkouts: dict[str, Checkout],
    artifacts: list[Path],
) -> dict[str, str]:
    """Parent and child runs; returns run ids by candidate name, plus `"sweep"`."""
    client, experiment_id, uri = connect(root, params)
    commit = gitinfo.commit(root)
    with tracking_errors(uri):
        close_abandoned(client, experiment_id, root)
        parent = client.create_run(
            experiment_id,
            run_name=sweep_name,
            tags={
                "slimline.kind": "sweep",
                "slimline.git_commit": commit,
                "mlflow.source.git.commit": commit,
                "slimline.sweep.grid": " ".join(specs),
                **owner_tags(root),
            },
        ).info.run_id
        ids = {"sweep": parent}
        for c in candidates:
            ids[c.name] = _log_candidate(client, experiment_id, parent, c, checkouts.get(c.name))
        front = [c for c in candidates if c.pareto]
        client.log_batch(
            parent,
            **entities(
                params={"sweep.grid": " ".join(specs)},
                metrics={
                    "candidates": len(candidates),
                    "failed": sum(not c.ok for c in candidates),
                    "pareto_front": len(front),
                    "gates_passed": sum(c.gates_passed for c in candidates),
                },
                tags={"slimline.sweep.front": ",".join(c.name for c in front)},
            ),
        )
        for path in artifacts:
            if path.exists():
                client.log_artifact(parent, str(path), artifact_path="sweep")
        client.set_terminated(parent, "FINISHED")
    return ids


def _log_candidate(
    client, experiment_id: str, parent: str, c: Candidate, checkout: Checkout | None
):
    tags = {
        "mlflow.parentRunId": parent,
        "slimline.kind": "sweep-candidate",
        "slimline.dvc_exp": c.name,
        "slimline.dvc_exp_rev": c.rev,
        "slimline.overrides": " ".join(c.overrides),
        "slimline.status": "ran" if c.ok else "failed",
        "slimline.pareto": str(c.pareto).lower(),
        "slimline.dask_worker": c.worker,
        "slimline.gates.passed": str(c.gates_passed).lower(),
    }
    if c.failing:
        tags["slimline.gates.failing"] = "; ".join(c.failing)
    if c.error:
        tags["slimline.error"] = c.error[:5000]
    if checkout is not None:  # lineage as for a pipeline run: the experiment's commit and locks
        tags |= lineage_tags(checkout.path, checkout.params, [], c.rev)
    run_id = client.create_run(experiment_id, run_name=c.name, tags=tags).info.run_id
    metrics = {
        **c.metrics,
        **c.figures,
        "gates_passed": float(c.gates_passed),
        "pareto": float(c.pareto),
        "seconds": c.seconds,
    }
    params = c.params or {o.split("=")[0]: o.split("=", 1)[1] for o in c.overrides}
    client.log_batch(run_id, **entities(params=params, metrics=metrics))
    client.set_terminated(run_id, "FINISHED" if c.ok else "FAILED")
    return run_id
