"""What `slimline run`, `schedule` and `sweep` do around the Prefect flows: Prefect's settings,
the flow call, the exit code of the contract, and the summary at the end.

Prefect reads its settings once, when it is imported: `prefect_environment` runs first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from slimline.env import quiet_telemetry
from slimline.errors import InputError

# the ephemeral server's default 20 s was exceeded on a loaded 2-core machine (STACK.md)
STARTUP_TIMEOUT = "120"


def prefect_environment(root: Path) -> None:
    """Ephemeral mode with its state in `<project>/.prefect/`, unless the user chose a home or
    a server (PREFECT_HOME / PREFECT_API_URL): then their profile and server are used."""
    quiet_telemetry()
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        os.environ["PREFECT_HOME"] = str(Path(root).resolve() / ".prefect")
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", STARTUP_TIMEOUT)


def run_pipeline(root: Path, stage_timeout: float | None) -> int:
    """Run the pipeline flow on `root`; 0 ran, 2 bad input (a stage exited 2), 1 failed."""
    prefect_environment(root)
    from slimline.params import load_params
    from slimline.pipeline_flow import pipeline
    from slimline.summary import print_summary

    try:
        start_server_and_preload()
        state = pipeline(project_dir=str(root), stage_timeout=stage_timeout, return_state=True)
    except Exception as e:  # Prefect itself could not start (e.g. its server did not come up)
        print(f"error: the pipeline flow could not start: {e}", file=sys.stderr)
        return 1
    if state.is_completed():
        print_summary(root, load_params(root / "params.yaml"), state.result())
        return 0
    return report_failure(state)


def start_server_and_preload() -> None:
    """Boot Prefect's ephemeral server (~5-8 s, in its own process) and meanwhile import what
    the flow's steps need (mlflow, dvc: ~2.5 s), instead of one after the other. The flow's
    client finds the server running: it is the same per-process instance Prefect would start."""
    if os.environ.get("PREFECT_API_URL"):
        return
    from prefect.server.api.server import SubprocessASGIServer

    _preload()  # after Prefect's server import: two imports at once would share one GIL
    SubprocessASGIServer().start()


def _preload() -> None:
    import importlib
    import threading

    def load() -> None:
        for name in ("dvc.repo", "networkx", "mlflow", "slimline.registry", "slimline.verdicts"):
            try:
                importlib.import_module(name)
            except Exception:  # the step that needs it will raise it properly
                return

    threading.Thread(target=load, name="slimline-preload", daemon=True).start()


def report_failure(state) -> int:
    """One message on stderr and the contract's exit code for a failed flow run."""
    from slimline.pipeline_flow import StageFailed

    error = state.result(raise_on_failure=False)
    if not isinstance(error, BaseException):
        print(f"error: the flow ended {state.type.value}: {state.message}", file=sys.stderr)
        return 1
    print(f"error: {error}", file=sys.stderr)
    if isinstance(error, StageFailed):
        return error.exit_code
    return 2 if isinstance(error, InputError) else 1


def serve_schedule(root: Path, cron: str, name: str, stage_timeout: float | None) -> None:
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
    from prefect.schedules import Cron

    from slimline.pipeline_flow import pipeline

    # serve() returns on SIGTERM or Ctrl+C and pauses the deployment: no runner, no runs
    pipeline.serve(
        name=name,
        schedules=[Cron(cron, timezone="UTC")],
        parameters={"project_dir": str(root), "stage_timeout": stage_timeout},
        description="Scheduled retraining: DVC reruns what changed (new data retrains).",
        tags=["slimline", "retraining"],
    )


def check_cron(cron: str) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError:
        raise InputError(f"--cron: a cron expression such as '0 3 * * *' (got {cron!r})") from None


def run_sweep(
    root: Path, specs: list[str], workers: int, address: str | None, timeout: float | None
) -> int:
    """The sweep flow on a Dask task runner: 0 every candidate ran, 1 one failed, 2 bad input."""
    prefect_environment(root)
    from prefect_dask import DaskTaskRunner

    from slimline.sweep_flow import sweep

    if address:
        runner = DaskTaskRunner(address=address)
    else:
        # threads, not processes: each candidate is its own `dvc exp run` process anyway, and a
        # worker process would boot its own ephemeral Prefect server (STACK.md)
        # Dask's HTTP servers bind all interfaces even with dashboard_address=None: loopback
        runner = DaskTaskRunner(
            cluster_kwargs={
                "n_workers": workers,
                "threads_per_worker": 1,
                "processes": False,
                "dashboard_address": "127.0.0.1:0",
                "worker_dashboard_address": "127.0.0.1:0",
                "local_directory": str(Path(root).resolve() / ".slimline" / "dask"),
            }
        )
    try:
        state = sweep.with_options(task_runner=runner)(
            project_dir=str(root), specs=specs, timeout=timeout, return_state=True
        )
    except Exception as e:
        print(f"error: the sweep flow could not start: {e}", file=sys.stderr)
        return 1
    if not state.is_completed():
        return report_failure(state)
    outcome = state.result()
    print_sweep(outcome)
    failed = [c["name"] for c in outcome["candidates"] if not c["ok"]]
    if failed:
        print(f"error: candidate(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def print_sweep(outcome: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{outcome['sweep']}: candidates (dvc exp show lists them)")
    for column in (
        "candidate",
        "overrides",
        "accuracy",
        "latency b1 p50",
        "size",
        "gates",
        "Pareto",
    ):
        table.add_column(column)
    for c in outcome["candidates"]:
        f = c["figures"]
        table.add_row(
            c["name"],
            " ".join(c["overrides"]),
            f"{f['accuracy']:.4f}" if "accuracy" in f else "-",
            f"{f['latency_ms']:.4f} ms" if "latency_ms" in f else "-",
            f"{f['size_bytes'] / 1000:,.1f} KB" if "size_bytes" in f else "-",
            "passed" if c["gates_passed"] else ("failed" if c["ok"] else "did not run"),
            "yes" if c["pareto"] else "",
        )
    console = Console()
    console.print(table)
    console.print(
        f"best: {outcome['best'] or 'none'}; registry: {outcome['verdict']['summary']}",
        markup=False,
    )
