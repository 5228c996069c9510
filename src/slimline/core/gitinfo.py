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


def is_dirty(root: Path) -> bool:
    """Uncommitted changes to tracked files (DVC outputs are git-ignored and do not count)."""
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return bool(status)
