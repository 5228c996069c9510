"""The architecture as tests: imports run one way, stages stay free of tracking and
orchestration, and each DVC stage depends on exactly the code it runs."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.imports import SRC, STAGES, closure, module_name, stage_code, third_party
from tests.support.paths import ROOT
from tests.support.processes import run

# what `dvc repro` alone must be able to run with no side effects (DESIGN.md)
NOT_IN_STAGES = {"mlflow", "prefect", "prefect_dask", "dvc"}
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def declared_code(stage: str) -> set[str]:
    """The deps of `stage` in dvc.yaml that are code (not data or models)."""
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    return {d for d in deps if d.startswith(("stages/", "src/"))}


@pytest.mark.parametrize("stage", STAGES)
def test_the_committed_dvc_lock_records_the_code_as_it_is(stage):
    # a code change committed without rerunning the pipeline leaves dvc.lock describing other
    # code: `dvc repro` on a fresh clone with the cache would then rerun stages for nothing,
    # and the committed metrics would not be what this code makes
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"][stage]["deps"]
    stale = [
        d["path"] for d in lock
        if d["path"] in declared_code(stage)
        and hashlib.md5((ROOT / d["path"]).read_bytes()).hexdigest() != d["md5"]
    ]  # fmt: skip
    assert stale == [], f"rerun the pipeline (make run) and commit dvc.lock: {stale} changed"


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_deps_are_exactly_the_stage_import_closure(stage):
    wanted, declared = stage_code(stage), declared_code(stage)
    missing, extra = sorted(wanted - declared), sorted(declared - wanted)
    listing = "\n".join(
        f"      - {f}" for f in sorted(wanted, key=lambda f: (f != f"stages/{stage}.py", f))
    )
    assert not missing and not extra, (
        f"dvc.yaml stage {stage}: missing deps {missing}, stale deps {extra}; "
        f"its code deps should read:\n{listing}"
    )


def test_every_pipeline_stage_has_a_script_and_every_script_a_stage():
    assert sorted(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]) == STAGES


@pytest.mark.parametrize("stage", STAGES)
def test_stages_never_import_tracking_or_orchestration(stage):
    files = [ROOT / "stages" / f"{stage}.py", *closure(ROOT / "stages" / f"{stage}.py")]
    modules = [module_name(f).split(".") for f in files if f.is_relative_to(SRC)]
    layers = {parts[1] for parts in modules if len(parts) > 1}  # slimline/__init__ has none
    assert layers <= {"core", "compression"}, f"stages/{stage}.py runs {sorted(layers)}"
    used = {str(f.relative_to(ROOT)): third_party(f) & NOT_IN_STAGES for f in files}
    assert not {f: names for f, names in used.items() if names}


def _lint_imports(src: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH first: the installed (editable) package must not shadow the copy under test
    env = {**os.environ, "PYTHONPATH": str(src)}
    return run([LINT_IMPORTS, "--config", ROOT / "pyproject.toml", "--no-cache"], ROOT, env=env,
               timeout=300)  # fmt: skip


def test_import_contract_holds():
    result = _lint_imports(SRC)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # lazy, inside a function: runs as surely as a top-level import
        ("compression/data/sources.py", "    from slimline.records import tracking", "layers"),
        # a room importing one above it: the ONNX side never runs the training loop
        (
            "compression/runtime/onnx_io.py",
            "    from slimline.compression.training import fit",
            "rooms",
        ),
        ("compression/data/split.py", "    from slimline.compression import scores", "rooms"),
        ("records/summary.py", "    from slimline.orchestration import dvc_run", "layers"),
        ("core/atomic.py", "    import mlflow", "knows nothing of DVC, Prefect or MLflow"),
    ],
)
def test_import_contract_catches_a_wrong_way_import(tmp_path, module, line, contract):
    src = tmp_path / "src"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    path = src / "slimline" / module
    path.write_text(path.read_text() + f"\n\ndef _wrong_way():\n{line}\n")
    result = _lint_imports(src)
    assert result.returncode != 0
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(contract in ln for ln in broken), result.stdout
