"""The export stage ships the variant export.objective asks for, among those that pass every
gate, and says which and why in metrics/export.json, dist/settings.json, the model card and
(validate) reports/gates.json. Latencies are injected, never timed: the tests are exact."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import onnx
import pytest
from torch import nn

from slimline.compression.data.store import load_split, load_splits
from slimline.compression.release import objective
from slimline.compression.release.bundle import model_metadata
from slimline.compression.runtime.calibration import stratified_sample
from slimline.compression.runtime.onnx_io import add_metadata, export_onnx
from slimline.compression.runtime.quantize import quantize
from slimline.core.params.loading import load_params
from slimline.core.params.release import Quantize
from slimline.core.params.schema import Params
from tests.support.data import prepared_digits
from tests.support.params import write_params
from tests.support.paths import ROOT
from tests.support.training import quick_train

LENIENT = {"min_accuracy": 0.5, "max_accuracy_drop": 0.5, "min_agreement": 0.5,
           "max_size_bytes": 10_000_000, "min_compression": 1.0}  # fmt: skip


def _stage(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A project after quantize: an mlp teacher, its pruned student (FP32) and that student
    quantized to INT8, with the metrics and data report the bundle reads."""
    root = tmp_path_factory.mktemp("export")
    x, y = prepared_digits(root)
    pruned = quick_train(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), x, y, 5)
    teacher = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))  # size only
    onnx_dir = root / "models/onnx"
    export_onnx(teacher, (64,), onnx_dir / "teacher.onnx")
    for role in ("student", "pruned"):
        export_onnx(pruned, (64,), onnx_dir / f"{role}.onnx")
    train, val, test = load_splits(root / "data/prepared")
    calib_x, _ = stratified_sample(train.x, train.y, 256, 42)
    report = quantize(onnx_dir / "pruned.onnx", onnx_dir / "pruned_int8.onnx",
                      calib_x=calib_x, val_x=val.x, val_y=val.y, test_x=test.x, test_y=test.y,
                      q=Quantize())  # fmt: skip
    figures = {"accuracy": report["fp32_accuracy"], "params": 2410,
               "onnx_size_bytes": report["fp32_size_bytes"], "baseline_accuracy": 0.9}  # fmt: skip
    (root / "metrics").mkdir()
    (root / "reports").mkdir()
    for role, content in (("teacher", figures | {"accuracy": 0.99}), ("student", figures),
                          ("pruned", figures), ("quantize", report)):  # fmt: skip
        (root / f"metrics/{role}.json").write_text(json.dumps(content))
    splits = {"train": {"samples": len(train.y)}, "val": {"samples": len(val.y)},
              "test": {"samples": len(test.y)}}  # fmt: skip
    data = {"source": "digits", "sha256": "0" * 64, "splits": splits, "duplicates_dropped": 0}
    (root / "reports/data_validation.json").write_text(json.dumps(data))
    return root


def _project(built: Path, tmp_path: Path, objective: str, **gates) -> tuple[Params, Path]:
    root = tmp_path / "project"
    shutil.copytree(built, root)
    path = write_params(root / "params.yaml", teacher={"arch": "mlp"}, student={"arch": "mlp"},
                        export={"objective": objective}, gates=LENIENT | gates)  # fmt: skip
    return load_params(path), root


def _latencies(monkeypatch, ms: dict[str, float] | None) -> None:
    """measure_many answers these batch-1 p50s (ms); None: any call fails the test."""

    def fake(paths, *args, **kwargs):
        assert ms is not None, "export timed the models under an objective that needs no timing"
        return {name: {"latency_ms_b1_p50": ms[name], "latency_ms_b1_p95": ms[name],
                       "throughput_b64": 1.0} for name in paths}  # fmt: skip

    monkeypatch.setattr(objective, "measure_many", fake)


def _outputs(root: Path) -> tuple[dict, dict, str, dict | None]:
    """metrics/export.json, dist/settings.json, the card and reports/gates.json (if any)."""
    gates = root / "reports/gates.json"
    return (json.loads((root / "metrics/export.json").read_text()),
            json.loads((root / "dist/settings.json").read_text()),
            (root / "dist/model_card.md").read_text(),
            json.loads(gates.read_text()) if gates.exists() else None)  # fmt: skip


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_latency_objective_ships_fp32_when_it_is_faster(built, tmp_path, monkeypatch):
    params, root = _project(built, tmp_path, "latency")
    _latencies(monkeypatch, {"pruned_int8": 0.020, "pruned_fp32": 0.010})
    summary = _stage("export").main(params, root)
    _stage("validate").main(params, root)
    metrics, settings, card, gates = _outputs(root)
    assert "= pruned_fp32" in summary
    assert _ops(root / "dist/model.onnx") == _ops(root / "models/onnx/pruned.onnx")
    assert "QuantizeLinear" not in _ops(root / "dist/model.onnx")
    assert metrics["variant"] == "pruned_fp32" and metrics["objective"] == "latency"
    assert metrics["reason"].startswith(
        "pruned_fp32: fastest at batch 1 (pruned_int8 0.0200 ms, pruned_fp32 0.0100 ms)"
    )
    rows = {c["name"]: c for c in metrics["candidates"]}
    assert rows["pruned_fp32"]["latency_ms_b1_p50"] == 0.010 and rows["pruned_fp32"]["passed"]
    assert metrics["size_bytes"] == rows["pruned_fp32"]["size_bytes"]
    assert set(metrics["cpu"]) == {"model", "instruction_sets"}  # what the timing ran on
    assert settings["variant"]["variant"] == "pruned_fp32" and settings["quantizer"] is None
    assert "Shipped: `pruned_fp32`. Why: pruned_fp32: fastest at batch 1" in card
    assert "| **pruned_fp32** (shipped) |" in card and "final: pruned student FP32" in card
    assert "INT8 calibration" not in card
    assert gates["passed"] and gates["judged"]["variant"] == "pruned_fp32"
    assert gates["judged"]["reason"] == metrics["reason"]
    assert {g["name"]: g["value"] for g in gates["gates"]}["min_agreement"] == 1.0


def test_latency_objective_keeps_int8_when_it_is_faster(built, tmp_path, monkeypatch):
    params, root = _project(built, tmp_path, "latency")
    _latencies(monkeypatch, {"pruned_int8": 0.008, "pruned_fp32": 0.010})
    _stage("export").main(params, root)
    metrics, settings, _, _ = _outputs(root)
    assert metrics["variant"] == "pruned_int8" and settings["quantizer"]["mode"] == "static"
    assert "QuantizeLinear" in _ops(root / "dist/model.onnx")


def test_default_size_ships_todays_model_byte_for_byte_untimed(built, tmp_path, monkeypatch):
    params, root = _project(built, tmp_path, "size")
    assert Params.model_fields["export"].default.objective == "size"
    _latencies(monkeypatch, None)
    _stage("export").main(params, root)
    # what export wrote before objectives: the quantized model with the bundle's metadata
    test = load_split(root / "data/prepared", "test", lazy=True)
    before = tmp_path / "before.onnx"
    add_metadata(root / "models/onnx/pruned_int8.onnx", before, model_metadata(params, root, test))
    assert (root / "dist/model.onnx").read_bytes() == before.read_bytes()
    metrics, settings, card, _ = _outputs(root)
    assert metrics["variant"] == "pruned_int8" and metrics["objective"] == "size"
    assert metrics["reason"].startswith("pruned_int8: smallest (pruned_int8 ")
    assert all(c["latency_ms_b1_p50"] is None for c in metrics["candidates"])
    assert "cpu" not in metrics  # no timings in metrics files: two runs give the same bytes
    assert settings["variant"]["objective"] == "size"
    assert "Shipped: `pruned_int8`" in card and "quantized to INT8 with onnxruntime" in card


def test_no_candidate_passing_ships_the_quantized_model_and_fails_validate(
    built, tmp_path, monkeypatch
):
    params, root = _project(built, tmp_path, "accuracy", min_accuracy=1.0)
    _latencies(monkeypatch, None)
    _stage("export").main(params, root)
    summary = _stage("validate").main(params, root)
    metrics, _, card, gates = _outputs(root)
    assert metrics["variant"] == "pruned_int8"
    assert metrics["reason"].startswith("pruned_int8: no candidate passes every gate (")
    assert not any(c["passed"] for c in metrics["candidates"])
    assert "fail: min_accuracy" in card
    assert not gates["passed"] and gates["judged"]["variant"] == "pruned_int8"
    assert summary.startswith("gates FAILED on pruned_int8 (objective accuracy): min_accuracy")


def test_gates_carry_intervals_and_bound_fails_what_the_estimate_passes(
    built, tmp_path, monkeypatch
):
    # FP32 agrees with itself on every test row: 1.0 clears 0.997, its 95% lower bound does not
    _latencies(monkeypatch, None)
    params, root = _project(built, tmp_path / "estimate", "accuracy", min_agreement=0.997)
    _stage("export").main(params, root)
    _stage("validate").main(params, root)
    metrics, _, card, gates = _outputs(root)
    agreement = {g["name"]: g for g in gates["gates"]}["min_agreement"]
    n = agreement["samples"]
    assert gates["passed"] and metrics["variant"] == "pruned_fp32"
    assert agreement["decided_on"] == "estimate" and agreement["value"] == 1.0
    assert agreement["interval"][0] < 0.997 < agreement["interval"][1] == 1.0
    # a split this size cannot tell 0.997 from 1: it says so, and the size that would
    needed = agreement["undecidable"]["needed_samples"]
    assert needed > n and f"about {needed:,} test samples would decide it" in card
    assert f"min_agreement: 1.0000 >= 0.9970 (95% CI {agreement['interval'][0]:.4f}" in card
    assert f"{n:,} test samples)" in card
    drop = {g["name"]: g for g in gates["gates"]}["max_accuracy_drop"]
    assert drop["interval"][0] <= drop["value"] <= drop["interval"][1] and drop["samples"] == n

    params, root = _project(built, tmp_path / "bound", "accuracy", min_agreement=0.997,
                            decide="bound")  # fmt: skip
    _stage("export").main(params, root)
    summary = _stage("validate").main(params, root)
    metrics, _, card, gates = _outputs(root)
    assert not any(c["passed"] for c in metrics["candidates"])  # none clears the bound
    assert not gates["passed"] and metrics["variant"] == "pruned_int8"
    assert "min_agreement: lower bound 0." in summary and " < 0.9970 (off by " in summary
    assert "too small to decide it" in summary
    assert "`gates.decide: bound`" in card
