"""The options every command spells the same way, and how they resolve.

- `--project DIR`: the project (dvc.yaml, params.yaml, mlflow.db); default the current directory.
- `--params FILE`: read params from FILE instead of `<project>/params.yaml` (a relative FILE is
  relative to the current directory, like any path typed on a command line).
- `-S/--set key=value`: one param, the value parsed as YAML (orchestration.overrides).
- `--stage-timeout SECONDS`: how long one DVC stage may run before it is killed.
- `--json`: one JSON document on stdout, nothing else there (logs go to stderr).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project",
        help="The project directory (dvc.yaml, params.yaml, mlflow.db).",
        show_default="the current directory",
        exists=True,
        file_okay=False,
    ),
]
ParamsOpt = Annotated[
    Path | None,
    typer.Option(
        "--params",
        metavar="FILE",
        help="Read params from FILE instead of <project>/params.yaml.",
        show_default=False,
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "-S",
        "--set",
        metavar="KEY=VALUE",
        help="Set one param; the value is YAML (0.5, cnn, \\[64,32]). Repeatable, once per key.",
    ),
]
GridOpt = Annotated[
    list[str],
    typer.Option(
        "-S",
        "--set",
        metavar="KEY=VALUE",
        help="Set one param, as in `run`; a key given more than once is an axis of the grid "
        "(every combination is one candidate).",
    ),
]
StageTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--stage-timeout",
        metavar="SECONDS",
        min=0,
        help="Seconds one DVC stage may run before its processes are killed (0: no limit).",
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout (logs stay on stderr)."),
]
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Also show the libraries' INFO logs (Dask, Prefect, MLflow)."
    ),
]
UpdateOpt = Annotated[
    bool,
    typer.Option(
        "--update-imports",
        help="First `dvc update` every import (dvc import-url data), so new data at its "
        "source retrains what depends on it.",
    ),
]
STAGE_TIMEOUT = 3600.0


def example(*lines: str) -> str:
    """A command's epilog: its examples, shown at the end of `slimline COMMAND --help`."""
    return "Example: " + "  |  ".join(lines)


def locate(project: Path, params: Path | None) -> tuple[Path, Path]:
    """(project root, params file): `--params` when given, else `<project>/params.yaml`."""
    root = project.resolve()
    return root, (params if params is not None else root / "params.yaml")


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def stdout_for(as_json: bool) -> Iterator[None]:
    """With `--json`, whatever a library prints while the command works goes to stderr, so
    that stdout holds the one JSON document alone."""
    if not as_json:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def emit(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=str))


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
