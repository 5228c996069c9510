"""A throwaway copy of the project, with tiny params, for end-to-end runs of the real pipeline."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.params import write_params
from tests.support.paths import ROOT
from tests.support.processes import git, run

# Small enough that the whole chain runs in well under a minute, big enough to exercise every
# code path (residual blocks, pruning steps, calibration, the fallback's sensitivity ranking).
TINY = {
    "teacher": {"arch": "resnet", "width": 8, "depth": 1, "epochs": 2, "batch_size": 128},
    "student": {"arch": "cnn", "width": 4, "depth": 2, "epochs": 2, "batch_size": 128},
    "prune": {"ratio": 0.5, "steps": 1, "finetune_epochs": 1, "round_to": 1},
    "quantize": {"calibration_samples": 32, "max_excluded_nodes": 2},
    "export": {"parity_samples": 16},
    "gates": {"min_accuracy": 0.0, "max_accuracy_drop": 1.0, "min_agreement": 0.0,
              "max_size_bytes": 10_000_000, "min_compression": 1.0, "min_speedup": 0.01},
    "benchmark": {"warmup": 2, "runs": 10, "throughput_runs": 2},
}  # fmt: skip
# Raised just enough over TINY that accuracy means something (a quantization collapse or a
# failed gate must be visible); the whole chain still runs in well under a minute.
TRAINED = {
    "teacher": TINY["teacher"] | {"epochs": 4, "batch_size": 64, "lr": 0.01},
    "student": TINY["student"] | {"width": 8, "epochs": 6, "batch_size": 64, "lr": 0.02},
    "prune": TINY["prune"] | {"finetune_epochs": 2, "lr": 0.01},
}
COPIED = ["dvc.yaml", "params.yaml", "stages", "src", "data/raw", "data/pretrained", ".dvc/config",
          ".dvcignore", ".gitignore", "flows", "prefect.yaml"]  # fmt: skip


def copy_pipeline(dest: Path, names: list[str] = COPIED) -> None:
    """Copy these files and folders of the repo (those that exist) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def make_project(dest: Path, **sections) -> Path:
    """Copy the project's pipeline files into a fresh git+DVC workspace at `dest`."""
    copy_pipeline(dest)
    write_params(dest / "params.yaml", **(TINY | sections))
    git(dest, "init", "-q")
    return dest


def dvc_repro(project: Path, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", "repro", *args], project)


def refused_run(project: Path) -> list[str]:
    """`slimline run` in `project`, which must exit 2 before touching any file; its `error:`
    lines."""

    def files() -> list[Path]:
        return sorted(p.relative_to(project) for p in project.rglob("*") if ".git" not in p.parts)

    before = files()
    result = run([sys.executable, "-m", "slimline.cli", "run"], project, timeout=300)
    assert result.returncode == 2, result.stderr
    assert files() == before  # nothing ran: no Prefect state, no stage output
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]
