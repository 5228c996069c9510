"""MLflow record of one pipeline run: a parent run, a nested child run per DVC stage, lineage.

The flow calls `log_pipeline_run` after the DVC stages ran. Tracking only reads what the stages
wrote, so an unreachable MLflow fails the run with `TrackingError` and leaves every output as
it was. mlflow is imported inside functions: importing slimline has no side effects.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slimline import __version__
from slimline.core import gitinfo
from slimline.core.cpu import cpu_info, describe
from slimline.core.http import Unhealthy, wait_healthy
from slimline.core.params.overrides import to_flat_dict
from slimline.core.params.schema import Params
from slimline.records.stage_outputs import data_sha256, dvc_lock_hashes, read_stage, stage_files

CLIENT_DEFAULTS = {
    # an unreachable server otherwise hangs ~4 min (7 retries, back-off 2): fail in seconds
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    # over HTTP each finished run prints two "View run ... at" lines: 18 lines per pipeline
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
WORKSPACE_TAG = "slimline.workspace"
ABANDONED_TAG = "slimline.abandoned"
ARTIFACTS_TAG = "slimline.artifacts_run"  # a cached stage's files are in this run
PROBE_SECONDS = 5.0  # GET /health once a second (2 s a try) for this long before giving up


class TrackingError(RuntimeError):
    """MLflow could not be reached or refused a write; the message names the tracking URI."""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    run_name: str
    experiment_id: str
    tracking_uri: str
    stage_runs: dict[str, str]  # stage -> child run id
    missing: dict[str, list[str]]  # stage -> outputs that were not there


def tracking_uri(root: Path) -> str:
    """`MLFLOW_TRACKING_URI`, else the project's SQLite file (absolute: four slashes)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve()}/mlflow.db"


def preload_store(root: Path) -> None:
    """Import the store MLflow will open for the project, ahead of time: SQLite's takes ~0.9 s
    (SQLAlchemy's models); an HTTP store needs nothing more."""
    if sqlite_path(tracking_uri(root)) is not None:
        import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def tracking_errors(uri: str) -> Iterator[None]:
    """Turn MLflow, HTTP and database failures into one `TrackingError` naming the URI."""
    import requests
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, requests.RequestException, sqlalchemy.exc.SQLAlchemyError) as e:
        raise TrackingError(f"MLflow at {uri}: {e}") from e


def connect(root: Path, params: Params) -> tuple[Any, str, str]:
    """(MlflowClient, experiment id, URI) for the project, after checking the store answers."""
    for key, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    uri = tracking_uri(root)
    if uri.startswith(("http://", "https://")):
        probe(uri)
    import mlflow

    # the registry logs the model through mlflow's fluent API, which reads these globals
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with tracking_errors(uri):  # an unknown URI scheme fails here already
        if (db := sqlite_path(uri)) is not None:
            create_store(uri, db)
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        return client, _experiment(client, params.tracking.experiment, uri), uri


def create_store(uri: str, db: Path) -> None:
    """Create and migrate a SQLite store once, under a lock beside it. MLflow creates its
    tables on first use; four runs doing that at once in one new file raced ("duplicate column
    name", "table ... already exists"): three of four failed, and a store left half-migrated
    failed every later run. A marker file written after the migration skips the lock later."""
    ready = db.with_name(db.name + ".ready")
    if ready.exists() and db.exists():
        return
    from filelock import FileLock
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(db.with_name(db.name + ".lock"), timeout=600):
        if not (ready.exists() and db.exists()):
            SqlAlchemyStore(uri, (db.parent / "mlartifacts").as_uri())  # tables + migrations
            RegistryStore(uri)
            ready.touch()


def probe(uri: str) -> None:
    """GET /health for a few seconds; a dead server fails in seconds, not minutes."""
    try:
        wait_healthy(f"{uri.rstrip('/')}/health", PROBE_SECONDS, interval=1.0)
    except Unhealthy as e:
        raise TrackingError(
            f"MLflow at {uri} is unreachable ({e.last}); is the server running?"
        ) from None


def ui_command(root: Path, port: int) -> list[str] | None:
    """`mlflow ui` on 127.0.0.1 over the project's store; None when MLflow is a server
    (it serves its own UI)."""
    import sys

    uri = tracking_uri(root)
    if uri.startswith(("http://", "https://")):
        return None
    db = sqlite_path(uri)
    artifacts = (db.parent if db else Path(root).resolve()) / "mlartifacts"
    flags = f"ui --host 127.0.0.1 --port {port} --workers 1".split()
    stores = ["--backend-store-uri", uri, "--default-artifact-root", artifacts.as_uri()]
    return [sys.executable, "-m", "mlflow", *flags, *stores]


def _experiment(client: Any, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    db = sqlite_path(uri)
    # with a SQLite store MLflow's default artifact root is ./mlruns of whatever the cwd is
    location = (db.parent / "mlartifacts").as_uri() if db else None
    for _ in range(2):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as e:  # another run created it first: read it back
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    raise TrackingError(f"MLflow at {uri}: cannot create or read experiment {name!r}")


def log_pipeline_run(root: Path, params: Params, stages: list[dict]) -> RunRecord:
    """One parent run with lineage, params and the bundle; a child run per stage dict
    `{"name", "status": "ran" | "cached" (| "failed"), "seconds"}`, plus `"started"` (epoch
    seconds) when known: the runs then span the time the stages really ran, not the second
    it takes to record them."""
    root = Path(root).resolve()
    client, experiment_id, uri = connect(root, params)
    commit = gitinfo.commit(root)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_name = f"slimline-{stamp}-{commit[:7]}"
    with tracking_errors(uri):
        close_abandoned(client, experiment_id, root)
        starts = [s["started"] for s in stages if "started" in s]
        tags = lineage_tags(root, params, stages, commit) | owner_tags(root)
        parent = client.create_run(
            experiment_id, run_name=run_name, tags=tags,
            start_time=_ms(min(starts)) if starts else None,
        )  # fmt: skip
        run_id = parent.info.run_id
        try:
            client.log_batch(run_id, **entities(params=to_flat_dict(params)))
            children, missing = {}, {}
            logged = earlier_artifacts(client, experiment_id, tags, stages)
            for stage in stages:
                children[stage["name"]], missing[stage["name"]] = _log_stage(
                    client, experiment_id, run_id, root, params, stage, logged.get(stage["name"])
                )
            _log_parent_outputs(client, run_id, root, params, missing)
        except BaseException:
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, "FAILED")
            raise
        outcome = next((s["status"] for s in stages if s["status"] in RUN_STATUS), "ran")
        client.set_terminated(run_id, RUN_STATUS.get(outcome, "FINISHED"))
    return RunRecord(run_id, run_name, experiment_id, uri, children, missing)


def owner_tags(root: Path) -> dict[str, str]:
    """Which workspace (host and folder) and process record a run: a run left RUNNING by a
    process that died is found by them and closed by the next run there."""
    return {WORKSPACE_TAG: workspace_id(root), "slimline.pid": str(os.getpid())}


def workspace_id(root: Path) -> str:
    return f"{socket.gethostname()}:{Path(root).resolve()}"


def close_abandoned(client: Any, experiment_id: str, root: Path) -> list[str]:
    """End as KILLED, with the reason as a tag, the runs of this workspace that are still
    RUNNING, and their child runs: their process died while recording them (SIGKILL, the OOM
    killer), since runs are recorded only under the workspace lock, which the caller holds.
    Returns the ids of the parent runs closed."""
    here = workspace_id(root)
    running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000)
    # the tag is compared here, not in the filter: a folder name may hold any quote
    abandoned = [r for r in running if r.data.tags.get(WORKSPACE_TAG) == here]
    for run in abandoned:
        pid = run.data.tags.get("slimline.pid", "?")
        reason = (
            f"process {pid} ended (killed) before it finished recording this run; closed by the "
            f"next run in {here}"
        )
        children = [r for r in running if r.data.tags.get("mlflow.parentRunId") == run.info.run_id]
        for r in [*children, run]:
            client.set_tag(r.info.run_id, ABANDONED_TAG, reason)
            client.set_terminated(r.info.run_id, "KILLED")
    return [r.info.run_id for r in abandoned]


def lineage_tags(root: Path, params: Params, stages: list[dict], commit: str) -> dict[str, str]:
    locks = dvc_lock_hashes(root)
    return {
        "mlflow.source.git.commit": commit,
        "slimline.git_commit": commit,
        "slimline.git_dirty": str(gitinfo.is_dirty(root)).lower(),
        "slimline.version": __version__,
        "slimline.params_sha256": params.digest(),
        # the CPU that ran (and timed, and scored) the stages, and the INT8 format's target
        "slimline.cpu": describe(cpu_info()),
        "slimline.int8_target": params.quantize.target,
        "slimline.data_sha256": data_sha256(root, params),
        "slimline.cached_stages": ",".join(s["name"] for s in stages if s["status"] == "cached"),
        "slimline.ran_stages": ",".join(s["name"] for s in stages if s["status"] == "ran"),
        **{f"slimline.{s['status']}_stage": s["name"] for s in stages if s["status"] in RUN_STATUS},
        **{f"slimline.dvc_lock.{s['name']}": locks.get(s["name"], "missing") for s in stages},
    }


def earlier_artifacts(
    client: Any, experiment_id: str, tags: dict[str, str], stages: list[dict]
) -> dict[str, str]:
    """For each cached stage, the run that already holds its files: the stage's child run of
    the latest finished pipeline run with the same dvc.lock entry (the same output hashes),
    or the run that child points to. A no-op run then logs its stages' figures, not another
    copy of every file (the teacher's ONNX alone is 4.4 MB at the default params)."""
    found: dict[str, str] = {}
    cached = [s["name"] for s in stages if s["status"] == "cached"]
    while todo := [s for s in cached if s not in found]:
        key = f"slimline.dvc_lock.{todo[0]}"
        same = client.search_runs(
            [experiment_id],
            f"tags.`{key}` = '{tags[key]}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not same:
            cached.remove(todo[0])
            continue
        parent = same[0]
        kids = client.search_runs(
            [experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )
        for stage in todo:  # one earlier run usually holds them all: a single lookup
            lock = f"slimline.dvc_lock.{stage}"
            kid = next((k for k in kids if k.data.tags.get("mlflow.runName") == stage), None)
            if kid is not None and parent.data.tags.get(lock) == tags[lock]:
                found[stage] = kid.data.tags.get(ARTIFACTS_TAG, kid.info.run_id)
        if todo[0] not in found:  # that run's child is gone: log the files once more
            cached.remove(todo[0])
    # a holder deleted since (a clean-up in the UI) takes its files with it: log them again
    alive = {h for h in set(found.values()) if _active(client, h)}
    return {stage: holder for stage, holder in found.items() if holder in alive}


def _active(client: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:  # deleted for good
        return False


def _log_stage(
    client, experiment_id, parent_id, root, params, stage, artifacts_in: str | None
) -> tuple[str, list[str]]:
    name = stage["name"]
    figures, missing = read_stage(root, params, name)
    tags = {"mlflow.parentRunId": parent_id, "slimline.stage.status": stage["status"]}
    if missing:
        tags["slimline.missing"] = ",".join(missing)
    if artifacts_in is not None:
        tags[ARTIFACTS_TAG] = artifacts_in
    started, seconds = stage.get("started"), float(stage.get("seconds", 0.0))
    run_id = client.create_run(
        experiment_id, run_name=name, tags=tags, start_time=_ms(started) if started else None
    ).info.run_id
    metrics = {**figures.metrics, "seconds": seconds}
    client.log_batch(
        run_id, **entities(params=figures.text, metrics=metrics, series=figures.series)
    )
    for rel in stage_files(params, name) if artifacts_in is None else []:
        if rel not in missing:
            client.log_artifact(run_id, str(root / rel), artifact_path=str(Path(rel).parent))
    status = RUN_STATUS.get(stage["status"], "FINISHED")
    client.set_terminated(run_id, status, end_time=_ms(started + seconds) if started else None)
    return run_id, missing


# parent-run tag (slimline.<tag>) -> the key of metrics/export.json it holds
VARIANT_TAGS = {"variant": "variant", "objective": "objective", "objective_reason": "reason"}
# a stage's status in the flow -> its MLflow run's status (ran and cached: FINISHED)
RUN_STATUS = {"failed": "FAILED", "cancelled": "KILLED"}


def _ms(epoch_seconds: float) -> int:
    return int(epoch_seconds * 1000)


def _log_parent_outputs(client, run_id, root, params, missing) -> None:
    """Summary figures, the shipped variant's tags, the missing-output tag, and reports/,
    plots/, dist/, dvc.lock."""
    figures, _ = read_stage(root, params, "benchmark")
    gates, _ = read_stage(root, params, "validate")
    export, _ = read_stage(root, params, "export")
    # the deployed model's figures on the parent, so runs compare in one table
    summary = {
        f"final.{k.removeprefix('final_int8.')}": v
        for k, v in figures.metrics.items()
        if k.startswith("final_int8.") or k == "speedup"
    }
    if "passed" in gates.metrics:
        summary["gates_passed"] = gates.metrics["passed"]
    gone = sorted(f for files in missing.values() for f in files)
    tags = {"slimline.missing_outputs": ",".join(gone)} if gone else {}
    # which model dist/ ships (pruned FP32 or quantized) and why: searchable on the parent run
    tags |= {f"slimline.{tag}": export.text[key] for tag, key in VARIANT_TAGS.items()
             if key in export.text}  # fmt: skip
    client.log_batch(run_id, **entities(metrics=summary, tags=tags))
    report_dir = Path(params.paths.gates_report).parent
    folders = {report_dir, Path(params.paths.tradeoff_plot).parent, Path(params.paths.dist)}
    for folder in sorted(folders):
        # top-level files only: reports/ui/ holds browser screenshots, not pipeline results
        for path in sorted((root / folder).glob("*")):
            if path.is_file() and not path.name.startswith("."):
                client.log_artifact(run_id, str(path), artifact_path=str(folder))
    for name in ("dvc.lock", "params.yaml"):
        if (root / name).exists():
            client.log_artifact(run_id, str(root / name))


def entities(*, params=None, metrics=None, tags=None, series=None) -> dict[str, list]:
    """`client.log_batch`'s keyword arguments from plain dicts (`series`: name -> [(step,
    value)]). MlflowClient.log_batch itself splits them into requests the server accepts;
    values longer than MLflow's limits are cut here, as MLflow would refuse them."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH

    now = int(time.time() * 1000)
    return {
        "params": [Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in (params or {}).items()],
        "tags": [RunTag(k, str(v)[:MAX_TAG_VAL_LENGTH]) for k, v in (tags or {}).items()],
        "metrics": [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
        + [Metric(k, v, now, step) for k, points in (series or {}).items() for step, v in points],
    }
