"""Helpers for the flow tests: `slimline` as a user runs it, in a committed temp project."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from tests.support.processes import git, run, tool_env

SLIMLINE = str(Path(sys.executable).with_name("slimline"))
# a developer's own Prefect or MLflow server must not receive the tests' runs
FOREIGN = ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_URI")


def env(**extra: str) -> dict[str, str]:
    """`tool_env` without the developer's own servers, and wide enough for the summary table."""
    base = {k: v for k, v in tool_env().items() if k not in FOREIGN}
    return base | {"COLUMNS": "160"} | extra


def slimline(
    project: Path, *args: str, timeout: float = 600, **extra: str
) -> subprocess.CompletedProcess[str]:
    """`slimline ARGS` in `project` to its end, as a user runs it (`extra`: more environment)."""
    return run([SLIMLINE, *args], project, env=env(**extra), timeout=timeout)


def commit(project: Path) -> None:
    """`dvc exp run` needs a commit to base experiments on."""
    git(project, "add", "-A")
    git(project, "commit", "-qm", "test project")


def copy_project(src: Path, dest: Path) -> Path:
    """A private copy (git, DVC cache, outputs) with a fresh MLflow store: the original's
    experiment points at its own artifact folder by absolute path."""
    ignore = shutil.ignore_patterns("mlflow.db", "mlflow.db.*", "mlartifacts", ".slimline")
    return Path(shutil.copytree(src, dest, symlinks=True, ignore=ignore))


def mlflow_client(project: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{project}/mlflow.db"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def runs(project: Path, experiment: str = "slimline"):
    """Every run of the project's experiment, newest first."""
    client = mlflow_client(project)
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])


def of_project(root: Path) -> list[psutil.Process]:
    """Live processes that belong to the run in `root`: started there or naming it."""
    found = []
    for p in psutil.process_iter(["cmdline", "cwd", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        text = " ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or "")
        if str(root) in text:
            found.append(p)
    return found


def open_fds(procs: list[psutil.Process]) -> int:
    """File descriptors open in `procs`, together (those gone meanwhile count none)."""
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.num_fds()
    return total
