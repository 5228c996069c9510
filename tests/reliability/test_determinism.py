"""Determinism (issue 8, item 23): `dvc repro -f --no-run-cache` reruns every stage in a
workspace that holds a complete run, and gives byte-identical metrics, curves, checkpoints and
models.

The first run is the shared one (pipeline_once), copied here; the forced second run must
reproduce it byte for byte. Timings (reports/benchmark.*, plots/tradeoff.png) are the only
outputs allowed to differ.

Across machines (issue 25): the shared run's output hashes must equal the ones recorded in
recorded_hashes.json, whatever x86-64 CPU with AVX2 runs the suite, as a clean clone's `make run`
must reproduce the committed dvc.lock. The machines that build and test slimline differ
(AVX2-only and AVX-512 VNNI), so this is the check that each of them keeps making.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from slimline.core.cpu import cpu_info, describe
from slimline.core.kernels import pinnable
from tests.support.outputs import STAGES, lock_output_hashes, outputs
from tests.support.project import dvc_repro

RECORDED = Path(__file__).with_name("recorded_hashes.json")

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


@pytest.mark.slow
def test_the_shared_run_gives_the_recorded_hashes_on_this_cpu(pipeline_once):
    if not pinnable():  # an Arm machine, say: no pins apply, torch follows its CPU
        pytest.skip("the recorded hashes hold where the kernels are pinned: x86-64 with AVX2")
    recorded = json.loads(RECORDED.read_text())
    want, got = recorded["hashes"], lock_output_hashes(pipeline_once, ("benchmark",))
    differ = sorted(path for path in want.keys() | got.keys() if want.get(path) != got.get(path))
    # a change meant to move these outputs records them anew: the message prints the run's hashes
    assert not differ, (
        f"outputs that differ from {RECORDED.name} (recorded on {recorded['cpu']}) on "
        f"{describe(cpu_info())}: {differ}; this run's hashes: {json.dumps(got, indent=2)}"
    )
