"""Determinism (issue 8, item 23): `dvc repro -f --no-run-cache` reruns every stage in a
workspace that holds a complete run, and gives byte-identical metrics, curves, checkpoints and
models.

The first run is the shared one (pipeline_once), copied here; the forced second run must
reproduce it byte for byte. Timings (reports/benchmark.*, plots/tradeoff.png) are the only
outputs allowed to differ.
"""

from __future__ import annotations

import pytest
import yaml

from tests.support.outputs import STAGES, outputs
from tests.support.project import dvc_repro

TIMINGS = {"reports/benchmark.json", "reports/benchmark.md", "plots/tradeoff.png"}
DETERMINISTIC = [
    "metrics/teacher.json", "metrics/student.json", "metrics/pruned.json",
    "metrics/quantize.json", "metrics/export.json", "reports/gates.json",
    "reports/data_validation.json", "plots/teacher_curve.csv", "plots/student_curve.csv",
    "plots/pruned_curve.csv", "plots/confusion.png", "models/teacher.pt", "models/student.pt",
    "models/pruned.pt", "models/onnx/teacher.onnx", "models/onnx/student.onnx",
    "models/onnx/pruned.onnx", "models/onnx/pruned_int8.onnx", "dist/model.onnx",
    "dist/settings.json", "dist/model_card.md", "data/prepared/train.npz",
    "data/prepared/val.npz", "data/prepared/test.npz",
]  # fmt: skip


@pytest.mark.slow
def test_forced_rerun_reproduces_every_output_byte_for_byte(project):
    first = outputs(project)
    assert set(DETERMINISTIC) <= first.keys()
    result = dvc_repro(project, "-f", "--no-run-cache")
    assert result.returncode == 0, result.stderr
    assert [s for s in STAGES if f"Running stage '{s}'" not in result.stdout] == []
    second = outputs(project)
    assert second.keys() == first.keys()  # nothing new, no temp file left
    changed = sorted(name for name in first if first[name] != second[name])
    assert [name for name in changed if name not in TIMINGS | {"dvc.lock"}] == []
    # dvc.lock: the same deps, params and output hashes, but for the benchmark's timings
    locks = [yaml.safe_load(files["dvc.lock"])["stages"] for files in (first, second)]
    assert [s for s in STAGES if s != "benchmark" and locks[0][s] != locks[1][s]] == []
