"""Bad params (issue 8, items 11-13) through `dvc repro` on a project with good outputs.

The first stage whose params changed loads params.yaml, finds every problem at once and exits 2
with one message (one line per problem, the field, what was expected, what it got); DVC fails
and the last good outputs are byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.support.outputs import outputs, set_params
from tests.support.project import dvc_repro

# every case reruns the pipeline over a copy of the session's trained run
pytestmark = pytest.mark.slow


def refused(project: Path, first_stage: str) -> list[str]:
    """Run `dvc repro`; return the problem lines of the one params message."""
    before = outputs(project)
    result = dvc_repro(project)
    assert result.returncode != 0
    assert f"failed to reproduce '{first_stage}'" in result.stderr, result.stderr
    assert "exited with 2" in result.stderr and "Traceback" not in result.stderr
    assert outputs(project) == before
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    # one message (DVC runs the stage from the project root, hence the relative name)
    assert errors == ["error: params.yaml: invalid params"], result.stderr
    lines = result.stderr.splitlines()
    start = lines.index(errors[0]) + 1
    return [line.strip() for line in lines[start:] if line.startswith("  ")]


def test_typos_are_named_with_the_closest_valid_key(project):
    path = project / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["distill"]["temprature"] = raw["distill"].pop("temperature")
    raw["prune"]["ratoi"] = raw["prune"].pop("ratio")
    raw["qunatize"] = raw.pop("quantize")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    # distill is the first stage that reads a misspelt section
    assert sorted(refused(project, "distill")) == [
        "distill.temprature: unknown key; did you mean 'temperature'?",
        "prune.ratoi: unknown key; did you mean 'ratio'?",
        "qunatize: unknown key; did you mean 'quantize'?",
    ]


def test_out_of_range_values_are_all_reported_in_one_message(project):
    set_params(
        project,
        teacher={"lr": -0.1},
        distill={"temperature": 0, "alpha": 1.5},
        prune={"ratio": 1.0},
    )
    assert refused(project, "train_teacher") == [
        "teacher.lr: greater than 0 (got -0.1)",
        "distill.temperature: greater than 0 (got 0)",
        "distill.alpha: less than or equal to 1 (got 1.5)",
        "prune.ratio: less than 1 (got 1.0)",
    ]


def test_an_architecture_that_cannot_take_the_data_is_reported_with_the_rest(project):
    x = np.random.default_rng(0).normal(size=(90, 5)).astype(np.float32)  # tabular (N, F)
    np.savez(project / "data/raw/table.npz", x=x, y=np.arange(90) % 3)
    set_params(
        project,
        data={"source": "npz", "path": "data/raw/table.npz"},
        student={"arch": "cnn", "lr": 0},
    )
    assert refused(project, "prepare") == [
        "student.lr: greater than 0 (got 0)",
        "teacher.arch: mlp for tabular (N, F) data in data/raw/table.npz (got 'resnet')",
        "student.arch: mlp for tabular (N, F) data in data/raw/table.npz (got 'cnn')",
    ]
