"""Pretrained ONNX teachers built the way users build them: a torch family slimline does not
have, exported to ONNX; a scikit-learn model converted with skl2onnx. Each is checked against
the data, imported, run as a torch module and saved; each unusable file is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from slimline.compression.data.dataset import Split
from slimline.compression.data.normalize import standardize
from slimline.compression.data.sources import load_source
from slimline.compression.data.split import split
from slimline.compression.models.onnx_teacher import (
    TeacherError,
    TeacherFeed,
    inspect_teacher,
    teacher_logits,
    to_logits,
)
from slimline.compression.models.teacher import OnnxTeacher, load_teacher, save_teacher
from slimline.compression.training.fit import predict_logits
from slimline.core.errors import InputError
from slimline.core.params.inputs import Data


@pytest.fixture(scope="module")
def digits() -> tuple[Split, Split]:
    ds = load_source(Data(), Path())
    parts, mean, std = standardize(split(ds, Data(), seed=0))
    train, test = (Split(*parts[k], ds.class_names, mean, std, ds.scale) for k in ("train", "test"))
    return train, test


def stats(s: Split) -> tuple[np.ndarray, np.ndarray, float]:
    return s.mean, s.std, s.scale


class GeluNet(nn.Module):
    """Flatten, LayerNorm and GELU: a family slimline does not build."""

    def __init__(self, outputs: int = 10, softmax: bool = False):
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 48), nn.LayerNorm(48), nn.GELU(), nn.Linear(48, outputs)
        )
        self.softmax = softmax

    def forward(self, x):
        out = self.body(x)
        return out.softmax(dim=1) if self.softmax else out


def trained_gelu(train: Split, **kwargs) -> GeluNet:
    torch.manual_seed(0)
    net = GeluNet(**kwargs)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(net.body(x), y).backward()
        opt.step()
    return net.eval()


def export(net: nn.Module, path: Path, example: torch.Tensor, dynamic: bool = True) -> Path:
    shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic else None
    torch.onnx.export(net, (example,), str(path), dynamo=True, dynamic_shapes=shapes)
    return path


@pytest.fixture(scope="module")
def torch_teacher(digits, tmp_path_factory) -> tuple[Path, GeluNet]:
    train, _ = digits
    net = trained_gelu(train)
    path = tmp_path_factory.mktemp("torch") / "gelu.onnx"
    return export(net, path, torch.from_numpy(train.x[:2])), net


def test_a_torch_family_slimline_lacks_teaches_like_its_torch_self(digits, torch_teacher, tmp_path):
    train, test = digits
    path, net = torch_teacher
    interface, model = inspect_teacher(path, train.x[:256], 10, "prepared", stats(train))
    assert interface.output == "logits" and interface.fixed_batch is None
    assert interface.sample_shape == (1, 8, 8)
    assert Path(f"{path}.data").is_file()  # torch's exporter keeps the weights beside the file
    assert len(model) > 4 * 3706  # ...which the imported model holds inside
    weights = sum(p.numel() for p in net.parameters())
    assert weights <= interface.params <= weights + 8  # + the exporter's shape constants
    teacher = OnnxTeacher(model, TeacherFeed(interface, *stats(train)))
    with torch.no_grad():
        expected = net(torch.from_numpy(test.x)).numpy()
    np.testing.assert_allclose(predict_logits(teacher, test.x), expected, atol=1e-4)
    assert (expected.argmax(1) == test.y).mean() > 0.9  # a real teacher, not noise

    checkpoint = tmp_path / "teacher.pt"
    save_teacher(checkpoint, model, teacher.feed)
    loaded = load_teacher(checkpoint)
    assert isinstance(loaded, OnnxTeacher) and loaded.feed == teacher.feed
    np.testing.assert_array_equal(predict_logits(loaded, test.x), predict_logits(teacher, test.x))


def test_a_scikit_learn_model_on_raw_flat_pixels_is_fed_raw_values(digits, tmp_path):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    train, test = digits
    raw = lambda s: (s.x * s.std.reshape(1, -1, 1, 1) + s.mean.reshape(1, -1, 1, 1)) * s.scale  # noqa: E731
    x_raw = raw(train).reshape(len(train.x), 64).astype(np.float32)
    assert x_raw.max() == pytest.approx(16, abs=1e-3)  # digits' own 0..16 pixel values
    model = LogisticRegression(max_iter=2000).fit(x_raw, train.y)
    path = tmp_path / "logreg.onnx"
    path.write_bytes(to_onnx(model, x_raw[:1], options={"zipmap": False}).SerializeToString())

    interface, onnx_bytes = inspect_teacher(path, train.x[:256], 10, "raw", stats(train))
    assert interface.output == "probabilities"
    assert interface.output_name == "probabilities"  # not the int64 label output
    assert interface.sample_shape == (64,)
    assert any("probabilities, not logits" in n for n in interface.notes())
    teacher = OnnxTeacher(onnx_bytes, TeacherFeed(interface, *stats(train)))
    logits = predict_logits(teacher, test.x)
    x_test = raw(test).reshape(len(test.x), 64).astype(np.float32)
    np.testing.assert_allclose(logits, to_logits(model.predict_proba(x_test)), atol=1e-4)
    assert (logits.argmax(1) == model.predict(x_test)).all()
    # the gates score the kept file the same way, from what metrics/teacher.json records
    kept = tmp_path / "teacher.onnx"
    kept.write_bytes(onnx_bytes)
    metrics = {"source": "onnx", "interface": interface.as_dict()}
    gated = teacher_logits(kept, metrics, test)
    np.testing.assert_allclose(gated, logits, atol=1e-5)

    # read as prepared values, the same model is a poor teacher: the mode matters
    prepared, _ = inspect_teacher(path, train.x[:256], 10, "prepared", stats(train))
    wrong = OnnxTeacher(onnx_bytes, TeacherFeed(prepared, *stats(train)))
    assert (predict_logits(wrong, test.x).argmax(1) == test.y).mean() < (
        logits.argmax(1) == test.y
    ).mean()


def test_probabilities_and_a_fixed_batch_are_accepted_and_said(digits, tmp_path):
    train, test = digits
    net = trained_gelu(train, softmax=True)
    path = export(net, tmp_path / "fixed.onnx", torch.from_numpy(train.x[:1]), dynamic=False)
    interface, model = inspect_teacher(path, train.x[:256], 10, "prepared", stats(train))
    assert interface.fixed_batch == 1 and interface.output == "probabilities"
    notes = " ".join(interface.notes())
    assert "no dynamic batch axis" in notes and "one sample per call" in notes
    teacher = OnnxTeacher(model, TeacherFeed(interface, *stats(train)))
    logits = predict_logits(teacher, test.x[:37])  # 37 calls of one sample
    with torch.no_grad():
        expected = net(torch.from_numpy(test.x[:37])).numpy()
    np.testing.assert_allclose(logits, to_logits(expected), atol=1e-4)


def test_a_fixed_batch_above_one_is_padded_and_cut(digits, tmp_path):
    train, test = digits
    net = trained_gelu(train)
    path = export(net, tmp_path / "b8.onnx", torch.from_numpy(train.x[:8]), dynamic=False)
    interface, model = inspect_teacher(path, train.x[:20], 10, "prepared", stats(train))
    assert interface.fixed_batch == 8
    feed = TeacherFeed(interface, *stats(train))
    assert [n for _, n in feed.batches(test.x[:20])] == [8, 8, 4]
    with torch.no_grad():
        expected = net(torch.from_numpy(test.x[:20])).numpy()
    teacher = OnnxTeacher(model, feed)
    np.testing.assert_allclose(predict_logits(teacher, test.x[:20]), expected, atol=1e-4)


def graph_model(inputs, outputs, nodes, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def identity_model(shape, elem=TensorProto.FLOAT, out_shape=None) -> onnx.ModelProto:
    return graph_model(
        [helper.make_tensor_value_info("x", elem, shape)],
        [helper.make_tensor_value_info("y", elem, out_shape or shape)],
        [helper.make_node("Identity", ["x"], ["y"])],
    )


def refused(path: Path, train: Split, num_classes: int = 10) -> str:
    with pytest.raises(TeacherError) as e:
        inspect_teacher(path, train.x[:64], num_classes, "prepared", stats(train))
    assert isinstance(e.value, InputError)  # exit 2
    assert str(path) in str(e.value)
    return str(e.value)


def save(proto: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(proto.SerializeToString())
    return path


def test_unusable_teachers_are_refused_naming_the_file_and_what_was_expected(digits, tmp_path):
    train, _ = digits
    missing = refused(tmp_path / "absent.onnx", train)
    assert "not found" in missing

    (tmp_path / "notes.onnx").write_text("this is a text file, not a model")
    assert "not an ONNX file" in refused(tmp_path / "notes.onnx", train)

    dangling = graph_model(
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        [helper.make_node("Add", ["x", "nowhere"], ["y"])],
    )
    assert "fails the ONNX checker" in refused(save(dangling, tmp_path / "bad.onnx"), train)

    wrong_shape = save(identity_model(["n", 32]), tmp_path / "shape.onnx")
    message = refused(wrong_shape, train)
    assert "[?, 32]" in message and "[batch, 1, 8, 8] or [batch, 64]" in message

    integers = save(identity_model(["n", 64], TensorProto.INT64), tmp_path / "int.onnx")
    assert "token ids: a text teacher" in refused(integers, train)
    halves = save(identity_model(["n", 64], TensorProto.FLOAT16), tmp_path / "half.onnx")
    assert "float32 or float64" in refused(halves, train)


def test_an_output_that_is_not_one_score_per_class_is_refused(digits, tmp_path):
    train, _ = digits
    seven = export(GeluNet(outputs=7).eval(), tmp_path / "seven.onnx", torch.zeros(2, 1, 8, 8))
    message = refused(seven, train)
    assert "must be (batch, 10)" in message and "(64, 7)" in message


def test_a_scikit_learn_zipmap_output_gets_the_converter_option_to_use(digits, tmp_path):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    train, _ = digits
    flat = train.x.reshape(len(train.x), 64)
    model = LogisticRegression(max_iter=500).fit(flat, train.y)
    path = save(to_onnx(model, flat[:1]), tmp_path / "zipmap.onnx")  # the converter's default
    assert "options={'zipmap': False}" in refused(path, train)
