"""Each reliability test works on its own copy of the session's trained pipeline run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def project(pipeline_once, tmp_path) -> Path:
    """A private copy of the good project (git, DVC cache and lock included)."""
    return Path(shutil.copytree(pipeline_once, tmp_path / "project", symlinks=True))
