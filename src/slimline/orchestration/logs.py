"""What `slimline run`, `sweep` and `schedule` print: slimline's lines, the stages' output,
warnings and errors. Library chatter (Dask's cluster and worker banners, Prefect's server and
client internals, MLflow's registry notes and database migrations) is logged below INFO unless
the user asks for it with `--verbose`.

Levels are set by name once the libraries are imported (each configures its own loggers on
import), and through the settings they read at import for what starts later (Dask's workers).
DVC's bookkeeping lines in a stage's output ("Updating lock file", "Use `dvc push`") and
MLflow's registry notes are kept for `--verbose` too (`core.env.VERBOSE_ENV`).
"""

from __future__ import annotations

import logging
import os

from slimline.core.env import VERBOSE_ENV

# loggers whose INFO lines say how a library works, not what the pipeline did
CHATTY = (
    "distributed",
    "dask",
    "tornado",
    "bokeh",
    "mlflow",
    "alembic",
    "httpx",
    "uvicorn",
    "prefect.server",
    "prefect.client",
    "prefect._internal",
    "prefect.events",
    "prefect.runner",
    "prefect.task_runner",
    "prefect_dask",
    "prefect.prefect_dask",
)


def library_levels(verbose: bool) -> None:
    """Library chatter at WARNING, or at INFO with `--verbose`. Call it before the libraries
    are imported and again after (either order is safe)."""
    level = logging.INFO if verbose else logging.WARNING
    name = logging.getLevelName(level).lower()
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)
    os.environ["DASK_LOGGING__DISTRIBUTED"] = name  # read when distributed is imported
    os.environ["MLFLOW_LOGGING_LEVEL"] = name.upper()  # read when mlflow is imported
    for logger in CHATTY:
        logging.getLogger(logger).setLevel(level)
