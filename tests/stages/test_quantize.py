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

from slimline.compression.data import Dataset, save_split
from slimline.compression.onnx_io import export_onnx
from tests.conftest import run_stage, write_params


def prepared_digits(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as prepared tabular (N, 64) splits, as the prepare stage writes."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = ((d.data - d.data.mean(0)) / (d.data.std(0) + 1e-6)).astype(np.float32)
    y = d.target.astype(np.int64)
    ds = Dataset(x, y, [str(k) for k in range(10)], 1.0)
    (root / "data/prepared").mkdir(parents=True)
    parts = {"train": slice(0, 1000), "val": slice(1000, 1400), "test": slice(1400, None)}
    for name, rows in parts.items():
        save_split(root / f"data/prepared/{name}.npz", x[rows], y[rows], ds, np.zeros(1),
                   np.ones(1))  # fmt: skip
    return x[:1000], y[:1000]


def _trained(model: nn.Module, x: np.ndarray, y: np.ndarray) -> nn.Module:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    try:
        for _ in range(5):
            for i in range(0, len(x), 100):
                opt.zero_grad()
                xb, yb = torch.from_numpy(x[i : i + 100]), torch.from_numpy(y[i : i + 100])
                nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _params(root: Path, **quantize) -> Path:
    return write_params(root / "params.yaml", teacher={"arch": "mlp"}, student={"arch": "mlp"},
                        quantize={"bits": 4, **quantize})  # fmt: skip


def test_quantize_stage_packs_an_mlp_as_int4(tmp_path):
    x, y = prepared_digits(tmp_path)
    model = _trained(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), x, y)
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
    assert "quantize.bits: 4 needs student.arch mlp (got student.arch 'cnn')" in result.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "metrics").exists()


def test_quantize_stage_refuses_a_model_whose_weights_4_bits_cannot_pack(tmp_path):
    # an mlp student by params, but the pruned ONNX file has a conv (a hand-placed file, an
    # imported network): only the stage can see it, and it says which file and which ops
    x, y = prepared_digits(tmp_path)
    model = nn.Sequential(nn.Unflatten(1, (1, 64)), nn.Conv1d(1, 4, 3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 62, 10))  # fmt: skip
    pruned = tmp_path / "models/onnx/pruned.onnx"
    export_onnx(_trained(model, x, y), (64,), pruned)
    result = run_stage("quantize", _params(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith(f"error: {pruned}: quantize.bits 4 packs MatMul weights")
    assert "would stay unpacked: Conv x1" in error and "quantize.bits: 8" in error
    assert not (tmp_path / "models/onnx/pruned_int8.onnx").exists()
    assert not (tmp_path / "metrics/quantize.json").exists()
