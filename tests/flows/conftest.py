"""One cold `slimline run` (the Prefect flow over the real DVC pipeline, small trained params)
shared by the flow tests; a test that changes the project works on its own copy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from tests.support.cli import commit, slimline
from tests.support.project import TRAINED, make_project


@dataclass
class FlowRun:
    project: Path
    result: CompletedProcess
    seconds: float
    cache: Path  # its XDG_CACHE_HOME: the Prefect database template it kept


@pytest.fixture(scope="session")
def flow_project(tmp_path_factory) -> FlowRun:
    # TRAINED, not TINY: at TINY every model scores chance, and a sweep's "best by accuracy"
    # would be a tie decided by timing noise
    project = make_project(tmp_path_factory.mktemp("flows") / "project", **TRAINED)
    commit(project)
    cache = tmp_path_factory.mktemp("cache")
    start = time.monotonic()
    result = slimline(project, "run", XDG_CACHE_HOME=str(cache))
    return FlowRun(project, result, time.monotonic() - start, cache)
