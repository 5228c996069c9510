"""DVC reruns exactly what changed: an edit to any module makes `dvc status` report exactly the
stages whose import closure holds it, and no other (proof over every file of the package)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.imports import STAGES, stage_code
from tests.support.project import run

pytestmark = pytest.mark.slow


def changed_stages(project: Path) -> set[str]:
    result = run([sys.executable, "-m", "dvc", "status", "--json"], project)
    assert result.returncode == 0, result.stdout + result.stderr
    return set(json.loads(result.stdout))


def test_an_edit_to_each_module_reruns_exactly_the_stages_that_import_it(pipeline_once, tmp_path):
    project = Path(shutil.copytree(pipeline_once, tmp_path / "project", symlinks=True))
    assert changed_stages(project) == set()
    code = {stage: stage_code(stage) for stage in STAGES}
    files = sorted(
        str(p.relative_to(project))
        for folder in ("src", "stages")
        for p in (project / folder).rglob("*.py")
    )
    assert len(files) > 40  # the whole package, not a sample
    wrong = {}
    for rel in files:
        path = project / rel
        original = path.read_bytes()
        path.write_bytes(original + b"\n# an edit\n")
        try:
            got = changed_stages(project)
        finally:
            path.write_bytes(original)
        expected = {stage for stage, files in code.items() if rel in files}
        if got != expected:
            wrong[rel] = {"expected": sorted(expected), "dvc status": sorted(got)}
    assert not wrong
    assert changed_stages(project) == set()  # every edit undone: nothing left to rerun
