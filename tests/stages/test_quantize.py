"""The quantize stage as DVC runs it with quantize.bits 4: an mlp's weights packed as INT4,
a conv student refused at params load, an unpackable model refused naming file and ops."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from slimline.compression.runtime.onnx_io import export_onnx
from tests.support.data import prepared_digits
from tests.support.params import write_params
from tests.support.processes import run_stage
from tests.support.training import quick_train


def _params(root: Path, **quantize) -> Path:
    return write_params(root / "params.yaml", teacher={"arch": "mlp"}, student={"arch": "mlp"},
                        quantize={"bits": 4, **quantize})  # fmt: skip


def test_quantize_stage_packs_an_mlp_as_int4(tmp_path):
    x, y = prepared_digits(tmp_path)
    model = quick_train(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), x, y, 5)
    export_onnx(model, (64,), tmp_path / "models/onnx/pruned.onnx")
    result = run_stage("quantize", _params(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "quantize (4-bit weight-only)" in result.stderr
    report = json.loads((tmp_path / "metrics/quantize.json").read_text())
    assert report["bits"] == 4 and report["within_bound"]
    assert sorted(report["block_sizes"].values()) == [32, 64]  # K of each layer: no padding
    graph = onnx.load(str(tmp_path / "models/onnx/pruned_int8.onnx")).graph
    assert Counter(n.op_type for n in graph.node)["MatMulNBits"] == 2


def test_quantize_stage_refuses_bits_4_for_a_conv_student(tmp_path):
    params = write_params(tmp_path / "params.yaml", student={"arch": "cnn"},
                          quantize={"bits": 4})  # fmt: skip
    result = run_stage("quantize", params)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert (
        "quantize.bits: 4 needs student.arch mlp / transformer / boe (got student.arch 'cnn')"
        in result.stderr
    )
    assert not (tmp_path / "models").exists() and not (tmp_path / "metrics").exists()


def test_quantize_stage_refuses_a_model_whose_weights_4_bits_cannot_pack(tmp_path):
    # an mlp student by params, but the pruned ONNX file has a conv (a hand-placed file, an
    # imported network): only the stage can see it, and it says which file and which ops
    x, y = prepared_digits(tmp_path)
    model = nn.Sequential(nn.Unflatten(1, (1, 64)), nn.Conv1d(1, 4, 3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 62, 10))  # fmt: skip
    pruned = tmp_path / "models/onnx/pruned.onnx"
    export_onnx(quick_train(model, x, y, 5), (64,), pruned)
    result = run_stage("quantize", _params(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith(f"error: {pruned}: quantize.bits 4 packs MatMul weights")
    assert "would stay unpacked: Conv x1" in error and "quantize.bits: 8" in error
    assert not (tmp_path / "models/onnx/pruned_int8.onnx").exists()
    assert not (tmp_path / "metrics/quantize.json").exists()


def _outlier_mlp(root: Path, x: np.ndarray, y: np.ndarray, hidden: int = 32) -> nn.Module:
    """A trained slimline mlp (the teacher checkpoint), and its twin with hidden unit 0 scaled
    x1000 (outgoing weights /1000) as the pruned checkpoint and ONNX file: the same function,
    but one activation that swamps the uint8 grid of the others."""
    from slimline.compression.models.checkpoints import save_checkpoint
    from slimline.compression.models.families import build_model
    from slimline.core.params.models import ModelSpec

    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", width=hidden, depth=1, epochs=5, lr=0.01, batch_size=100)
    model = quick_train(build_model(spec, (64,), 10), x, y, 5)
    save_checkpoint(root / "models/teacher.pt", model)
    with torch.no_grad():
        model.features[1].weight[0] *= 1000.0
        model.features[1].bias[0] *= 1000.0
        model.fc.weight[:, 0] /= 1000.0
    save_checkpoint(root / "models/pruned.pt", model)
    export_onnx(model, (64,), root / "models/onnx/pruned.onnx")
    return model


def _qat_params(root: Path, **quantize) -> Path:
    return write_params(root / "params.yaml", teacher={"arch": "mlp"}, device="cpu",
                        student={"arch": "mlp", "batch_size": 64},
                        prune={"finetune_epochs": 6, "lr": 0.005},
                        quantize={"max_excluded_nodes": 0, **quantize})  # fmt: skip


def test_quantize_stage_fine_tunes_with_qat_when_ptq_collapses(tmp_path):
    x, y = prepared_digits(tmp_path)
    _outlier_mlp(tmp_path, x, y)
    result = run_stage("quantize", _qat_params(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "quantize (static via qat)" in result.stderr
    report = json.loads((tmp_path / "metrics/quantize.json").read_text())
    assert report["path"] == "qat" and report["within_bound"], report["path_reason"]
    assert report["ptq"]["drop"] > 0.3 and not report["ptq"]["within_bound"]
    assert report["qat"]["drop"] <= 0.01 and report["qat"]["source"] == "models/pruned.pt"
    assert report["qat"]["epochs"] == 6 and report["qat"]["lr"] == 0.005
    assert report["qat"]["device"] == "cpu"
    assert [c["site"] for c in report["qat"]["clips"]] == ["features.2:output"]
    assert report["path_reason"].startswith(f"ptq drop {report['ptq']['drop']:.4f}")
    out = tmp_path / "models/onnx/pruned_int8.onnx"
    ops = Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    assert ops["QuantizeLinear"] >= 2 and ops["DequantizeLinear"] >= 4
    assert report["int8_accuracy"] >= report["fp32_accuracy"] - 0.03


def test_quantize_stage_keeps_ptq_when_the_checkpoint_is_not_the_onnx_model(tmp_path):
    # QAT can only fine-tune the model the ONNX file holds: a hand-placed file keeps PTQ
    x, y = prepared_digits(tmp_path)
    model = _outlier_mlp(tmp_path, x, y)
    with torch.no_grad():  # still the outlier PTQ cannot handle, but not the checkpoint's model
        model.fc.bias += 0.5
    export_onnx(model, (64,), tmp_path / "models/onnx/pruned.onnx")
    result = run_stage("quantize", _qat_params(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "metrics/quantize.json").read_text())
    assert report["path"] == "ptq" and "qat" not in report
    assert report["path_reason"].startswith("qat not run: models/pruned.pt is not the model in")


def test_quantize_stage_with_qat_never_writes_the_ptq_report(tmp_path):
    x, y = prepared_digits(tmp_path)
    _outlier_mlp(tmp_path, x, y)
    result = run_stage("quantize", _qat_params(tmp_path, qat="never"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "metrics/quantize.json").read_text())
    assert "path" not in report and not report["within_bound"]
