"""The git state of the project, for lineage (ONNX metadata, model card, MLflow tags)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def commit(root: Path) -> str:
    """HEAD's sha, or "unknown" outside a git checkout (a copied or unpacked project)."""
    return _git(root, "rev-parse", "HEAD") or "unknown"


# what decides a model: the code the stages run and the params they read (not docs, not
# dvc.lock or the results committed after a run)
CODE = ("src", "stages", "params.yaml", "dvc.yaml")


def code_commit(root: Path) -> str:
    """The last commit that changed the code or params the stages run, with "+dirty" when
    those have uncommitted changes; "unknown" outside a git checkout. What dist/model.onnx
    records: unlike HEAD it stays the same when a run's results (dvc.lock, metrics) are
    committed after it, so a clean clone of that commit rebuilds the same bytes."""
    sha = _git(root, "log", "-1", "--format=%H", "--", *CODE)
    if not sha:
        return "unknown"
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no", "--", *CODE)
    return sha + ("+dirty" if dirty else "")


def is_dirty(root: Path) -> bool:
    """Uncommitted changes to tracked files (DVC outputs are git-ignored and do not count)."""
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return bool(status)
