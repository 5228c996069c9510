"""The commands around the registered model and the deployable one: models, promote,
rollback, ui, predict."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from slimline.cli.app import app
from slimline.cli.options import (
    JsonOpt,
    ParamsOpt,
    ProjectOpt,
    emit,
    example,
    fail,
    locate,
    stdout_for,
)
from slimline.core.errors import InputError
from slimline.core.units import format_kb

T = TypeVar("T")


def _project(project: Path, params: Path | None):
    """(Params, project root): the params from --params, else <project>/params.yaml."""
    from slimline.core.params.loading import load_params

    root, params_file = locate(project, params)
    try:
        return load_params(params_file, base=root), root
    except InputError as e:
        fail(str(e), 2)


def _registry(call: Callable[[], T]) -> T:
    """Run a registry call: bad input exits 2, an unreachable MLflow exits 1."""
    from slimline.records.tracking import TrackingError

    try:
        return call()
    except InputError as e:
        fail(str(e), 2)
    except TrackingError as e:
        fail(str(e), 1)


@app.command(epilog=example("slimline models --json"))
def models(
    params: ParamsOpt = None, project: ProjectOpt = Path(), as_json: JsonOpt = False
) -> None:
    """List the registered model's versions with their aliases and figures."""
    from slimline.records.aliases import list_versions
    from slimline.records.tracking import tracking_uri

    p, root = _project(project, params)
    with stdout_for(as_json):
        versions = _registry(lambda: list_versions(root, p))
    if as_json:
        emit(
            {
                "model": p.tracking.model_name,
                "tracking_uri": tracking_uri(root),
                "versions": [
                    {
                        "version": v.version,
                        "aliases": list(v.aliases),
                        "accuracy": v.accuracy,
                        "size_bytes": v.size_bytes,
                        "latency_ms": v.latency_ms,
                        "commit": v.commit,
                        "created": v.created.isoformat(),
                        "gates": v.gates,
                    }
                    for v in versions
                ],
            }
        )
        return
    from rich.console import Console
    from rich.table import Table

    from slimline.core.tables import key_column

    table = Table(title=f"registered model {p.tracking.model_name}")
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


@app.command(epilog=example("slimline promote 3 --alias challenger"))
def promote(
    version: Annotated[str, typer.Argument(help="Registered version, as `slimline models` lists.")],
    alias: Annotated[str, typer.Option("--alias", help="Alias to move.")] = "champion",
    params: ParamsOpt = None,
    project: ProjectOpt = Path(),
) -> None:
    """Point an alias (champion by default) at a version whose gates all passed."""
    from slimline.records.aliases import promote as move

    p, root = _project(project, params)
    _registry(lambda: move(root, p, version, alias))
    typer.echo(f"{p.tracking.model_name}@{alias} -> version {version}")


@app.command(epilog=example("slimline rollback"))
def rollback(params: ParamsOpt = None, project: ProjectOpt = Path()) -> None:
    """Give champion back to the version that held it before."""
    from slimline.records.aliases import rollback as restore

    p, root = _project(project, params)
    version = _registry(lambda: restore(root, p))
    typer.echo(f"{p.tracking.model_name}@champion -> version {version}")


@app.command(epilog=example("slimline ui --port 5001"))
def ui(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 5000,
    project: ProjectOpt = Path(),
) -> None:
    """Open the MLflow UI over the project's tracking store (Ctrl+C stops it)."""
    import subprocess

    from slimline.records.tracking import tracking_uri, ui_command

    root, _ = locate(project, None)
    argv = ui_command(root, port)
    if argv is None:
        typer.echo(f"MLflow at {tracking_uri(root)} serves its own UI: open it there")
        return
    typer.echo(f"MLflow UI on http://127.0.0.1:{port} (Ctrl+C stops it)")
    # the job runner adds ~10 processes and 1.2 GB that a local UI never uses
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    raise typer.Exit(subprocess.call(argv, env=env))


@app.command(epilog=example("slimline predict dist/model.onnx data/prepared/test.npz --json"))
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
    limit: Annotated[
        int | None,
        typer.Option(
            min=0, help="Rows to print [default: 20; with --json every row]", show_default=False
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Classify an image, an npz or a table with the deployable model (onnxruntime, numpy)."""
    from slimline.compression.release.predict import predict as classify

    try:
        with stdout_for(as_json):
            result = classify(model, file)
    except InputError as e:
        fail(str(e), 2)
    if result.warning:
        typer.echo(f"warning: {result.warning}", err=True)
    shown = len(result.names) if limit is None and as_json else 20 if limit is None else limit
    if as_json:
        emit(_predictions(model, file, result, shown))
        return
    rows = zip(result.names[:shown], result.confidence[:shown], strict=True)
    for i, (name, confidence) in enumerate(rows):
        typer.echo(f"{i}\t{name}\t{confidence:.4f}")
    if len(result.names) > shown:
        typer.echo(f"... {len(result.names) - shown} more")
    if result.accuracy is not None and result.labels is not None:
        typer.echo(f"accuracy {result.accuracy:.4f} on {len(result.labels)} labelled samples")


def _predictions(model: Path, file: Path, result: Any, shown: int) -> dict[str, Any]:
    return {
        "model": str(model),
        "input": str(file),
        "count": len(result.names),
        "predictions": [
            {"index": i, "class": int(c), "label": name, "confidence": float(p)}
            for i, (c, name, p) in enumerate(
                zip(
                    result.classes[:shown],
                    result.names[:shown],
                    result.confidence[:shown],
                    strict=True,
                )
            )
        ],
        "labelled": None if result.labels is None else len(result.labels),
        "accuracy": result.accuracy,
        "warning": result.warning,
    }
