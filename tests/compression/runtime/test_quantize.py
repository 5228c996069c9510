"""INT8 quantization: QDQ graph, size, accuracy, the fallback, dynamic mode, sampling."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper
from torch import nn

from slimline.compression.runtime.calibration import stratified_sample
from slimline.compression.runtime.compact import compact
from slimline.compression.runtime.onnx_io import OnnxError, export_onnx, run_logits, session
from slimline.compression.runtime.quantize import quantize
from slimline.core.params.release import Quantize
from tests.support.onnx_graphs import REPORT_KEYS, fused_ops
from tests.support.training import quick_train


class ResidualCNN(nn.Module):
    def __init__(self, c: int, k: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1),
            nn.BatchNorm2d(c),
        )
        self.head = nn.Linear(c, k)

    def forward(self, x):  # (B, 1, 8, 8) -> (B, K)
        h = self.stem(x)
        return self.head(torch.relu(h + self.block(h)).mean((2, 3)))


class MLP(nn.Module):
    def __init__(self, f: int = 64, hidden: int = 32, k: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(f, hidden), nn.ReLU(), nn.Linear(hidden, k))

    def forward(self, x):  # (B, F) -> (B, K)
        return self.net(x)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:, None] / 16.0).astype(np.float32)
    x = (x - x.mean()) / x.std()
    idx = np.random.default_rng(0).permutation(len(x))
    parts = {"train": idx[:1000], "val": idx[1000:1400], "test": idx[1400:]}
    return {name: (x[i], d.target[i].astype(np.int64)) for name, i in parts.items()}


@pytest.fixture(scope="module")
def cnn_fp32(digits, tmp_path_factory):
    torch.manual_seed(0)
    model = quick_train(ResidualCNN(c=16), *digits["train"], epochs=3)
    path = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    export_onnx(model, (1, 8, 8), path)
    return path


@pytest.fixture(scope="module")
def outlier_mlp_fp32(digits, tmp_path_factory):
    """An MLP whose hidden unit 0 is scaled x1000 and its outgoing weights /1000: the same
    function in FP32 (ReLU is positively homogeneous), but one activation range swamps the
    uint8 grid of the others, so plain INT8 collapses and only FP32 nodes can save it."""
    x, y = digits["train"]
    torch.manual_seed(0)
    model = quick_train(MLP(), x.reshape(len(x), -1), y, epochs=5)
    with torch.no_grad():
        model.net[0].weight[0] *= 1000.0
        model.net[0].bias[0] *= 1000.0
        model.net[2].weight[:, 0] /= 1000.0
    path = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    export_onnx(model, (64,), path)
    return path


def _run(fp32, out, digits, flat=False, calib=256, **q):
    def prep(x):
        return x.reshape(len(x), -1) if flat else x

    (xtr, ytr), (xv, yv), (xt, yt) = digits["train"], digits["val"], digits["test"]
    calib_x, _ = stratified_sample(prep(xtr), ytr, calib, seed=0)
    return quantize(
        fp32,
        out,
        calib_x=calib_x,
        val_x=prep(xv),
        val_y=yv,
        test_x=prep(xt),
        test_y=yt,
        q=Quantize(**q),
    )


def test_static_int8_graph_is_qdq_and_3_5x_smaller(tmp_path, digits):
    torch.manual_seed(0)
    model = ResidualCNN(c=80).eval()  # ~117k params, random weights: size is the point here
    fp32, int8 = tmp_path / "big.onnx", tmp_path / "big_int8.onnx"
    export_onnx(model, (1, 8, 8), fp32)
    report = _run(fp32, int8, digits, calib=64)
    assert set(report) == REPORT_KEYS
    assert report["int8_size_bytes"] == int8.stat().st_size
    assert report["size_ratio"] >= 3.5, report
    graph = onnx.load(str(int8)).graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["QuantizeLinear"] >= 1 and ops["DequantizeLinear"] >= 4
    int8_weights = [t for t in graph.initializer if t.data_type == TensorProto.UINT8]  # U8U8
    assert sum(np.prod(t.dims) for t in int8_weights) >= 0.99 * 117_000
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == [
        "logits"
    ]
    producer = {o: n.op_type for n in graph.node for o in n.output}
    assert producer["logits"] == "Gemm"  # float logits: no Q/DQ rounding them to 256 levels
    sess = session(int8)
    for batch in (1, 7):
        assert run_logits(sess, digits["test"][0][:batch]).shape == (batch, 10)


def test_static_keeps_accuracy_fusion_and_is_deterministic(cnn_fp32, digits, tmp_path):
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    report = _run(cnn_fp32, first, digits)
    assert json.loads(json.dumps(report)) == report  # plain JSON types: metrics/quantize.json
    assert report["within_bound"] and report["excluded_nodes"] == []
    assert report["fallback_rounds"] == 0 and len(report["rounds"]) == 1
    assert report["int8_accuracy"] >= report["fp32_accuracy"] - 0.02
    assert report["agreement"] >= 0.97
    # portable: U8U8, exact on every CPU (int8_target)
    assert report["target"] == "portable" and report["requires"] == []
    assert report["activation_type"] == "QUInt8" and report["weight_type"] == "QUInt8"
    ops = fused_ops(first, tmp_path)  # compaction must not break ORT's QDQ fusion
    assert ops["QLinearConv"] == 3 and ops["QGemm"] == 1 and "Conv" not in ops
    assert _run(cnn_fp32, second, digits) == report
    assert first.read_bytes() == second.read_bytes()


def test_compact_is_lossless_and_smaller(cnn_fp32, digits, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from slimline.compression.runtime.calibration import batch_reader
    from slimline.compression.runtime.onnx_io import file_feeds

    pre, raw, small = tmp_path / "pre.onnx", tmp_path / "raw.onnx", tmp_path / "small.onnx"
    quant_pre_process(str(cnn_fp32), str(pre))
    quantize_static(
        str(pre),
        str(raw),
        batch_reader(digits["train"][0][:64], file_feeds(pre)),
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    onnx.save(compact(onnx.load(str(raw))), str(small))
    x = digits["test"][0]
    np.testing.assert_array_equal(run_logits(session(small), x), run_logits(session(raw), x))
    assert small.stat().st_size < 0.8 * raw.stat().st_size


@pytest.mark.parametrize("damage", ["zero_weights", "unloadable"])
def test_lossy_compaction_is_rejected(cnn_fp32, digits, tmp_path, monkeypatch, caplog, damage):
    import slimline.compression.runtime.compact as compact_module

    def lossy(proto):  # a "compaction" that changes a weight
        ints = (TensorProto.INT8, TensorProto.UINT8)  # the weights of either target's format
        weight = max((t for t in proto.graph.initializer if t.data_type in ints),
                     key=lambda t: len(t.raw_data))  # fmt: skip
        weight.raw_data = bytes(len(weight.raw_data) // (2 if damage == "unloadable" else 1))
        return proto

    clean = _run(cnn_fp32, tmp_path / "clean.onnx", digits, calib=64)
    monkeypatch.setattr(compact_module, "compact", lossy)
    report = _run(cnn_fp32, tmp_path / "int8.onnx", digits, calib=64)
    assert "changed ONNX Runtime outputs; keeping the plain file" in caplog.text
    # the uncompacted, correct model was kept: the same outputs as the compacted clean one
    # (compaction is lossless), and a larger file
    x = digits["test"][0]
    np.testing.assert_array_equal(
        run_logits(session(tmp_path / "int8.onnx"), x),
        run_logits(session(tmp_path / "clean.onnx"), x),
    )
    assert report["int8_size_bytes"] > clean["int8_size_bytes"]


def test_entropy_calibration_is_not_minmax(cnn_fp32, digits, tmp_path):
    # quantize_static alone runs entropy with one candidate threshold, i.e. minmax.
    _run(cnn_fp32, tmp_path / "minmax.onnx", digits, calib=64)
    report = _run(
        cnn_fp32, tmp_path / "entropy.onnx", digits, calib=64, calibration_method="entropy"
    )
    assert report["calibration_method"] == "entropy"
    assert (tmp_path / "minmax.onnx").read_bytes() != (tmp_path / "entropy.onnx").read_bytes()


def test_dynamic_mode(cnn_fp32, digits, tmp_path):
    report = _run(cnn_fp32, tmp_path / "dyn.onnx", digits, calib=0, mode="dynamic")
    assert report["mode"] == "dynamic" and report["calibration_samples"] == 0
    assert report["size_ratio"] > 2.5  # a 5k-param net: graph overhead weighs more here
    assert report["agreement"] >= 0.97
    ops = Counter(n.op_type for n in onnx.load(str(tmp_path / "dyn.onnx")).graph.node)
    assert ops["ConvInteger"] + ops["MatMulInteger"] >= 1


def test_fallback_excludes_sensitive_nodes_until_within_bound(outlier_mlp_fp32, digits, tmp_path):
    out = tmp_path / "mlp_int8.onnx"
    report = _run(outlier_mlp_fp32, out, digits, flat=True, max_accuracy_drop=0.0)
    rounds = report["rounds"]
    assert rounds[0]["val_accuracy"] < report["fp32_val_accuracy"] - 0.5  # plain INT8 collapsed
    assert report["excluded_nodes"] and report["fallback_rounds"] == len(rounds) - 1 >= 1
    assert report["excluded_nodes"] == rounds[-1]["excluded_nodes"]
    assert report["within_bound"]
    assert report["int8_val_accuracy"] >= report["fp32_val_accuracy"]
    ranked = [r["node"] for r in report["sensitivity"]]
    assert set(report["excluded_nodes"]) <= set(ranked)
    assert all(r["weight"] and r["op"] == "Gemm" for r in report["sensitivity"])
    graph_nodes = {n.name for n in onnx.load(str(outlier_mlp_fp32)).graph.node}
    assert set(report["excluded_nodes"]) <= graph_nodes


def test_fallback_out_of_bound_returns_best_attempt(outlier_mlp_fp32, digits, tmp_path):
    out = tmp_path / "mlp_int8.onnx"
    report = _run(
        outlier_mlp_fp32, out, digits, flat=True, max_accuracy_drop=0.0, max_excluded_nodes=1
    )
    assert not report["within_bound"]
    assert len(report["excluded_nodes"]) <= 1 and len(report["rounds"]) == 2
    best = max(r["val_accuracy"] for r in report["rounds"])
    assert report["int8_val_accuracy"] == best
    assert session(out)  # the best attempt is written: the gates decide


def test_dynamic_fallback_ranks_nodes_by_weight_error(outlier_mlp_fp32):
    from slimline.compression.runtime.sensitivity import weight_ranking

    ranking = weight_ranking(outlier_mlp_fp32)
    assert [r["op"] for r in ranking] == ["Gemm", "Gemm"]
    assert ranking[0]["sqnr_db"] <= ranking[1]["sqnr_db"]
    # the layer whose weights hold the x1000 outlier row loses most in an INT8 round trip
    assert ranking[0]["weight"] == "net.0.weight"


def test_bad_input_keeps_previous_output(digits, tmp_path):
    corrupt, out = tmp_path / "corrupt.onnx", tmp_path / "int8.onnx"
    corrupt.write_bytes(b"not a model")
    out.write_bytes(b"last good")
    with pytest.raises(OnnxError, match="corrupt.onnx"):
        _run(corrupt, out, digits)
    assert out.read_bytes() == b"last good"


def test_stratified_sample_is_deterministic_and_stratified():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    x = np.arange(len(y) * 2, dtype=np.float32).reshape(len(y), 2)
    xs, ys = stratified_sample(x, y, 20, seed=3)
    again = stratified_sample(x, y, 20, seed=3)
    np.testing.assert_array_equal(xs, again[0])
    np.testing.assert_array_equal(ys, again[1])
    assert np.bincount(ys, minlength=4).tolist() == [10, 6, 3, 1]
    np.testing.assert_array_equal(y[(xs[:, 0] // 2).astype(int)], ys)  # rows stay paired
    assert not np.array_equal(stratified_sample(x, y, 20, seed=4)[0], xs)
    _, tiny = stratified_sample(x, y, 4, seed=0)
    assert sorted(tiny.tolist()) == [0, 1, 2, 3]  # every class, even when quotas round to 0
    assert len(stratified_sample(x, y, 1000, seed=0)[0]) == len(y)
    assert [len(a) for a in stratified_sample(x, y, 0, seed=0)] == [0, 0]  # dynamic mode
    with pytest.raises(ValueError, match="n must be >= 0"):
        stratified_sample(x, y, -1, seed=0)


@pytest.fixture(scope="module")
def signal_fp32(tmp_path_factory):
    """1-D cnn and resnet trained on (N, 2, 64) sine waves, exported; with their splits."""
    from slimline.compression.models.families import build_model
    from slimline.compression.training.fit import fit
    from slimline.compression.training.setup import Setup
    from slimline.core.params.models import ModelSpec
    from tests.support.data import make_signal_split

    splits = [make_signal_split(n, seed=s) for n, s in ((240, 1), (150, 2), (150, 3))]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    paths = {}
    try:
        for arch, width in (("cnn", 8), ("resnet", 4)):
            torch.manual_seed(0)
            spec = ModelSpec(arch=arch, width=width, depth=2, epochs=4, lr=0.01, batch_size=32)
            model = build_model(spec, (2, 64), 3)
            fit(model, Setup.of(spec, splits[0], splits[1], seed=0))
            paths[arch] = tmp_path_factory.mktemp(arch) / f"{arch}_1d.onnx"
            export_onnx(model, (2, 64), paths[arch])
    finally:
        torch.set_num_threads(threads)
    return paths, {
        name: (s.x, s.y) for name, s in zip(("train", "val", "test"), splits, strict=True)
    }


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_static_int8_on_1d_signal_models(arch, signal_fp32, tmp_path, caplog):
    paths, signals = signal_fp32
    out = tmp_path / "int8.onnx"
    report = _run(paths[arch], out, signals, calib=64)
    assert report["fp32_accuracy"] >= 0.8  # chance is 1/3
    assert report["int8_accuracy"] >= report["fp32_accuracy"] - 0.03
    assert report["agreement"] >= 0.95 and report["excluded_nodes"] == []
    # compaction (default strides/dilations/kernel_shape dropped) kept ORT's outputs on 1-D
    assert "changed ONNX Runtime outputs" not in caplog.text
    graph = onnx.load(str(out)).graph
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":  # the compacted file was kept: 1-D defaults are gone
            assert "kernel_shape" not in attrs and "dilations" not in attrs
            assert attrs.get("strides", [2]) == [2]  # only the resnet's downsampling convs
        if node.op_type == "MaxPool":  # no default for a pool's kernel: it must stay
            assert attrs["kernel_shape"] == [2]
    ops = fused_ops(out, tmp_path)  # Conv1d QDQ runs as ORT's QLinearConv
    convs = Counter(n.op_type for n in onnx.load(str(paths[arch])).graph.node)["Conv"]
    assert ops["QLinearConv"] == convs and "Conv" not in ops and ops["QGemm"] == 1
    assert run_logits(session(out), signals["test"][0][:5]).shape == (5, 3)


def test_compact_is_lossless_on_1d_convs(signal_fp32, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from slimline.compression.runtime.calibration import batch_reader
    from slimline.compression.runtime.onnx_io import file_feeds

    paths, signals = signal_fp32
    pre, raw, small = tmp_path / "pre.onnx", tmp_path / "raw.onnx", tmp_path / "small.onnx"
    quant_pre_process(str(paths["cnn"]), str(pre))
    reader = batch_reader(signals["train"][0][:64], file_feeds(pre))
    quantize_static(str(pre), str(raw), reader, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)  # fmt: skip
    onnx.save(compact(onnx.load(str(raw))), str(small))
    x = signals["test"][0]
    np.testing.assert_array_equal(run_logits(session(small), x), run_logits(session(raw), x))
    for node in onnx.load(str(small)).graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":  # 1-D defaults gone, the non-default pads kept
            assert "kernel_shape" not in attrs and "strides" not in attrs
            assert attrs.get("pads") == [1, 1]
        if node.op_type == "MaxPool":
            assert attrs["kernel_shape"] == [2] and attrs["strides"] == [2]


def test_native_on_a_vnni_cpu_is_8_bit_u8s8_and_says_what_it_needs(cnn_fp32, digits, tmp_path):
    from slimline.compression.runtime.onnx_io import read_metadata

    vnni = {"model": "test", "instruction_sets": {"AVX2": True, "AVX-512 VNNI": True}}
    (xtr, ytr), (xv, yv), (xt, yt) = digits["train"], digits["val"], digits["test"]
    calib_x, _ = stratified_sample(xtr, ytr, 64, seed=0)
    out = tmp_path / "native.onnx"
    # no fallback: on a CPU without VNNI (this one may be) the 8-bit model can saturate and
    # the fallback would keep convs in FP32; the file's format is the point here
    q = Quantize(target="native", max_excluded_nodes=0)
    report = quantize(cnn_fp32, out, calib_x=calib_x, val_x=xv, val_y=yv, test_x=xt, test_y=yt,
                      q=q, cpu=vnni)  # fmt: skip
    assert (report["weight_type"], report["reduce_range"]) == ("QInt8", False)
    assert report["requires"] == ["AVX-512 VNNI"]
    meta = read_metadata(out)
    assert meta["int8_target"] == "native" and json.loads(meta["int8_requires"]) == ["AVX-512 VNNI"]
    graph = onnx.load(str(out)).graph  # 8-bit signed weights: some reach beyond 7 bits
    weights = [numpy_helper.to_array(t) for t in graph.initializer
               if t.data_type == TensorProto.INT8 and t.dims]  # fmt: skip
    assert weights and max(int(np.abs(w).max()) for w in weights) == 127
