"""DVC reruns exactly what changed: an edit to a module makes `dvc status` report exactly the
stages whose import closure holds it, and no other.

A sample of one module of each kind, each edited in a real finished workspace: that DVC acts on
the deps dvc.yaml declares. That the declared deps of every stage are exactly its import closure,
for every file of the package, is proven statically (tests/test_architecture.py::
test_dvc_deps_are_exactly_the_stage_import_closure): together they cover every module."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import outputs
from tests.support.imports import SRC, STAGES, module_name, project_imports, stage_code
from tests.support.paths import ROOT
from tests.support.processes import run

ORDER = {stage: i for i, stage in enumerate(outputs.STAGES)}  # dvc.yaml's order
KINDS: dict[str, Callable[[set[str]], bool]] = {
    "a stage script: its own stage": lambda stages: len(stages) == 1,
    "a module one stage runs": lambda stages: len(stages) == 1,
    "a module every stage runs": lambda stages: stages == set(STAGES),
    # a package's __init__ runs with any module under it: it is never imported by name
    "a package __init__ some stages run": lambda stages: 1 < len(stages) < len(STAGES),
    # DVC follows the declared deps, not the stage order: stages between them stay put
    "a module two stages run, not those between": lambda stages: (
        len(stages) == 2 and max(map(ORDER.get, stages)) - min(map(ORDER.get, stages)) > 1
    ),
    "a module only the `slimline` command runs: no stage": lambda stages: not stages,
}
SAMPLE = {
    "stages/prune.py": "a stage script: its own stage",
    "src/slimline/compression/training/pruning.py": "a module one stage runs",
    "src/slimline/core/atomic.py": "a module every stage runs",
    "src/slimline/compression/release/__init__.py": "a package __init__ some stages run",
    "src/slimline/compression/runtime/quantize.py": "a module two stages run, not those between",
    "src/slimline/compression/release/predict.py": (
        "a module only the `slimline` command runs: no stage"
    ),
}


def changed_stages(project: Path) -> set[str]:
    result = run([sys.executable, "-m", "dvc", "status", "--json"], project)
    assert result.returncode == 0, result.stdout + result.stderr
    return set(json.loads(result.stdout))


def runs_it(rel: str) -> set[str]:
    """The stages whose import closure holds `rel` (what dvc.yaml must declare)."""
    return {stage for stage in STAGES if rel in stage_code(stage)}


def cli_imports(rel: str) -> bool:
    """Whether a module of the `slimline` command (slimline.cli, or a module under it)
    imports the module at `rel`."""
    wanted = module_name(ROOT / rel)
    cli = (f for f in (SRC / "slimline").rglob("*.py") if module_name(f).split(".")[1:2] == ["cli"])
    return any(wanted in project_imports(f) for f in cli)


def test_the_sample_holds_one_module_of_each_kind():
    # the code moves on: a sample module that changed kind must be replaced, not kept
    stages = {rel: runs_it(rel) for rel in SAMPLE}
    wrong = {
        rel: sorted(stages[rel]) for rel, kind in SAMPLE.items() if not KINDS[kind](stages[rel])
    }
    assert not wrong, f"no longer of its kind (the stages that run it): {wrong}"
    assert set(SAMPLE.values()) == set(KINDS)
    assert cli_imports("src/slimline/compression/release/predict.py")


@pytest.mark.slow
def test_an_edit_to_a_module_reruns_exactly_the_stages_that_import_it(pipeline_once, tmp_path):
    project = Path(shutil.copytree(pipeline_once, tmp_path / "project", symlinks=True))
    assert changed_stages(project) == set()
    wrong = {}
    for rel, kind in SAMPLE.items():
        path = project / rel
        original = path.read_bytes()
        path.write_bytes(original + b"\n# an edit\n")
        try:
            got = changed_stages(project)
        finally:
            path.write_bytes(original)
        if got != runs_it(rel):
            wrong[rel] = {"kind": kind, "expected": sorted(runs_it(rel)), "dvc status": sorted(got)}
    assert not wrong
    assert changed_stages(project) == set()  # every edit undone: nothing left to rerun
