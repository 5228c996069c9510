"""The commands that run the pipeline or say what it would do: run, check, schedule, sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slimline.cli.app import app, finished
from slimline.cli.options import (
    STAGE_TIMEOUT,
    GridOpt,
    JsonOpt,
    ParamsOpt,
    ProjectOpt,
    SetOpt,
    StageTimeoutOpt,
    UpdateOpt,
    VerboseOpt,
    cancel_on_sigterm,
    emit,
    example,
    fail,
    locate,
    stdout_for,
)
from slimline.core.errors import InputError

CANDIDATE_TIMEOUT = 7200.0


@app.command(epilog=example("slimline run --params configs/small.yaml -S prune.ratio=0.5"))
def run(
    params: ParamsOpt = None,
    overrides: SetOpt = None,
    project: ProjectOpt = Path(),
    stage_timeout: StageTimeoutOpt = STAGE_TIMEOUT,
    update_imports: UpdateOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run the pipeline flow (DVC stages, MLflow, registry verdict) on the project's params.

    --params and -S are written into <project>/params.yaml first, as `dvc exp run -S` does,
    so that dvc.lock, `dvc params diff` and git see what ran.
    """
    from slimline.core.params.loading import write_params
    from slimline.orchestration.checks import validated
    from slimline.orchestration.commands import run_pipeline
    from slimline.orchestration.overrides import single
    from slimline.orchestration.runlock import workspace_lock

    root, params_file = locate(project, params)
    cancel_on_sigterm()
    try:
        # bad params, a student too big, an unusable teacher: exit 2 before anything starts
        sets = single(overrides)
        valid = validated(params_file, sets, root)
        # one run per workspace: a second one stops here, before touching params.yaml
        with workspace_lock(root, "slimline run"):
            target = root / "params.yaml"
            if sets or params_file.resolve() != target.resolve():
                write_params(target, params_file, sets)
                typer.echo(f"params.yaml now holds {params_file} with {sets or 'no overrides'}")
            code = run_pipeline(root, valid, stage_timeout, update_imports, verbose)
    except InputError as e:
        fail(str(e), 2)
    except KeyboardInterrupt:  # before or after the stages: nothing half done to record
        fail("run cancelled; no stage was left running and the last good outputs are kept", 130)
    finished(code)


@app.command(epilog=example("slimline check -S prune.ratio=0.5 --json"))
def check(
    params: ParamsOpt = None,
    overrides: SetOpt = None,
    project: ProjectOpt = Path(),
    as_json: JsonOpt = False,
) -> None:
    """Say what `slimline run` would do, in seconds, without training or writing anything.

    Validates the params (with --params and -S as `run` takes them), runs the same preflight,
    prints the teacher's and the student's parameter counts and the stages DVC would rerun.
    Exit 2 on bad params, naming the field; 0 otherwise.
    """
    from slimline.orchestration.checks import render, report

    root, params_file = locate(project, params)
    try:
        with stdout_for(as_json):
            doc = report(root, params_file, overrides)
    except InputError as e:
        fail(str(e), 2)
    except RuntimeError as e:  # DVC busy or broken: the project may be fine
        fail(str(e), 1)
    if as_json:
        emit(doc)
    else:
        typer.echo(render(doc))


@app.command(epilog=example("slimline schedule --cron '0 3 * * *' --stage-timeout 1800"))
def schedule(
    cron: Annotated[str, typer.Option("--cron", help="Cron expression, e.g. '0 3 * * *'.")],
    name: Annotated[str, typer.Option("--name", help="Deployment name.")] = "scheduled-retraining",
    project: ProjectOpt = Path(),
    stage_timeout: StageTimeoutOpt = STAGE_TIMEOUT,
    update_imports: UpdateOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the pipeline flow as a cron deployment on PREFECT_API_URL's server (Ctrl+C stops).

    Each run reads <project>/params.yaml as it is then.
    """
    from slimline.orchestration.commands import serve_schedule

    root, _ = locate(project, None)
    try:
        serve_schedule(root, cron, name, stage_timeout, update_imports, verbose)
    except InputError as e:
        fail(str(e), 2)


@app.command(
    epilog=example(
        "slimline sweep -S prune.ratio=0.3 -S prune.ratio=0.5 -S quantize.mode=static "
        "-S quantize.mode=dynamic  (4 candidates)"
    )
)
def sweep(
    grid: GridOpt,
    project: ProjectOpt = Path(),
    dask_address: Annotated[
        str | None, typer.Option("--dask-address", help="An existing Dask scheduler.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Local Dask workers.")] = 2,
    stage_timeout: StageTimeoutOpt = STAGE_TIMEOUT,
    candidate_timeout: Annotated[
        float,
        typer.Option(
            "--candidate-timeout",
            metavar="SECONDS",
            min=0,
            help="Seconds one candidate (its whole `dvc exp run`, setup included) may run "
            "before it is killed (0: no limit).",
        ),
    ] = CANDIDATE_TIMEOUT,
    verbose: VerboseOpt = False,
) -> None:
    """Run every combination as a DVC experiment in parallel; promote the best that passes.

    Candidates start from <project>/params.yaml. Plots the accuracy / latency / size Pareto
    front to reports/pareto.png.
    """
    from slimline.orchestration.checks import candidates
    from slimline.orchestration.commands import run_sweep
    from slimline.orchestration.runlock import workspace_lock

    root, _ = locate(project, None)
    try:
        candidates(root, grid)  # every candidate valid before anything runs
        with workspace_lock(root, "slimline sweep"):
            code = run_sweep(
                root, grid, workers, dask_address, candidate_timeout, stage_timeout, verbose
            )
    except InputError as e:
        fail(str(e), 2)
    finished(code)
