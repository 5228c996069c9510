"""The Prefect sweep flow: candidates as parallel DVC experiments, the Pareto front, MLflow,
and the registry's rule for the best candidate that passes every gate.

The task runner is the caller's (`slimline sweep` passes a DaskTaskRunner: a local cluster of
threads, or `--dask-address`); each candidate is its own `dvc exp run` process anyway.
Imported only by the commands that run it; `flows/sweep.py` is the deployable entry point.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from slimline.core.atomic import write_json
from slimline.core.params.loading import load_params
from slimline.core.params.schema import Params
from slimline.orchestration import dvc_run
from slimline.orchestration.abandoned import close_abandoned_runs
from slimline.orchestration.experiments import (
    copy_paths,
    exp_argv,
    read_experiments,
    remove_worktrees,
    worktree,
)
from slimline.orchestration.overrides import grid
from slimline.orchestration.pipeline_flow import StageFailed, tracking_task
from slimline.orchestration.runlock import lock_path, workspace_lock
from slimline.records.candidates import Candidate, Checkout, pareto_front, plot_pareto

# the first line DVC prints about a stage: the experiment's setup is over by then
STARTED = re.compile(r"^(Running stage|Stage) '")


@task(name="candidate", task_run_name="{name}", cache_policy=NO_CACHE)
def run_candidate(
    project_dir: str,
    name: str,
    overrides: list[str],
    copies: list[str],
    candidate_timeout: float | None,
    stage_timeout: float | None = None,
) -> dict[str, Any]:
    """`dvc exp run --temp -n name -S ...`, killed once it has run `candidate_timeout`
    seconds or one of its stages `stage_timeout` seconds; returns its seconds and the address
    of the Dask worker that ran it."""
    from filelock import FileLock

    log = get_run_logger()
    root = Path(project_dir)
    # DVC sets an experiment up by stashing the workspace and queueing on one shared git
    # ref: two setups at once could copy a stashed-away file or take each other's entry.
    # Setups go one at a time; the runs themselves overlap.
    setup = FileLock(lock_path(root).with_name("exp-setup.lock"), thread_local=False)
    setup.acquire()

    log_line = dvc_run.log_lines(log)

    def on_line(line: str) -> None:
        log_line(line)
        if setup.is_locked and STARTED.match(line):
            setup.release()

    try:
        done = dvc_run.run(
            exp_argv(name, overrides, copies),
            root,
            timeout=candidate_timeout,
            stage_timeout=stage_timeout,
            on_line=on_line,
        )
    finally:
        if setup.is_locked:
            setup.release()
    if done.late_stage:
        raise StageFailed(
            f"candidate {name}: stage {done.late_stage} ran past its timeout of "
            f"{stage_timeout:g} s; its processes were killed",
            name,
            1,
        )
    if done.timed_out:
        raise StageFailed(
            f"candidate {name} ran past its timeout of {candidate_timeout:g} s and was killed",
            name,
            1,
        )
    if done.exit_code:
        raise StageFailed(f"candidate {name} failed: {done.stage_error()}", name, done.exit_code)
    if not any(f"Reproducing experiment '{name}'" in line for line in done.lines):
        raise StageFailed(f"candidate {name}: DVC ran another experiment in its place", name, 1)
    return {"seconds": round(done.seconds, 3), "worker": dask_worker()}


def dask_worker() -> str:
    """The address of the Dask worker running this task ("" outside one)."""
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:  # not in a Dask worker
        return ""


@tracking_task("mlflow-sweep")
def record_sweep(
    root: Path,
    sweep_name: str,
    specs: list[str],
    params: Params,
    candidates: list[Candidate],
    checkouts: dict[str, Checkout],
    artifacts: list[Path],
) -> dict[str, str]:
    from slimline.records.sweep_tracking import log_sweep

    return log_sweep(root, params, sweep_name, specs, candidates, checkouts, artifacts)


@tracking_task("registry-verdict")
def promote_best(root: Path, tree: Path, params: Params, run_id: str) -> dict:
    """The registry's rule on the best candidate, inside its checked-out experiment, with the
    project's tracking store (not one beside the worktree)."""
    import os

    from slimline.records.registry import decide_and_promote
    from slimline.records.tracking import tracking_uri

    uri = tracking_uri(root)
    saved, os.environ["MLFLOW_TRACKING_URI"] = os.environ.get("MLFLOW_TRACKING_URI"), uri
    try:
        v = decide_and_promote(tree, params, run_id)
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return {"passed": v.passed, "summary": v.summary(), "version": v.version}


@flow(name="slimline-sweep", log_prints=True)
def sweep(
    project_dir: str = ".",
    specs: list[str] | None = None,
    candidate_timeout: float | None = 7200,
    stage_timeout: float | None = 3600,
) -> dict:
    """Every combination of `specs` as a DVC experiment, in parallel. Each spec is one
    `key=value` (the value YAML, as `slimline run -S` takes it); a key given more than once
    is an axis of the grid: ["prune.ratio=0.3", "prune.ratio=0.5", "seed=1"] is 2 candidates.
    """
    root = Path(project_dir).resolve()
    params = load_params(root / "params.yaml")  # the baseline, read once
    combos = grid(specs or [])
    for overrides in combos:  # every candidate's params are valid before anything runs
        load_params(root / "params.yaml", overrides)
    with workspace_lock(root, "flow slimline-sweep"):
        close_abandoned_runs(root, get_run_logger())
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        cands = [Candidate(f"sweep-{stamp}-{i}", o) for i, o in enumerate(combos, 1)]
        copies = copy_paths(root)
        futures = [
            run_candidate.submit(
                str(root), c.name, c.overrides, copies, candidate_timeout, stage_timeout
            )
            for c in cands
        ]
        for c, future in zip(cands, futures, strict=True):
            future.wait()
            state = future.state
            c.ok = state.is_completed()
            if c.ok:
                ran = state.result()
                c.seconds, c.worker = ran["seconds"], ran["worker"]
            c.error = "" if c.ok else str(state.result(raise_on_failure=False))
        read_experiments(root, cands)
        scratch = Path(tempfile.mkdtemp(prefix="slimline-sweep-"))
        try:
            return _judge(root, params, f"sweep-{stamp}", specs or [], cands, scratch)
        finally:
            remove_worktrees(root, [scratch / c.name for c in cands if (scratch / c.name).exists()])
            shutil.rmtree(scratch, ignore_errors=True)


def _judge(
    root: Path, params: Params, name: str, specs: list[str], cands: list[Candidate], scratch: Path
):
    from slimline.records.registry import beats, candidate_figures, read_gates

    checkouts = {}
    for c in (c for c in cands if c.ok):
        tree = worktree(root, c.rev, scratch / c.name)
        own = checkouts[c.name] = Checkout(tree, load_params(tree / "params.yaml"))
        gates = read_gates(tree, own.params)
        c.gates_passed = all(g.passed for g in gates)
        c.failing = [g.describe() for g in gates if not g.passed]
        c.figures = candidate_figures(tree, own.params)
    pareto_front(cands)
    best = None
    for c in (c for c in cands if c.ok and c.gates_passed):
        if best is None or beats(c.figures, best.figures, params.tracking.primary_metric):
            best = c
    reports = root / Path(params.paths.gates_report).parent
    plot_pareto(cands, best, reports / "pareto.png")
    table = [
        {
            k: getattr(c, k)
            for k in (
                "name",
                "overrides",
                "ok",
                "error",
                "rev",
                "worker",
                "figures",
                "gates_passed",
                "failing",
                "pareto",
            )
        }
        for c in cands
    ]
    write_json(
        reports / "sweep.json", {"sweep": name, "best": best and best.name, "candidates": table}
    )
    artifacts = [reports / "pareto.png", reports / "sweep.json"]
    ids = record_sweep(root, name, specs, params, cands, checkouts, artifacts)
    verdict: dict[str, Any] = {
        "passed": False,
        "summary": "no candidate passed every gate",
        "version": None,
    }
    if best is not None:
        with_data = worktree(root, best.rev, scratch / "best", with_data=True)
        best_params = checkouts[best.name].params
        verdict = promote_best(root, with_data, best_params, ids[best.name])
        verdict |= {"candidate": best.name}
        remove_worktrees(root, [with_data])
    create_markdown_artifact(
        _markdown(name, cands, best, verdict), key="slimline-sweep", description=verdict["summary"]
    )
    return {
        "sweep": name,
        "candidates": table,
        "best": best and best.name,
        "verdict": verdict,
        "run_id": ids["sweep"],
    }


def _markdown(name: str, cands: list[Candidate], best: Candidate | None, verdict: dict) -> str:
    rows = [
        "| candidate | overrides | accuracy | latency (ms) | size (B) | gates | front |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in cands:
        f = c.figures
        rows.append(
            f"| {c.name} | {c.label()} | {f.get('accuracy', '-')} | "
            f"{f.get('latency_ms', '-')} | {f.get('size_bytes', '-')} | "
            f"{'passed' if c.gates_passed else 'failed' if c.ok else c.error[:80]} | "
            f"{'yes' if c.pareto else ''} |"
        )
    head = f"# {name}\n\n**Best:** {best.name if best else 'none'}; {verdict['summary']}\n\n"
    return head + "\n".join(rows)
