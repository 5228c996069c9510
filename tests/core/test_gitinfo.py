"""The commit a model records: the code's, not HEAD's, so committing results changes nothing."""

from __future__ import annotations

from pathlib import Path

from slimline.core import gitinfo
from tests.support.processes import git


def _git(root: Path, *args: str) -> str:
    return git(root, *args).strip()


def test_code_commit_ignores_results_and_marks_uncommitted_code(tmp_path):
    assert gitinfo.code_commit(tmp_path) == "unknown"  # not a checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text("x = 1\n")
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "code")
    code = _git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "dvc.lock").write_text("stages: {}\n")  # a run's results, committed after it
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "results")
    assert gitinfo.code_commit(tmp_path) == code != gitinfo.commit(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 2\n")
    assert gitinfo.code_commit(tmp_path) == f"{code}+dirty"
