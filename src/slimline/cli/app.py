"""The `slimline` group: `--version`, and `main`, the console script."""

from __future__ import annotations

import os
import sys
from typing import Annotated, NoReturn

import typer

from slimline import __version__
from slimline.core.env import quiet_telemetry

app = typer.Typer(
    help="Reproducible model compression: teacher -> distill -> prune -> INT8 -> ONNX, "
    "gated, tracked and registered.",
    epilog="Exit codes: 0 done, 1 a stage or a service failed, 2 bad input or configuration. "
    "`slimline COMMAND --help` shows an example; docs/cli.md has the whole grammar.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit(0)


@app.callback()
def _group(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Keeps `slimline <command>` a group even while one command is defined."""


_finished = False


def finished(code: int) -> NoReturn:
    """End `run` or `sweep`, whose work is all written once their flow returned: `main` then
    leaves without the interpreter's teardown of Prefect, MLflow and DVC (~1.1 s of a no-op
    run). Not for `schedule`: a stopping `serve` pauses its deployments in a background thread
    that the normal exit waits for."""
    global _finished
    _finished = True
    raise typer.Exit(code)


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
