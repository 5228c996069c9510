"""Gates and the registry (issue 8, items 17 and 18) on real pipeline outputs and a real MLflow
store: a model that fails a gate is never registered and moves no alias. (Item 19, racing
promotions, is proven by tests/records/test_registry.py::
test_two_racing_promotions_leave_exactly_one_champion_the_better: real processes on one SQLite
store, their calls shown to overlap and the lock shown to be contended.)

The store starts with the last good run registered as champion, so "no alias moved" is a
statement about a registry that has something to lose.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from slimline.compression.data.store import load_split
from slimline.compression.models.checkpoints import load_checkpoint
from slimline.compression.runtime.onnx_io import export_onnx
from slimline.core.params.loading import load_params
from slimline.records.registry import Verdict, decide_and_promote
from slimline.records.tracking import log_pipeline_run
from tests.support.outputs import STAGES, set_params
from tests.support.project import dvc_repro
from tests.support.registry import client
from tests.support.workspace import fresh_store

pytestmark = pytest.mark.slow  # a copy of the session's trained run, stages rerun

STAGE_LIST = [{"name": s, "status": "ran", "seconds": 1.0} for s in STAGES]


def record(root: Path) -> tuple[str, Verdict]:
    """What the flow does after `dvc repro`: log the run, then let the registry decide."""
    params = load_params(root / "params.yaml")
    run_id = log_pipeline_run(root, params, STAGE_LIST).run_id
    return run_id, decide_and_promote(root, params, run_id)


def registry(uri: str, name: str) -> tuple[dict[str, str], list[str]]:
    """(alias -> version, every version), as strings."""
    mlflow_client = client(uri)
    aliases = {a: str(v) for a, v in mlflow_client.get_registered_model(name).aliases.items()}
    versions = sorted(str(v.version) for v in mlflow_client.search_model_versions(f"name='{name}'"))
    return aliases, versions


@pytest.fixture(scope="module")
def store(pipeline_once, tmp_path_factory) -> str:
    """A SQLite registry where the last good run is already champion."""
    folder = tmp_path_factory.mktemp("registry")
    fresh_store(folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        _, verdict = record(Path(shutil.copytree(pipeline_once, folder / "good")))
    assert verdict.passed and verdict.champion, verdict.summary()
    return uri


@pytest.fixture
def candidate(project, store, monkeypatch):
    """A project whose next run records into the shared registry, and the registry before."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    name = load_params(project / "params.yaml").tracking.model_name
    return project, name, registry(store, name)


def assert_rejected(project: Path, store: str, name: str, before, gate: str) -> None:
    run_id, verdict = record(project)
    assert not verdict.passed and verdict.version is None
    assert gate in [g.name for g in verdict.failing]
    assert registry(store, name) == before  # nothing registered, no alias moved
    tags = client(store).get_run(run_id).data.tags
    assert tags["slimline.verdict"] == "failed" and tags["slimline.promotion"] == "rejected"
    assert f"{gate}: " in tags["slimline.gates.failing"]  # the run says which gate
    assert tags[f"slimline.gate.{gate}"].startswith("failed ")


def make_outliers(project: Path) -> None:
    """models/onnx/pruned.onnx becomes the pruned model with its most active last-layer channel
    scaled x1000 and the classifier's weights on it /1000: the same function in FP32 (ReLU is
    positively homogeneous), but one activation range that swamps the uint8 grid of the rest."""
    model = load_checkpoint(project / "models/pruned.pt")
    val = load_split(project / "data/prepared", "val")
    norm = [m for m in model.features if isinstance(m, nn.BatchNorm2d)][-1]
    with torch.no_grad():
        channel = int(model.features(torch.from_numpy(val.x)).mean(dim=(0, 2, 3)).argmax())
        norm.weight[channel] *= 1000.0
        norm.bias[channel] *= 1000.0
        model.fc.weight[:, channel] /= 1000.0
    export_onnx(model, val.input_shape, project / "models/onnx/pruned.onnx")


def test_quantization_collapse_is_undone_by_the_fallback_the_fp32_variant_or_a_gate(
    candidate, store
):
    project, name, before = candidate
    make_outliers(project)
    # 1. the fallback on (2 nodes may stay FP32): it finds the nodes that collapse accuracy
    result = dvc_repro(project, "-s", "quantize")
    assert result.returncode == 0, result.stderr
    q = json.loads((project / "metrics/quantize.json").read_text())
    collapsed = q["rounds"][0]["val_accuracy"]
    assert collapsed < q["fp32_val_accuracy"] - 0.3, q["rounds"]  # plain INT8 collapsed
    assert q["excluded_nodes"] and q["int8_val_accuracy"] > collapsed + 0.3
    # 2. the fallback and quantization-aware fine-tuning off (with qat: auto, QAT would repair
    # it: tests/stages/test_quantize.py): the collapsed INT8 model fails the agreement gate,
    # so export ships the pruned FP32 model, which passes every gate (export.objective)
    set_params(project, quantize={"max_excluded_nodes": 0, "qat": "never"},
               gates={"min_agreement": 0.9})  # fmt: skip
    result = dvc_repro(project, "-s", "quantize", "export", "validate")
    assert result.returncode == 0, result.stderr
    q = json.loads((project / "metrics/quantize.json").read_text())
    assert not q["within_bound"] and q["excluded_nodes"] == []
    assert q["int8_accuracy"] < q["fp32_accuracy"] - 0.3
    shipped = json.loads((project / "metrics/export.json").read_text())
    assert shipped["variant"] == "pruned_fp32", shipped["reason"]
    assert "min_agreement" in shipped["reason"]  # why INT8 was passed over
    assert json.loads((project / "reports/gates.json").read_text())["passed"]
    # 3. the FP32 model over the size bound as well: nothing passes, the collapsed model goes
    # on and the agreement gate stops it
    fp32, int8 = (project / "models/onnx/pruned.onnx", project / "models/onnx/pruned_int8.onnx")
    bound = (fp32.stat().st_size + int8.stat().st_size) // 2
    set_params(project, gates={"max_size_bytes": bound})
    result = dvc_repro(project, "-s", "export", "validate")
    assert result.returncode == 0, result.stderr  # a failed gate is a result, not a crash
    assert json.loads((project / "metrics/export.json").read_text())["variant"] == "pruned_int8"
    gates = json.loads((project / "reports/gates.json").read_text())
    assert not gates["passed"]
    assert_rejected(project, store, name, before, "min_agreement")


def test_failing_gate_registers_nothing_moves_nothing_and_is_named(candidate, store):
    project, name, before = candidate
    set_params(project, gates={"min_compression": 1e6})
    result = dvc_repro(project, "-s", "validate")
    assert result.returncode == 0, result.stderr
    failing = [g["name"] for g in json.loads((project / "reports/gates.json").read_text())["gates"]
               if not g["passed"]]  # fmt: skip
    assert failing == ["min_compression"]
    assert_rejected(project, store, name, before, "min_compression")
