"""One trained pipeline run for every reliability test; each test gets its own copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.project import dvc_repro, make_project
from tests.reliability.pipeline import TRAINED


@pytest.fixture(scope="session")
def pipeline_once(tmp_path_factory) -> Path:
    """A project after a complete, successful `dvc repro`: the last good outputs."""
    project = make_project(tmp_path_factory.mktemp("reliability") / "project", **TRAINED)
    result = dvc_repro(project)
    assert result.returncode == 0, result.stdout + result.stderr
    return project


@pytest.fixture
def project(pipeline_once, tmp_path) -> Path:
    """A private copy of the good project (git, DVC cache and lock included)."""
    return Path(shutil.copytree(pipeline_once, tmp_path / "project", symlinks=True))
