"""quantize.bits 4: block-wise INT4 weights (MatMulNBits) for MLPs, refused where they can't go."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from slimline.compression.models.families import build_model
from slimline.compression.runtime.calibration import stratified_sample
from slimline.compression.runtime.int4 import as_matmul, block_size
from slimline.compression.runtime.onnx_io import export_onnx, run_logits, session
from slimline.compression.runtime.quantize import quantize
from slimline.core.errors import InputError
from slimline.core.params.loading import ParamsError, load_params
from slimline.core.params.models import ModelSpec
from slimline.core.params.release import Quantize
from tests.support.params import write_params
from tests.support.paths import ROOT
from tests.support.training import quick_train

INT4_KEYS = {"bits", "block_sizes", "symmetric", "accuracy_level"}


@pytest.fixture(scope="module")
def table():
    """scikit-learn's digits as a table: (N, 64) features standardized, 3 splits."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.astype(np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    idx = np.random.default_rng(0).permutation(len(x))
    parts = {"train": idx[:1000], "val": idx[1000:1400], "test": idx[1400:]}
    return {name: (x[i], d.target[i].astype(np.int64)) for name, i in parts.items()}


def _mlp(table, hidden: int = 64):
    """slimline's own mlp family (Flatten, Linear+ReLU x2, fc), briefly trained."""
    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", width=hidden, depth=2, epochs=5, lr=0.01, batch_size=64)
    return quick_train(build_model(spec, (64,), 10), *table["train"], epochs=8)


@pytest.fixture(scope="module")
def mlp_fp32(table, tmp_path_factory):
    path = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    export_onnx(_mlp(table), (64,), path)
    return path


def _run(fp32, out, table, **q):
    (xtr, ytr), (xv, yv), (xt, yt) = table["train"], table["val"], table["test"]
    calib_x, _ = stratified_sample(xtr, ytr, 256, seed=0)
    return quantize(fp32, out, calib_x=calib_x, val_x=xv, val_y=yv, test_x=xt, test_y=yt,
                    q=Quantize(**q))  # fmt: skip


def test_torch_exports_linear_as_gemm_and_the_rewrite_keeps_outputs(mlp_fp32, table, tmp_path):
    proto = onnx.load(str(mlp_fp32))
    assert Counter(n.op_type for n in proto.graph.node)["Gemm"] == 3  # why as_matmul exists
    weights = as_matmul(proto, mlp_fp32)
    assert sorted(w.shape for _, w in weights.values()) == [(64, 10), (64, 64), (64, 64)]
    ops = Counter(n.op_type for n in proto.graph.node)
    assert ops["MatMul"] == 3 and ops["Add"] == 3 and "Gemm" not in ops
    onnx.save(proto, str(tmp_path / "mm.onnx"))
    x = table["test"][0]
    np.testing.assert_allclose(
        run_logits(session(tmp_path / "mm.onnx"), x), run_logits(session(mlp_fp32), x), atol=1e-5
    )


def test_int4_runs_in_ort_is_smaller_than_int8_and_within_bound(mlp_fp32, table, tmp_path):
    int4, int8 = tmp_path / "int4.onnx", tmp_path / "int8.onnx"
    report = _run(mlp_fp32, int4, table, bits=4)
    int8_report = _run(mlp_fp32, int8, table)
    # the INT8 keys stay for their readers, but the INT8 format's target (int8_target)
    target = {"target", "reduce_range", "requires", "runs_on"}
    assert set(report) == (set(int8_report) - target) | INT4_KEYS
    assert "bits" not in int8_report  # bits 8: metrics/quantize.json exactly as before
    assert report["bits"] == 4 and report["mode"] == "weight_only"
    assert report["weight_type"] == "QUInt4" and report["activation_type"] == "float32"
    assert report["block_sizes"] == {n: 64 for n in report["block_sizes"]}  # K=64: one block
    graph = onnx.load(str(int4)).graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["MatMulNBits"] == 3 and not {"Gemm", "MatMul", "QuantizeLinear"} & set(ops)
    bits = {
        n.name: {a.name: a.i for a in n.attribute if a.name in ("bits", "block_size")}
        for n in graph.node
        if n.op_type == "MatMulNBits"
    }
    assert all(b == {"bits": 4, "block_size": 64} for b in bits.values())
    assert report["int8_size_bytes"] == int4.stat().st_size < 0.75 * int8.stat().st_size
    assert report["within_bound"] and report["excluded_nodes"] == []
    assert report["fp32_val_accuracy"] - report["int8_val_accuracy"] <= 0.01 + 1e-9
    assert report["agreement"] >= 0.95
    sess = session(int4)  # ORT's CPU provider runs it, at any batch
    for batch in (1, 9):
        assert run_logits(sess, table["test"][0][:batch]).shape == (batch, 10)
    again = tmp_path / "again.onnx"
    assert _run(mlp_fp32, again, table, bits=4) == report
    assert again.read_bytes() == int4.read_bytes()


@pytest.fixture(scope="module")
def fragile_mlp_fp32(table, tmp_path_factory):
    """The same function in FP32, but one 4-bit block per fc column holds a x1000 weight on a
    hidden unit that is always 0: the block's scale swamps every other weight of the column."""
    model = _mlp(table, hidden=32)
    with torch.no_grad():
        model.features[3].weight[0] = 0.0
        model.features[3].bias[0] = -1.0  # ReLU(-1): unit 0 of the last hidden layer is 0
        model.fc.weight[:, 0] = 1000.0
    path = tmp_path_factory.mktemp("fragile") / "fragile.onnx"
    export_onnx(model, (64,), path)
    return path


def test_int4_fallback_keeps_nodes_fp32_until_within_bound(fragile_mlp_fp32, table, tmp_path):
    out = tmp_path / "int4.onnx"
    report = _run(fragile_mlp_fp32, out, table, bits=4, max_accuracy_drop=0.0)
    rounds = report["rounds"]
    assert rounds[0]["val_accuracy"] < report["fp32_val_accuracy"] - 0.3  # plain INT4 collapsed
    assert report["within_bound"] and report["excluded_nodes"] == rounds[-1]["excluded_nodes"]
    assert report["fallback_rounds"] == len(rounds) - 1 >= 1
    fc = next(
        n.name
        for n in onnx.load(str(fragile_mlp_fp32)).graph.node
        if n.op_type == "Gemm" and n.input[1] == "fc.weight"
    )
    assert fc in report["excluded_nodes"] and fc not in report["block_sizes"]
    assert {r["op"] for r in report["sensitivity"]} == {"Gemm"}
    assert {r["weight"] for r in report["sensitivity"]} >= {"fc.weight"}
    ops = Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    assert ops["MatMulNBits"] == 3 - len(report["excluded_nodes"]) and ops["MatMul"] >= 1


def test_int4_out_of_bound_returns_best_attempt(fragile_mlp_fp32, table, tmp_path):
    out = tmp_path / "int4.onnx"
    report = _run(fragile_mlp_fp32, out, table, bits=4, max_accuracy_drop=0.0,
                  max_excluded_nodes=0)  # fmt: skip
    assert not report["within_bound"] and len(report["rounds"]) == 1
    assert session(out)  # written all the same: the gates decide


def test_int4_refuses_a_conv_model_naming_file_and_node_types(tmp_path, table):
    from torch import nn

    model = nn.Sequential(nn.Unflatten(1, (1, 64)), nn.Conv1d(1, 4, 3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 62, 10))  # fmt: skip
    fp32, out = tmp_path / "conv.onnx", tmp_path / "int4.onnx"
    export_onnx(model.eval(), (64,), fp32)
    out.write_bytes(b"last good")
    with pytest.raises(InputError) as info:
        _run(fp32, out, table, bits=4)
    message = str(info.value)
    assert str(fp32) in message and "Conv x1" in message and "MatMulNBits" in message
    assert "quantize.bits: 8" in message
    assert out.read_bytes() == b"last good"


@pytest.mark.parametrize(("k", "block"), [(8, 16), (16, 16), (24, 16), (64, 64), (100, 64),
                                          (128, 128), (4096, 128)])  # fmt: skip
def test_block_size_never_pads_past_k(k, block):
    assert block_size(k) == block


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_params_refuse_bits_4_for_conv_students(tmp_path, arch):
    path = write_params(tmp_path / "params.yaml", student={"arch": arch})
    with pytest.raises(ParamsError) as info:
        load_params(path, ["quantize.bits=4"])
    (problem,) = info.value.problems
    assert problem.startswith(
        f"quantize.bits: 4 needs student.arch mlp / transformer / boe (got student.arch '{arch}')"
    )
    assert "MatMulNBits" in problem and "no 4-bit Conv kernel" in problem


def test_params_bits(tmp_path):
    assert load_params(ROOT / "params.yaml").quantize.bits == 8
    path = write_params(tmp_path / "params.yaml", student={"arch": "mlp"})
    assert load_params(path, ["quantize.bits=4"]).quantize.bits == 4
    with pytest.raises(ParamsError) as info:
        load_params(path, ["quantize.bits=2"])
    assert info.value.problems == ["quantize.bits: 8 or 4 (got 2)"]
