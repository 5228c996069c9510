"""Quantization-aware fine-tuning: torch's fake-quant ops, the PTQ / QAT choice, the report.

The hard case: a trained CNN whose most active last-layer channel is scaled x1000 (BatchNorm
weight and bias) and the classifier's weights on it /1000, in the checkpoint itself. The FP32
function is unchanged, but that channel swamps the uint8 grid of the tensor, so PTQ collapses;
with no FP32 node allowed (max_excluded_nodes 0) only QAT can bring it back.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from slimline.compression.data.dataset import Split
from slimline.compression.models.families import build_model
from slimline.compression.runtime.calibration import stratified_sample
from slimline.compression.runtime.int8_target import Int8Target
from slimline.compression.runtime.onnx_io import export_onnx, run_logits, session
from slimline.compression.runtime.quantize import QatUnavailable, _Attempt, _choose, quantize
from slimline.compression.training.fit import fit, make_kd_loss, predict_logits
from slimline.compression.training.qat import QatTarget, finetune_qat
from slimline.compression.training.setup import Setup
from slimline.core.errors import InputError
from slimline.core.params.models import ModelSpec
from slimline.core.params.release import Quantize
from tests.support.onnx_graphs import REPORT_KEYS, fused_ops

DECISION_KEYS = {"path", "path_reason", "ptq", "qat"}
SUMMARY_KEYS = {"val_accuracy", "drop", "within_bound", "excluded_nodes", "size_bytes"}


def _split(x: np.ndarray, y: np.ndarray) -> Split:
    names = [str(k) for k in range(10)]
    return Split(x, y, names, np.zeros(1, np.float32), np.ones(1, np.float32), 1.0)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Digits splits, a trained CNN (the teacher's logits come from it), its outlier twin and
    both exported; one thread throughout (see test_quantize._train)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:, None] / 16.0).astype(np.float32)
    x = (x - x.mean()) / x.std()
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(x))
    train, val, test = (_split(x[i], y[i]) for i in (idx[:1000], idx[1000:1400], idx[1400:]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        spec = ModelSpec(arch="cnn", width=8, depth=2, epochs=8, lr=0.01, batch_size=64)
        model = build_model(spec, (1, 8, 8), 10)
        fit(model, Setup.of(spec, train, val, seed=0))
        kd = make_kd_loss(predict_logits(model, train.x), temperature=4.0, alpha=0.7)
        outlier = copy.deepcopy(model)
        norm = [m for m in outlier.features if isinstance(m, nn.BatchNorm2d)][-1]
        with torch.no_grad():
            ch = int(outlier.features(torch.from_numpy(val.x)).mean(dim=(0, 2, 3)).argmax())
            norm.weight[ch] *= 1000.0
            norm.bias[ch] *= 1000.0
            outlier.fc.weight[:, ch] /= 1000.0
        folder = tmp_path_factory.mktemp("qat")
        export_onnx(model, (1, 8, 8), folder / "plain.onnx")
        export_onnx(outlier, (1, 8, 8), folder / "outlier.onnx")
    finally:
        torch.set_num_threads(threads)
    calib_x, _ = stratified_sample(train.x, train.y, 256, seed=0)
    splits = {"train": train, "val": val, "test": test}
    models = {"plain": model, "outlier": outlier}
    return {"splits": splits, "models": models, "kd": kd, "calib_x": calib_x, "dir": folder}


def _qat_fn(case, name: str, calls: list | None = None):
    def finetune(out: Path, fmt: Int8Target) -> dict:
        if calls is not None:
            calls.append(out)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            target = QatTarget(case["calib_x"], per_channel=True, weight_grid=fmt.weight_grid)
            setup = _setup(case, epochs=6)
            return finetune_qat(case["models"][name], setup, case["kd"], target, out)
        finally:
            torch.set_num_threads(threads)

    return finetune


def _setup(case, epochs: int) -> Setup:
    s = case["splits"]
    return Setup(s["train"], s["val"], epochs=epochs, lr=0.005, batch_size=64,
                 weight_decay=1e-4, seed=0)  # fmt: skip


def _run(case, name: str, out: Path, qat_fn=None, **q):
    s = case["splits"]
    return quantize(
        case["dir"] / f"{name}.onnx", out, calib_x=case["calib_x"], val_x=s["val"].x,
        val_y=s["val"].y, test_x=s["test"].x, test_y=s["test"].y, q=Quantize(**q), qat=qat_fn,
    )  # fmt: skip


def _never_called(out: Path, fmt: Int8Target) -> dict:
    raise AssertionError("QAT ran")


def test_torch_fake_quant_ops_round_and_pass_gradients_straight_through():
    x = torch.linspace(-3, 3, 13, requires_grad=True)
    y = torch.fake_quantize_per_tensor_affine(x, 0.01, 100, 0, 255)  # range [-1, 1.55]
    y.sum().backward()
    assert float(y.detach().min()) == pytest.approx(-1.0)
    assert float(y.detach().max()) == pytest.approx(1.55)
    inside = (x.detach() >= -1.0) & (x.detach() <= 1.55)
    assert torch.equal(x.grad, inside.float())  # straight through inside, 0 where clamped
    # onnxruntime's symmetric INT8 weights: [-127, 127], scale max|w| / 127 per channel
    w = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    scale, zero = w.detach().abs().amax(1) / 127, torch.zeros(4, dtype=torch.int32)
    q = torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)
    q.sum().backward()
    assert bool(((q - w).abs() <= scale[:, None] / 2 + 1e-7).all())
    assert torch.equal(w.grad, torch.ones_like(w))  # every weight inside: all pass through
    # with [-128, 127] and max|w| / 127.5 the largest weight rounds to 128 and is clamped
    w.grad = None
    torch.fake_quantize_per_channel_affine(w, w.detach().abs().amax(1) / 127.5, zero, 0, -128,
                                           127).sum().backward()  # fmt: skip
    assert float(w.grad.sum()) < w.numel()


def test_auto_runs_qat_when_ptq_collapses_and_qat_is_within_bound(case, tmp_path):
    out = tmp_path / "int8.onnx"
    report = _run(case, "outlier", out, _qat_fn(case, "outlier"), max_excluded_nodes=0)
    assert set(report) == REPORT_KEYS | DECISION_KEYS
    ptq, qat = report["ptq"], report["qat"]
    assert set(SUMMARY_KEYS) <= set(ptq) and set(SUMMARY_KEYS) <= set(qat)
    assert not ptq["within_bound"] and ptq["drop"] > 0.3  # plain INT8 collapsed
    assert qat["within_bound"] and qat["drop"] <= 0.01
    assert report["path"] == "qat" and report["within_bound"]
    assert report["path_reason"].startswith(f"ptq drop {ptq['drop']:.4f} with 0 nodes in FP32")
    assert "within bound" in report["path_reason"]
    assert qat["epochs"] == 6 and qat["lr"] == 0.005
    (clip,) = qat["clips"]  # only the outlier tensor is clipped, far below its FP32 max
    assert clip["site"] == "features.6:output" and clip["clip"] < clip["observed_max"] / 50
    assert report["int8_val_accuracy"] == qat["val_accuracy"]
    assert report["int8_size_bytes"] == out.stat().st_size == qat["size_bytes"]
    assert report["int8_accuracy"] >= report["fp32_accuracy"] - 0.03  # test split too
    assert report["agreement"] >= 0.9
    ops = Counter(n.op_type for n in onnx.load(str(out)).graph.node)  # a QDQ model, as PTQ's
    assert ops["QuantizeLinear"] >= 3 and ops["DequantizeLinear"] >= 6
    assert run_logits(session(out), case["splits"]["test"].x[:7]).shape == (7, 10)
    # the clip became the Q's range (no Clip node), and ORT still fuses every conv as PTQ's
    assert "Clip" not in ops
    fused = fused_ops(out, tmp_path)
    assert fused["QLinearConv"] == 2 and fused["QGemm"] == 1 and "Conv" not in fused


def test_never_keeps_ptq_and_the_report_unchanged(case, tmp_path):
    report = _run(case, "outlier", tmp_path / "int8.onnx", _never_called,
                  max_excluded_nodes=0, qat="never")  # fmt: skip
    assert set(report) == REPORT_KEYS
    assert not report["within_bound"]
    assert report["int8_val_accuracy"] < report["fp32_val_accuracy"] - 0.3


def test_auto_does_not_run_qat_when_ptq_is_within_bound(case, tmp_path):
    # the fallback (FP32 nodes) is enough here: byte-identical to qat never, same report
    auto, never = tmp_path / "auto.onnx", tmp_path / "never.onnx"
    report = _run(case, "outlier", auto, _never_called)
    assert report["within_bound"] and report["excluded_nodes"]
    assert report == _run(case, "outlier", never, None, qat="never")
    assert set(report) == REPORT_KEYS
    assert auto.read_bytes() == never.read_bytes()


def test_always_runs_qat_and_picks_by_the_rule(case, tmp_path):
    calls: list = []
    out = tmp_path / "int8.onnx"
    report = _run(case, "plain", out, _qat_fn(case, "plain", calls), qat="always")
    assert len(calls) == 1 and set(report) == REPORT_KEYS | DECISION_KEYS
    ptq, qat = report["ptq"], report["qat"]
    assert ptq["within_bound"]  # a plain model: PTQ is fine; QAT ran because asked
    if qat["within_bound"] and qat["size_bytes"] < ptq["size_bytes"]:
        assert report["path"] == "qat"
    else:
        assert report["path"] == "ptq"
    chosen = report[report["path"]]
    assert report["int8_size_bytes"] == out.stat().st_size == chosen["size_bytes"]
    assert report["int8_val_accuracy"] == chosen["val_accuracy"]
    assert report["path_reason"].startswith(f"both within 0.01 (ptq drop {ptq['drop']:.4f}")
    assert report["within_bound"]


def _attempt(tmp_path: Path, name: str, size: int, acc: float, within: bool) -> _Attempt:
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(b"x" * size)
    best = {"path": path, "val_accuracy": acc, "excluded": []}
    return _Attempt(None, best, [best], [], 0.9 - acc, within)


@pytest.mark.parametrize(
    ("ptq", "qat", "path"),
    [
        ((100, 0.89, True), (90, 0.89, True), "qat"),  # both within: the smaller
        ((100, 0.89, True), (100, 0.895, True), "ptq"),  # same size: PTQ
        ((100, 0.5, False), (120, 0.89, True), "qat"),  # only QAT within, even if larger
        ((100, 0.89, True), (80, 0.5, False), "ptq"),  # only PTQ within
        ((100, 0.5, False), (100, 0.6, False), "qat"),  # neither: the more accurate
        ((100, 0.6, False), (90, 0.6, False), "ptq"),  # neither, a tie: PTQ
    ],
)
def test_choice_rule(tmp_path, ptq, qat, path):
    chosen, why = _choose(_attempt(tmp_path, "p", *ptq), _attempt(tmp_path, "q", *qat), Quantize())
    assert chosen == path, why


def test_qat_unavailable_keeps_ptq_and_says_why(case, tmp_path):
    def unavailable(out: Path, fmt: Int8Target) -> dict:
        raise QatUnavailable("models/pruned.pt is not the model in models/onnx/pruned.onnx")

    report = _run(case, "outlier", tmp_path / "int8.onnx", unavailable, max_excluded_nodes=0)
    assert report["path"] == "ptq" and "qat" not in report
    assert report["path_reason"].startswith("qat not run: models/pruned.pt is not the model")
    assert not report["within_bound"]


@pytest.mark.parametrize("settings", [{"mode": "dynamic", "calibration_samples": 0}])
def test_always_needs_static_int8(case, tmp_path, settings):
    out = tmp_path / "int8.onnx"
    with pytest.raises(InputError, match="quantize.qat: always fine-tunes for static INT8"):
        _run(case, "plain", out, _never_called, qat="always", **settings)
    assert not out.exists()
    report = _run(case, "plain", out, _never_called, qat="auto", **settings)  # auto: no QAT
    assert "path" not in report
    # no fine-tuning given (the benchmark's dynamic reference): PTQ, whatever qat says
    assert "path" not in _run(case, "plain", out, None, qat="always", **settings)


def test_qat_param_is_validated():
    from pydantic import ValidationError

    assert Quantize().qat == "auto"
    assert Quantize(qat="always").qat == "always"
    with pytest.raises(ValidationError, match="qat"):
        Quantize(qat="sometimes")


def test_qat_runs_on_a_resnet_and_exports_a_model_ort_runs(case, tmp_path):
    # residual adds and functional ReLUs: the sites are the conv inputs and the nn.ReLU outputs
    s = case["splits"]
    torch.manual_seed(0)
    spec = ModelSpec(arch="resnet", width=4, depth=1, epochs=1, lr=0.01, batch_size=64)
    model = build_model(spec, (1, 8, 8), 10)
    out = tmp_path / "qat_fp32.onnx"
    target = QatTarget(case["calib_x"], per_channel=False)
    done = finetune_qat(model, _setup(case, epochs=1), case["kd"], target, out)
    assert done["epochs"] == 1 and not done["per_channel"]
    assert all(c["clip"] < c["observed_max"] for c in done["clips"])
    assert run_logits(session(out), s["val"].x[:3]).shape == (3, 10)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in model.modules())


@pytest.mark.parametrize("target", ["portable", "native"])
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("vnni", [True, False])
def test_fake_quant_weights_are_the_ones_onnxruntime_ships(target, per_channel, vnni):
    # QAT is worth only what onnxruntime keeps of it: the fake-quantized weights must be
    # onnxruntime's own round trip of the same weights, in each target's format (per-channel
    # weights are symmetric whatever their type; per-tensor uint8 ones asymmetric)
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import compute_data_quant_params, quantize_nparray

    from slimline.compression.runtime.int8_target import choose
    from slimline.compression.training.qat import _WeightFakeQuant

    cpu = {"model": "test", "instruction_sets": {"AVX2": True, "AVX-512 VNNI": vnni}}
    fmt = choose(target, cpu)
    qtype = TensorProto.UINT8 if fmt.weight_type == "QUInt8" else TensorProto.INT8
    w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(1)) * 0.3 + 0.05
    fake = _WeightFakeQuant(per_channel, fmt.weight_grid)(w).numpy()

    def ort(data: np.ndarray) -> np.ndarray:
        symmetric = per_channel or qtype == TensorProto.INT8
        zero, scale = compute_data_quant_params(data, qtype, symmetric, fmt.reduce_range)
        q = quantize_nparray(qtype, data, scale, zero).astype(np.float32)
        return (q - np.float32(zero)) * np.float32(scale)

    x = w.numpy()
    expected = np.stack([ort(c) for c in x]) if per_channel else ort(x)
    np.testing.assert_allclose(fake, expected, rtol=0, atol=1e-6)
