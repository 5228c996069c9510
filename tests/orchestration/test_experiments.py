"""A sweep's candidates as DVC experiments: the `dvc exp run` command (the grid itself:
test_overrides)."""

from __future__ import annotations

import json
import sys

import pytest

from slimline.orchestration import dvc_run
from slimline.orchestration.experiments import exp_argv
from tests.support.processes import check, git, run


def test_exp_argv_is_a_named_temp_experiment_with_every_override_and_copy():
    argv = exp_argv("sweep-1", ["prune.ratio=0.3", "distill.temperature=2"], ["metrics"])
    assert argv[-11:] == [
        "exp",
        "run",
        "--temp",
        "-n",
        "sweep-1",
        "-S",
        "++prune.ratio=0.3",
        "-S",
        "++distill.temperature=2",
        "-C",
        "metrics",
    ]


def test_a_list_value_reaches_dvc_as_one_hydra_list_and_a_comma_string_stays_one_value():
    argv = exp_argv("sweep-2", ["student.hidden=[64, 32]", "data.target=a,b"], [])
    assert argv[-4:] == ["-S", "++student.hidden=[64,32]", "-S", "++data.target='a,b'"]


@pytest.mark.slow  # a real `dvc exp run` (git stash, a temp workspace, a commit): ~10 s
def test_a_candidate_with_a_list_and_a_comma_string_runs_as_one_dvc_experiment(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site"))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    root = tmp_path / "project"
    root.mkdir()
    (root / "params.yaml").write_text("seed: 1\nstudent:\n  arch: cnn\n")
    (root / "dvc.yaml").write_text(
        "stages:\n  s:\n    cmd: cat params.yaml > out.txt\n    params: [seed, student]\n"
        "    outs: [out.txt]\n"
    )
    git(root, "init", "-q")
    check(run([sys.executable, "-m", "dvc", "init", "-q"], root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "project")
    overrides = ["student.hidden=[64, 32]", "student.note=a,b", "seed=2"]
    done = dvc_run.run(exp_argv("cand-1", overrides, []), root, timeout=300)
    assert done.returncode == 0, done.tail()
    shown = run(dvc_run.dvc_argv("exp", "show", "--json"), root)
    revs = [
        rev
        for base in json.loads(shown.stdout)
        for exp in base.get("experiments") or []
        for rev in exp["revs"]
    ]
    assert [r["name"] for r in revs] == ["cand-1"]
    assert revs[0]["data"]["params"]["params.yaml"]["data"] == {
        "seed": 2,
        "student": {"arch": "cnn", "hidden": [64, 32], "note": "a,b"},
    }
