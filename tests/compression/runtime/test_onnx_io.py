"""ONNX export, parity, sessions and metadata, on tiny torch models of our own."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from slimline.compression.runtime.onnx_io import (
    OnnxError,
    ParityError,
    add_metadata,
    check_parity,
    export_onnx,
    read_metadata,
    run_logits,
    session,
)

SHAPE = (1, 8, 8)


class ResidualCNN(nn.Module):
    """conv + BatchNorm + a residual add, like the pipeline's students."""

    def __init__(self, c: int = 8, k: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))
        self.head = nn.Linear(c, k)

    def forward(self, x):  # (B, 1, 8, 8) -> (B, K)
        h = self.stem(x)
        return self.head(torch.relu(h + self.block(h)).mean((2, 3)))


class Broken(nn.Module):
    def forward(self, x):
        raise RuntimeError("cannot trace me")


def _cnn() -> ResidualCNN:
    torch.manual_seed(0)
    model = ResidualCNN()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding them is tested
        for bn in (model.stem[1], model.block[1]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _cnn()
    path = tmp_path_factory.mktemp("onnx") / "cnn.onnx"
    export_onnx(model, SHAPE, path, opset=20)
    return model, path


def _x(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)


def test_export_has_contract_names_dynamic_batch_and_one_file(exported):
    _, path = exported
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert sorted(p.name for p in path.parent.iterdir()) == ["cnn.onnx"]  # no .data, no temp
    sess = session(path)
    for batch in (1, 7):
        assert run_logits(sess, _x(batch)).shape == (batch, 10)


def test_export_strips_debug_metadata_and_restores_training_mode(exported, tmp_path):
    _, path = exported
    proto = onnx.load(str(path))
    assert not any(n.metadata_props for n in proto.graph.node)  # no stack traces / local paths
    assert not proto.graph.metadata_props  # nor torch.export's graph signature
    model = _cnn().train()
    export_onnx(model, SHAPE, tmp_path / "again.onnx")
    assert model.training
    # same weights, same bytes: the file does not depend on where the code lives
    assert (tmp_path / "again.onnx").read_bytes() == path.read_bytes()


def test_failed_export_keeps_previous_file(exported, tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(Exception, match="cannot trace me"):
        export_onnx(Broken(), SHAPE, target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_parity_within_tolerance(exported):
    model, path = exported
    diff = check_parity(model, path, _x(64), atol=1e-4)
    assert 0 <= diff < 1e-4


def test_parity_error_names_file_diff_and_tolerance(exported):
    _, path = exported
    other = ResidualCNN()  # different weights: outputs cannot match
    with pytest.raises(ParityError, match=r"cnn\.onnx.*differ.*tolerance 1e-06"):
        check_parity(other, path, _x(8), atol=1e-6)


def test_run_logits_batches_agree(exported):
    _, path = exported
    sess, x = session(path), _x(7)
    np.testing.assert_array_equal(run_logits(sess, x, batch_size=3), run_logits(sess, x))


def test_missing_and_corrupt_files_raise_onnx_error(exported, tmp_path):
    _, path = exported
    with pytest.raises(OnnxError, match="nope.onnx: ONNX file not found"):
        session(tmp_path / "nope.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 this is not protobuf \xff" * 10)
    with pytest.raises(OnnxError, match="garbage.onnx"):
        session(garbage)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(OnnxError, match="truncated.onnx"):
        session(truncated)
    with pytest.raises(OnnxError, match="nope.onnx"):
        read_metadata(tmp_path / "nope.onnx")


def test_metadata_roundtrip_keeps_entries_and_outputs(exported, tmp_path):
    _, path = exported
    first, second = tmp_path / "first.onnx", tmp_path / "second.onnx"
    add_metadata(path, first, {"class_names": '["0", "1"]', "git_commit": "abc"})
    add_metadata(first, second, {"params_sha256": "f00", "git_commit": "def"})
    assert read_metadata(second) == {
        "class_names": '["0", "1"]',
        "git_commit": "def",  # updated in place, not duplicated
        "params_sha256": "f00",
    }
    assert session(second).get_modelmeta().custom_metadata_map["params_sha256"] == "f00"
    x = _x(16)
    np.testing.assert_array_equal(run_logits(session(second), x), run_logits(session(path), x))
    with pytest.raises(TypeError, match="must be str"):
        add_metadata(path, first, {"epochs": 3})


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_1d_signal_models_export_with_dynamic_batch_and_parity(arch, tmp_path):
    from slimline.compression.models.families import build_model
    from slimline.core.params.models import ModelSpec

    torch.manual_seed(0)
    shape = (2, 64)  # (C, L) signals: Conv1d / BatchNorm1d / MaxPool1d
    spec = ModelSpec(arch=arch, width=8, depth=2, epochs=1, lr=0.01, batch_size=8)
    model = build_model(spec, shape, 3).train()
    with torch.no_grad():  # BatchNorm statistics that are not the defaults, so folding is tested
        for _ in range(3):
            model(torch.randn(16, *shape) * 2 + 0.5)
    path = tmp_path / f"{arch}.onnx"
    export_onnx(model, shape, path)
    proto = onnx.load(str(path))
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert convs and all(
        len(onnx.helper.get_attribute_value(a)) == 1
        for n in convs
        for a in n.attribute
        if a.name == "kernel_shape"
    )  # 1-D kernels, not 2-D ones of height 1
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    rng = np.random.default_rng(1)
    for batch in (1, 64):
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        assert check_parity(model, path, x, atol=1e-4) < 1e-4
        assert run_logits(session(path), x).shape == (batch, 3)
