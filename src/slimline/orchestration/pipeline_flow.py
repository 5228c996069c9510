"""The Prefect pipeline flow: each DVC stage a task, then MLflow, the registry and an artifact.

DVC owns the graph and the cache: the stage order is read from dvc.yaml and every stage runs as
`dvc repro -s <stage>`, so DVC alone decides what really runs. Stages are deterministic and
are never retried; the MLflow and registry steps are retried with back-off, but only for
tracking errors (a network or a locked database can fail for passing reasons).

Imported only by the commands and flows that run it (it imports Prefect at once);
`flows/pipeline.py` is the entry point `prefect deploy` points at.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Cancelled, Failed, State

from slimline.compression.release.preflight import check_before_run
from slimline.core.params.loading import load_params
from slimline.core.params.schema import Params
from slimline.orchestration import dvc_run
from slimline.orchestration.abandoned import close_abandoned_runs
from slimline.orchestration.runlock import workspace_lock

FLOW_NAME = "slimline-pipeline"
RETRY_DELAYS: list[float] = [
    2,
    10,
]  # seconds; on top of the tracking module's own bounded HTTP retries


class StageFailed(RuntimeError):
    """A DVC stage failed or timed out; `exit_code` is 2 when the stage said bad input."""

    def __init__(self, message: str, stage: str, exit_code: int):
        super().__init__(message, stage, exit_code)
        self.stage, self.exit_code = stage, exit_code

    def __str__(self) -> str:
        return self.args[0]


class Cancellation(StageFailed):
    """The run was cancelled (SIGINT, SIGTERM, a cancel from Prefect's API or UI) during
    `stage`, whose processes were killed; the flow ends Cancelled, MLflow's run KILLED."""

    EXIT_CODE = 130  # 128 + SIGINT, as shells report an interrupted command

    def __init__(self, stage: str, signal: BaseException):
        why = "interrupted" if isinstance(signal, KeyboardInterrupt) else "terminated"
        super().__init__(
            f"run cancelled ({why}) during stage {stage}; its processes were stopped and the "
            "last good outputs kept",
            stage,
            self.EXIT_CODE,
        )


def transient(task, task_run, state) -> bool:
    """Retry only what may pass by itself: MLflow unreachable or its store busy."""
    from slimline.records.tracking import TrackingError

    return isinstance(state.result(raise_on_failure=False), TrackingError)


def tracking_task(name: str):
    """A task of the MLflow and registry steps: retried with back-off, only when `transient`
    says so."""
    return task(
        name=name,
        retries=2,
        retry_delay_seconds=RETRY_DELAYS,
        retry_condition_fn=transient,
        cache_policy=NO_CACHE,
    )


@task(name="dvc-stage", task_run_name="{stage}", cache_policy=NO_CACHE)
def dvc_stage(root: Path, stage: str, timeout: float | None, unchanged: bool) -> dict:
    """`dvc repro -s <stage>`, its output streamed into the run's log; "ran" or "cached"."""
    log = get_run_logger()
    if unchanged:  # `dvc status` said so and no upstream stage ran in this flow
        log.info(f"Stage '{stage}' didn't change (dvc status), skipping")
        return {"name": stage, "status": "cached", "seconds": 0.0}
    done = dvc_run.run(
        dvc_run.dvc_argv("repro", "-s", stage), root, timeout=timeout,
        on_line=dvc_run.log_lines(log),
    )  # fmt: skip
    if done.timed_out:
        raise StageFailed(
            f"stage {stage} ran past its timeout of {timeout:g} s; its processes were killed",
            stage,
            1,
        )
    if done.exit_code:
        raise StageFailed(
            f"stage {stage} failed (exit {done.exit_code}): {done.stage_error()}",
            stage,
            done.exit_code,
        )
    return {
        "name": stage,
        "status": dvc_run.stage_status(done.lines, stage),
        "seconds": round(done.seconds, 3),
    }


@task(name="dvc-update", cache_policy=NO_CACHE)
def update_data(root: Path, timeout: float | None) -> list[str]:
    """`dvc update` of every import (`dvc import-url` data where a team keeps it): what changed
    at its source is downloaded and its `.dvc` file rewritten, so DVC reruns what depends on
    it. Returns the outputs that changed."""
    log = get_run_logger()
    files = dvc_run.import_files(root)
    if not files:
        log.info("no imports to update (dvc import-url)")
        return []
    done = dvc_run.run(
        dvc_run.dvc_argv("update", *files), root, timeout=timeout, on_line=dvc_run.log_lines(log)
    )
    if done.timed_out or done.exit_code:
        raise StageFailed(
            f"dvc update of {', '.join(files)} failed: {done.tail(5)}", "dvc-update", 1
        )
    changed = dvc_run.updated_imports(done.lines)
    log.info(f"imports updated: {', '.join(changed) or 'none (no new data at the source)'}")
    return changed


@tracking_task("mlflow-record")
def record(root: Path, params: Params, stages: list[dict]) -> dict:
    """The MLflow parent run (params, lineage, bundle) with a child run per stage."""
    from slimline.records.tracking import log_pipeline_run

    rec = log_pipeline_run(root, params, stages)
    get_run_logger().info(f"MLflow run {rec.run_name} ({rec.run_id}) at {rec.tracking_uri}")
    return {"run_id": rec.run_id, "run_name": rec.run_name, "tracking_uri": rec.tracking_uri}


@tracking_task("registry-verdict")
def promote(root: Path, params: Params, run_id: str, all_cached: bool) -> dict:
    """The registry's rule; a no-op run reuses the verdict already given to the same model
    instead of registering it once more."""
    from slimline.records.registry import decide_and_promote
    from slimline.records.verdicts import reuse_verdict

    earlier = reuse_verdict(root, params, run_id) if all_cached else None
    if earlier is not None:
        get_run_logger().info(f"registry: {earlier['summary']}")
        return earlier
    v = decide_and_promote(root, params, run_id)
    get_run_logger().info(f"registry: {v.summary()}")
    return {
        "passed": v.passed,
        "summary": v.summary(),
        "version": v.version,
        "champion": v.champion,
    }


@flow(name=FLOW_NAME, log_prints=True)
def pipeline(
    project_dir: str = ".",
    params_file: str = "params.yaml",
    stage_timeout: float | None = 3600,
    update_imports: bool = False,
) -> dict | State:
    """Validate params, bring imported data up to date (`update_imports`: `dvc update`), run
    the DVC stages in order, record in MLflow, decide promotion."""
    root = Path(project_dir).resolve()
    # read once, validated before any stage runs; every step below gets this object
    params = load_params(root / params_file)
    check_before_run(params, root)  # scheduled runs too: bad sizes or teacher stop here (2)
    with workspace_lock(root, f"flow {FLOW_NAME}"):
        close_abandoned_runs(root, get_run_logger())
        if update_imports and update_data(root, stage_timeout):
            dvc_run.discard_prefetched("changed", root)  # asked before the new data came
        stages, failure = run_stages(root, stage_timeout)
        try:
            run = record(root, params, stages)
        except Exception:
            if failure is None:
                raise
            get_run_logger().exception("MLflow could not record the failed run")
            return failed(failure)
        if failure is not None:
            return failed(failure)  # a failed stage never reaches the registry
        verdict = promote(root, params, run["run_id"], all(s["status"] == "cached" for s in stages))
        outcome = {"stages": stages, "run": run, "verdict": verdict}
        from slimline.records.summary import markdown

        create_markdown_artifact(
            markdown(root, params, stages, verdict, run),
            key="slimline-pipeline",
            description=f"verdict: {verdict['summary']}",
        )
    return outcome


def failed(error: StageFailed) -> State:
    # the flow ends Failed with the stage's error as its result: the CLI reads its exit code;
    # a cancellation ends it Cancelled
    if isinstance(error, Cancellation):
        return Cancelled(message=str(error))
    return Failed(message=str(error), data=error)


def run_stages(root: Path, timeout: float | None) -> tuple[list[dict], StageFailed | None]:
    """Every stage in DVC's order; stops at the first failure or cancellation (SIGINT, SIGTERM,
    a cancel from Prefect) and returns it with the stages so far. The stage's process group is
    down by then: the DVC runner kills it on the way out."""
    from prefect.exceptions import TerminationSignal

    # one `dvc status` spares a dvc process per unchanged stage
    changed = dvc_run.prefetched("changed", root, dvc_run.changed_stages)
    stages: list[dict] = []
    for name in dvc_run.prefetched("order", root, dvc_run.stage_order):
        unchanged = changed is not None and name not in changed
        started = time.time()  # wall clock: MLflow shows each stage's run when it really ran
        try:
            state = dvc_stage(root, name, timeout, unchanged, return_state=True)
        except (KeyboardInterrupt, TerminationSignal) as e:
            seconds = round(time.time() - started, 3)
            stages.append(
                {"name": name, "status": "cancelled", "seconds": seconds, "started": started}
            )
            return stages, Cancellation(name, e)
        if not state.is_completed():
            seconds = round(time.time() - started, 3)
            stages.append(
                {"name": name, "status": "failed", "seconds": seconds, "started": started}
            )
            error = state.result(raise_on_failure=False)
            if not isinstance(error, StageFailed):  # a bug or a crash, not the stage's verdict
                error = StageFailed(f"stage {name}: {error!r}", name, 1)
            return stages, error
        stages.append(state.result() | {"started": started})
        if not unchanged:
            # what DVC ran or restored may change what is downstream: ask it stage by stage
            changed = None
    return stages, None
