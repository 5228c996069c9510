"""The `slimline` command. Heavy libraries are imported inside commands: `--help` stays fast."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from slimline.core.env import quiet_telemetry
from slimline.core.errors import InputError
from slimline.core.units import format_kb

app = typer.Typer(
    help="Reproducible model compression: teacher -> distill -> prune -> INT8 -> ONNX, "
    "gated, tracked and registered.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOpt = Annotated[Path, typer.Option("--params", help="Params file to run with.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("-S", "--set", help="Override a param, e.g. -S prune.ratio=0.3 (repeatable)."),
]


@app.callback()
def _group() -> None:
    """Keeps `slimline <command>` a group even while one command is defined."""


def cancel_on_sigterm() -> None:
    """SIGTERM (a scheduler's stop, `docker stop`, `kill`) cancels a run as Ctrl+C does: the
    running stage's processes are stopped, the run is recorded as cancelled, exit 130. A second
    signal during that cleanup is ignored; SIGKILL is left to the guards (orchestration/guard)."""

    def cancel(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, cancel)
    signal.signal(signal.SIGINT, cancel)


def fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Also show the libraries' INFO logs (Dask, Prefect, MLflow)."
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--stage-timeout", help="Seconds a stage may run before it is killed."),
]
UpdateOpt = Annotated[
    bool,
    typer.Option(
        "--update-imports",
        help="First `dvc update` every import (dvc import-url data), so new data at its "
        "source retrains what depends on it.",
    ),
]


_finished = False


def finished(code: int) -> NoReturn:
    """End `run` or `sweep`, whose work is all written once their flow returned: `main` then
    leaves without the interpreter's teardown of Prefect, MLflow and DVC (~1.1 s of a no-op
    run). Not for `schedule`: a stopping `serve` pauses its deployments in a background thread
    that the normal exit waits for."""
    global _finished
    _finished = True
    raise typer.Exit(code)


@app.command()
def run(
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    stage_timeout: TimeoutOpt = 3600.0,
    update_imports: UpdateOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run the pipeline flow (DVC stages, MLflow, registry verdict) on params.yaml.

    --params and -S are written into params.yaml first, as `dvc exp run -S` does.
    """
    from slimline.compression.release.preflight import check_before_run
    from slimline.core.params.loading import load_params, write_params
    from slimline.orchestration.commands import run_pipeline
    from slimline.orchestration.runlock import workspace_lock

    root = Path.cwd()
    cancel_on_sigterm()
    try:
        validated = load_params(params, overrides or [])
        check_before_run(validated, root)  # a student too big, an unusable teacher: exit 2
        # one run per workspace: a second one stops here, before touching params.yaml
        with workspace_lock(root, "slimline run"):
            target = Path("params.yaml")
            if overrides or params.resolve() != target.resolve():
                write_params(target, params, overrides or [])
                typer.echo(f"params.yaml now holds {params} with {overrides or 'no overrides'}")
            code = run_pipeline(root, validated, stage_timeout, update_imports, verbose)
    except InputError as e:
        fail(str(e), 2)
    except KeyboardInterrupt:  # before or after the stages: nothing half done to record
        fail("run cancelled; no stage was left running and the last good outputs are kept", 130)
    finished(code)


@app.command()
def schedule(
    cron: Annotated[str, typer.Option("--cron", help="Cron expression, e.g. '0 3 * * *'.")],
    name: Annotated[str, typer.Option("--name", help="Deployment name.")] = "scheduled-retraining",
    stage_timeout: TimeoutOpt = 3600.0,
    update_imports: UpdateOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the pipeline flow as a cron deployment on PREFECT_API_URL's server (Ctrl+C stops)."""
    from slimline.orchestration.commands import serve_schedule

    try:
        serve_schedule(Path.cwd(), cron, name, stage_timeout, update_imports, verbose)
    except InputError as e:
        fail(str(e), 2)


@app.command()
def sweep(
    grid: Annotated[
        list[str],
        typer.Option("-S", "--set", help="A param and its values: -S prune.ratio=0.3,0.5,0.7"),
    ],
    dask_address: Annotated[
        str | None, typer.Option("--dask-address", help="An existing Dask scheduler.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Local Dask workers.")] = 2,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds a candidate may run before it is killed.")
    ] = 7200.0,
    verbose: VerboseOpt = False,
) -> None:
    """Run every combination as a DVC experiment in parallel; promote the best that passes.

    Plots the accuracy / latency / size Pareto front to reports/pareto.png.
    """
    from slimline.compression.release.preflight import check_before_run
    from slimline.core.params.loading import load_params
    from slimline.orchestration.commands import run_sweep
    from slimline.orchestration.experiments import grid as combinations
    from slimline.orchestration.runlock import workspace_lock

    root = Path.cwd()
    try:
        for overrides in combinations(grid):  # every candidate valid before anything runs
            check_before_run(load_params(root / "params.yaml", overrides), root)
        with workspace_lock(root, "slimline sweep"):
            code = run_sweep(root, grid, workers, dask_address, timeout, verbose)
    except InputError as e:
        fail(str(e), 2)
    finished(code)


def _project(params_file: Path):
    """(Params, project root): the root is the folder of the params file, as for `run`."""
    from slimline.core.params.loading import load_params

    try:
        return load_params(params_file), params_file.resolve().parent
    except InputError as e:
        fail(str(e), 2)


def _registry(call):
    """Run a registry call: bad input exits 2, an unreachable MLflow exits 1."""
    from slimline.records.tracking import TrackingError

    try:
        return call()
    except InputError as e:
        fail(str(e), 2)
    except TrackingError as e:
        fail(str(e), 1)


@app.command()
def models(params: ParamsOpt = Path("params.yaml")) -> None:
    """List the registered model's versions with their aliases and figures."""
    from rich.console import Console
    from rich.table import Table

    from slimline.core.tables import key_column
    from slimline.records.aliases import list_versions

    p, root = _project(params)
    table = Table(title=f"registered model {p.tracking.model_name}")
    versions = _registry(lambda: list_versions(root, p))
    key_column(table, "version", (v.version for v in versions))
    key_column(table, "aliases", (", ".join(v.aliases) for v in versions), words=True)
    for column in ("accuracy", "size", "latency", "commit", "created (UTC)"):
        table.add_column(column)
    for v in versions:
        table.add_row(
            v.version,
            ", ".join(v.aliases),
            "-" if v.accuracy is None else f"{v.accuracy:.4f}",
            "-" if v.size_bytes is None else format_kb(v.size_bytes),
            "-" if v.latency_ms is None else f"{v.latency_ms:.3f} ms",
            v.commit[:7],
            v.created.strftime("%Y-%m-%d %H:%M"),
        )
    Console().print(table)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registered version, as `slimline models` lists.")],
    alias: Annotated[str, typer.Option("--alias", help="Alias to move.")] = "champion",
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Point an alias (champion by default) at a version whose gates all passed."""
    from slimline.records.aliases import promote as move

    p, root = _project(params)
    _registry(lambda: move(root, p, version, alias))
    typer.echo(f"{p.tracking.model_name}@{alias} -> version {version}")


@app.command()
def rollback(params: ParamsOpt = Path("params.yaml")) -> None:
    """Give champion back to the version that held it before."""
    from slimline.records.aliases import rollback as restore

    p, root = _project(params)
    version = _registry(lambda: restore(root, p))
    typer.echo(f"{p.tracking.model_name}@champion -> version {version}")


@app.command()
def ui(port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 5000) -> None:
    """Open the MLflow UI over the project's tracking store (Ctrl+C stops it)."""
    import subprocess

    from slimline.records.tracking import tracking_uri, ui_command

    argv = ui_command(Path.cwd(), port)
    if argv is None:
        typer.echo(f"MLflow at {tracking_uri(Path.cwd())} serves its own UI: open it there")
        return
    typer.echo(f"MLflow UI on http://127.0.0.1:{port} (Ctrl+C stops it)")
    # the job runner adds ~10 processes and 1.2 GB that a local UI never uses
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    raise typer.Exit(subprocess.call(argv, env=env))


@app.command()
def predict(
    model: Annotated[
        Path, typer.Argument(help="An ONNX model made by slimline (dist/model.onnx).")
    ],
    file: Annotated[
        Path,
        typer.Argument(
            help="An image (.png/.jpg), an .npz with x (and y; a prepared split is taken as it "
            "is), or a CSV/Parquet table with the model's feature columns (and its target)."
        ),
    ],
    limit: Annotated[int, typer.Option(help="Rows to print for an .npz or a table.")] = 20,
) -> None:
    """Classify an image, an npz or a table with the deployable model (onnxruntime, numpy)."""
    from slimline.compression.release.predict import predict as classify

    try:
        result = classify(model, file)
    except InputError as e:
        fail(str(e), 2)
    if result.warning:
        typer.echo(f"warning: {result.warning}", err=True)
    rows = zip(result.names[:limit], result.confidence[:limit], strict=True)
    for i, (name, confidence) in enumerate(rows):
        typer.echo(f"{i}\t{name}\t{confidence:.4f}")
    if len(result.names) > limit:
        typer.echo(f"... {len(result.names) - limit} more")
    if result.accuracy is not None and result.labels is not None:
        typer.echo(f"accuracy {result.accuracy:.4f} on {len(result.labels)} labelled samples")


def main() -> None:
    quiet_telemetry()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit as e:
        if not _finished:
            raise
        # Everything is written and Prefect's queued logs are sent now, as its exit hooks would;
        # what the interpreter would still do is free every module's objects one by one.
        from slimline.orchestration.commands import drain_prefect

        drain_prefect()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(e.code if isinstance(e.code, int) else 1)


if __name__ == "__main__":
    main()
