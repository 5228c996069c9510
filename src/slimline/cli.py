"""The `slimline` command. Heavy libraries are imported inside commands: `--help` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from slimline.env import quiet_telemetry
from slimline.errors import InputError

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


def fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def run(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Run the pipeline on params.yaml (with --params/-S written into it, as `dvc exp run -S`)."""
    from slimline.params import load_params, write_params

    try:
        load_params(params, overrides or [])
        target = Path("params.yaml")
        if overrides or params.resolve() != target.resolve():
            write_params(target, params, overrides or [])
            typer.echo(f"params.yaml now holds {params} with {overrides or 'no overrides'}")
    except InputError as e:
        fail(str(e), 2)
    raise typer.Exit(_dvc_repro())


def _dvc_repro() -> int:
    """dvc repro; a stage that exited 2 (bad input) keeps its 2, any other failure is 1."""
    import re
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], stderr=subprocess.PIPE, text=True, check=False
    )
    sys.stderr.write(proc.stderr)
    if proc.returncode == 0:
        return 0
    return 2 if re.search(r"exited with 2\b", proc.stderr) else 1


def main() -> None:
    quiet_telemetry()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
