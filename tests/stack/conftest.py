"""The team stack (tests/support/stack.py) for the package's tests, with its project: started
once, stopped at the end whatever happened."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.support.stack import new_stack, postgres_available
from tests.support.team_project import make_team_project


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    if not postgres_available():
        why = "PostgreSQL 15 is not installed (apt-get install -y postgresql)"
        if os.environ.get("CI"):  # .ci/run installs it: a missing one fails there
            pytest.fail(why)
        pytest.skip(why)
    project = tmp_path_factory.mktemp("stack") / "project"
    running = new_stack()
    started = time.monotonic()
    try:
        running.start_all(project, before_worker=lambda: make_team_project(running, project))
        print(f"stack started in {time.monotonic() - started:.1f} s")
        yield running, project
    finally:
        running.stop()
        shutil.rmtree(running.home, ignore_errors=True)
