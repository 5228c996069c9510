"""What `slimline run`, `schedule` and `sweep` do around the Prefect flows: Prefect's settings,
the flow call, the exit code of the contract, and the summary at the end.

Prefect reads its settings once, when it is imported: `prefect_environment` runs first.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from slimline.core.env import quiet_telemetry
from slimline.core.errors import InputError
from slimline.core.params.schema import Params
from slimline.core.units import format_kb
from slimline.orchestration import dvc_run
from slimline.orchestration.logs import library_levels

# the ephemeral server's default 20 s was exceeded on a loaded 2-core machine (STACK.md)
STARTUP_TIMEOUT = "120"


def prefect_environment(root: Path) -> bool:
    """Ephemeral mode with its state in `<project>/.prefect/`, unless the user chose a home or
    a server (PREFECT_HOME / PREFECT_API_URL): then their profile and server are used.
    True when the choice was ours (and the temporary server is slimline's to start)."""
    quiet_telemetry()
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", STARTUP_TIMEOUT)
    if os.environ.get("PREFECT_API_URL") or os.environ.get("PREFECT_HOME"):
        return False
    os.environ["PREFECT_HOME"] = str(Path(root).resolve() / ".prefect")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")
    return True


@contextlib.contextmanager
def prefect_session(root: Path, warm: Callable[[], None]) -> Iterator[None]:
    """Prefect's settings for one command. In the default mode its temporary server starts
    now, in its own process, while this one calls `warm` to load what the flow will need (no
    wait at all when that takes as long as the boot); the server stops with the block."""
    if not prefect_environment(root):
        warm()
        yield
        return
    from slimline.orchestration.prefect_server import temporary_server, wait_ready

    with temporary_server(Path(os.environ["PREFECT_HOME"])) as server:
        os.environ["PREFECT_API_URL"] = server.url
        try:
            warm()
            wait_ready(
                server, float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])
            )
            yield
        finally:
            drain_prefect()
            os.environ.pop("PREFECT_API_URL", None)


def drain_prefect() -> None:
    """Send Prefect's queued logs and events now: before a temporary server stops (after it,
    the client would retry them for a minute at exit), and before the CLI leaves without the
    interpreter's exit hooks. Best effort, as Prefect's own hooks: the outcome is decided."""
    if "prefect.logging.handlers" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    # what APILogHandler.flush does outside an event loop (it is an instance method: called
    # on the class, as this did before mypy saw it, it raised and sent nothing)
    with contextlib.suppress(Exception):
        APILogWorker.drain_all(timeout=5)
    with contextlib.suppress(Exception):
        EventsWorker.drain_all(timeout=5)


# what the pipeline flow's steps import
PIPELINE_IMPORTS = (
    "slimline.orchestration.pipeline_flow",
    "dvc.repo",
    "networkx",
    "mlflow",
    "slimline.records.registry",
    "slimline.records.verdicts",
    "slimline.records.summary",
)


def preload(*modules: str) -> None:
    for name in modules:
        importlib.import_module(name)


def warm_pipeline(root: Path) -> None:
    """Ask DVC (its `dvc status` process runs beside the imports), import what the steps
    need, and MLflow's store module for the project's URI (SQLite's alone is ~0.9 s)."""
    from slimline.records.tracking import preload_store

    dvc_run.prefetch(root)
    preload(*PIPELINE_IMPORTS)
    preload_store(root)


def run_pipeline(
    root: Path,
    params: Params,
    stage_timeout: float | None,
    update_imports: bool = False,
    verbose: bool = False,
) -> int:
    """Run the pipeline flow on `root`, whose params.yaml holds `params` (validated by the
    caller); 0 ran, 2 bad input (a stage exited 2), 1 failed."""
    library_levels(verbose)

    def warm() -> None:
        warm_pipeline(root)
        library_levels(verbose)  # again: importing them set their own levels

    try:
        with prefect_session(root, warm):
            from slimline.orchestration.pipeline_flow import pipeline

            state = pipeline(
                project_dir=str(root),
                stage_timeout=stage_timeout,
                update_imports=update_imports,
                return_state=True,
            )
            if not state.is_completed():
                return report_failure(state)
            outcome = state.result()
            assert isinstance(outcome, dict)  # only a failed run ends with a state
    except Exception as e:  # Prefect could not start or reach its server
        print(f"error: the pipeline flow could not run: {e}", file=sys.stderr)
        return 1
    from slimline.records.summary import print_summary

    print_summary(root, params, outcome)
    return 0


def report_failure(state) -> int:
    """One message on stderr and the contract's exit code for a failed flow run."""
    from slimline.orchestration.pipeline_flow import Cancellation, StageFailed

    if state.is_cancelled():
        print(f"error: {state.message}", file=sys.stderr)
        return Cancellation.EXIT_CODE
    error = state.result(raise_on_failure=False)
    if not isinstance(error, BaseException):
        print(f"error: the flow ended {state.type.value}: {state.message}", file=sys.stderr)
        return 1
    print(f"error: {error}", file=sys.stderr)
    if isinstance(error, StageFailed):
        return error.exit_code
    return 2 if isinstance(error, InputError) else 1


def serve_schedule(
    root: Path,
    cron: str,
    name: str,
    stage_timeout: float | None,
    update_imports: bool = False,
    verbose: bool = False,
) -> None:
    """Serve a cron deployment of the pipeline flow until interrupted (needs a Prefect server:
    an ephemeral one runs no scheduler, so no run would ever be created)."""
    quiet_telemetry()
    if not os.environ.get("PREFECT_API_URL"):
        raise InputError(
            "PREFECT_API_URL: the URL of a Prefect server, e.g. http://127.0.0.1:4200/api "
            "(start one with `prefect server start`); a schedule needs its scheduler"
        )
    prefect_environment(root)
    check_cron(cron)
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from slimline.orchestration.pipeline_flow import FLOW_NAME, pipeline

    library_levels(verbose)

    # serve() returns on SIGTERM or Ctrl+C and pauses the deployment: no runner, no runs
    try:
        pipeline.serve(
            name=name,
            schedules=[Cron(cron, timezone="UTC")],
            parameters={
                "project_dir": str(root),
                "stage_timeout": stage_timeout,
                "update_imports": update_imports,
            },
            description="Scheduled retraining: DVC reruns what changed (new data retrains).",
            tags=["slimline", "retraining"],
            # the module, not a file path relative to wherever `schedule` was started
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
    finally:
        pause_deployment(f"{FLOW_NAME}/{name}")


def pause_deployment(full_name: str) -> None:
    """Make sure a stopped `serve` left its deployment paused. Prefect's SIGTERM handler raises
    SystemExit while its pause is under way, which can cancel the pause half way (seen in CI:
    'Pausing all deployments...' logged, never finished, when a run had just ended)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(full_name)
            if not deployment.paused:
                client.pause_deployment(deployment.id)
    except ObjectNotFound:  # serve stopped before it registered the deployment
        return
    except Exception as e:  # the server is gone: say so instead of hiding why serve stopped
        print(f"warning: could not check that {full_name} is paused: {e}", file=sys.stderr)


def check_cron(cron: str) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError:
        raise InputError(f"--cron: a cron expression such as '0 3 * * *' (got {cron!r})") from None


def run_sweep(
    root: Path,
    specs: list[str],
    workers: int,
    address: str | None,
    candidate_timeout: float | None,
    stage_timeout: float | None,
    verbose: bool = False,
) -> int:
    """The sweep flow on a Dask task runner: 0 every candidate ran, 1 one failed, 2 bad input.
    `specs` are `key=value` overrides; a key given more than once is an axis of the grid."""
    library_levels(verbose)

    def warm() -> None:
        preload("slimline.orchestration.sweep_flow", "prefect_dask", "mlflow")
        library_levels(verbose)  # again: importing them set their own levels

    try:
        with prefect_session(root, warm):
            from slimline.orchestration.sweep_flow import sweep

            state = sweep.with_options(task_runner=dask_runner(root, workers, address))(
                project_dir=str(root),
                specs=specs,
                candidate_timeout=candidate_timeout,
                stage_timeout=stage_timeout,
                return_state=True,
            )
            if not state.is_completed():
                return report_failure(state)
            outcome = state.result()
    except Exception as e:
        print(f"error: the sweep flow could not run: {e}", file=sys.stderr)
        return 1
    print_sweep(outcome)
    failed = [c["name"] for c in outcome["candidates"] if not c["ok"]]
    if failed:
        print(f"error: candidate(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def dask_runner(root: Path, workers: int, address: str | None):
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    # threads, not processes: each candidate is its own `dvc exp run` process anyway, and a
    # worker process would boot its own ephemeral Prefect server (STACK.md). Dask's HTTP
    # servers bind every interface even with dashboard_address=None: loopback, any port.
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": False,
            "dashboard_address": "127.0.0.1:0",
            "worker_dashboard_address": "127.0.0.1:0",
            "local_directory": str(Path(root).resolve() / ".slimline" / "dask"),
        }
    )


def print_sweep(outcome: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from slimline.core.tables import key_column

    table = Table(title=f"{outcome['sweep']}: candidates (dvc exp show lists them)")
    candidates = outcome["candidates"]
    key_column(table, "candidate", (c["name"] for c in candidates))
    key_column(table, "overrides", (" ".join(c["overrides"]) for c in candidates), words=True)
    for column in ("accuracy", "latency b1 p50", "size", "gates", "Pareto"):
        table.add_column(column)
    for c in candidates:
        f = c["figures"]
        table.add_row(
            c["name"],
            " ".join(c["overrides"]),
            f"{f['accuracy']:.4f}" if "accuracy" in f else "-",
            f"{f['latency_ms']:.4f} ms" if "latency_ms" in f else "-",
            format_kb(f["size_bytes"]) if "size_bytes" in f else "-",
            "passed" if c["gates_passed"] else ("failed" if c["ok"] else "did not run"),
            "yes" if c["pareto"] else "",
        )
    console = Console()
    console.print(table)
    console.print(
        f"best: {outcome['best'] or 'none'}; registry: {outcome['verdict']['summary']}",
        markup=False,
    )
    console.print("look: reports/sweep.json, reports/pareto.png, dvc exp show, slimline ui")
