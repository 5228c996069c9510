"""`slimline predict` on a model with slimline's metadata, made here from a tiny torch net."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from slimline.compression.release.predict import predict
from slimline.compression.runtime.onnx_io import (
    add_metadata,
    export_onnx,
    read_metadata,
    run_logits,
    session,
)
from slimline.core.errors import InputError
from tests.support.data import write_table
from tests.support.params import write_params


def first_half_minus_second() -> nn.Module:
    """16 inputs, flattened; class 1 when the first 8 sum higher than the last 8."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].weight[1, :8], net[1].weight[1, 8:] = 1.0, -1.0
        net[1].bias.zero_()
    return net


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A 'classifier' of (1, 4, 4) images: class = whether the top half is brighter."""
    net = first_half_minus_second()
    tmp = tmp_path_factory.mktemp("predict")
    export_onnx(net, (1, 4, 4), tmp / "raw.onnx", 20)
    meta = {
        "class_names": json.dumps(["bottom", "top"]),
        "input_shape": json.dumps([1, 4, 4]),
        "normalization": json.dumps({"mean": [0.0], "std": [1.0], "scale": 255.0}),
    }
    add_metadata(tmp / "raw.onnx", tmp / "model.onnx", meta)
    return tmp / "model.onnx"


def test_npz_with_labels(model_path, tmp_path):
    x = np.zeros((4, 4, 4), np.uint8)
    x[:2, :2], x[2:, 2:] = 255, 255  # two top-bright, two bottom-bright
    np.savez(tmp_path / "d.npz", x=x, y=np.array([1, 1, 0, 0]))
    out = predict(model_path, tmp_path / "d.npz")
    assert out.names == ["top", "top", "bottom", "bottom"] and out.accuracy == 1.0
    assert np.all(out.confidence > 0.9)


def test_png_image_through_the_cli(model_path, tmp_path):
    from PIL import Image

    pixels = np.zeros((8, 8), np.uint8)
    pixels[4:] = 255  # bottom half bright; resized to 4x4
    Image.fromarray(pixels, mode="L").save(tmp_path / "img.png")
    image = tmp_path / "img.png"
    cmd = [sys.executable, "-m", "slimline.cli", "predict", str(model_path), str(image)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\t")[:2] == ["0", "bottom"]


def test_bad_inputs_name_the_file(model_path, tmp_path):
    with pytest.raises(InputError, match="nothing.npz: file not found"):
        predict(model_path, tmp_path / "nothing.npz")
    np.savez(tmp_path / "wrong.npz", x=np.zeros((2, 5, 5)))
    with pytest.raises(InputError, match=r"wrong.npz: x must be \(N, \(1, 4, 4\)\)"):
        predict(model_path, tmp_path / "wrong.npz")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="notes.txt: expected .png"):
        predict(model_path, tmp_path / "notes.txt")


@pytest.fixture(scope="module")
def table_model(tmp_path_factory):
    """A model of a table with feature columns a, b, c (standardized with mean 3, 2, 1 and
    std 2) and target `label`: class `yes` when the standardized a + b - c is positive."""
    net = nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, -1.0]]))
        net.bias.zero_()
    tmp = tmp_path_factory.mktemp("table_model")
    export_onnx(net, (3,), tmp / "raw.onnx", 20)
    meta = {
        "class_names": json.dumps(["no", "yes"]),
        "input_shape": json.dumps([3]),
        "normalization": json.dumps({"mean": [3.0, 2.0, 1.0], "std": [2.0] * 3, "scale": 1.0}),
        "feature_names": json.dumps(["a", "b", "c"]),
        "target": "label",
    }
    add_metadata(tmp / "raw.onnx", tmp / "model.onnx", meta)
    return tmp / "model.onnx"


def rows(n: int = 40, seed: int = 0):
    """Raw feature rows and the class the table model gives them."""
    import pandas as pd

    raw = np.random.default_rng(seed).normal(2.0, 3.0, (n, 3))
    z = (raw - [3.0, 2.0, 1.0]) / 2.0
    labels = np.where(z[:, 0] + z[:, 1] - z[:, 2] > 0, "yes", "no")
    return pd.DataFrame(raw, columns=["a", "b", "c"]), labels


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_rows_by_column_name_with_labels(table_model, tmp_path, suffix):
    frame, labels = rows()
    assert 0.2 < np.mean(labels == "yes") < 0.8  # both classes: accuracy means something
    # columns in another order than the model's, the target in the middle
    table = frame[["c", "a"]].assign(label=labels, b=frame["b"])
    out = predict(table_model, write_table(table, tmp_path / f"rows{suffix}"))
    assert out.names == labels.tolist() and out.accuracy == 1.0
    assert out.labels is not None and out.labels.tolist() == (labels == "yes").astype(int).tolist()
    unlabelled = predict(table_model, write_table(frame, tmp_path / f"plain{suffix}"))
    assert unlabelled.labels is None and unlabelled.names == labels.tolist()


def test_table_with_other_columns_exits_2_naming_them(table_model, tmp_path):
    frame, _ = rows()
    path = write_table(frame.drop(columns=["c"]).assign(d=1.0), tmp_path / "other.csv")
    with pytest.raises(InputError) as info:
        predict(table_model, path)
    assert str(info.value).startswith(
        f"{path}: columns differ from the model's: missing ['c'], extra ['d'] "
        "(expected the feature columns ['a', 'b', 'c'] and optionally the target 'label')"
    )
    cmd = [sys.executable, "-m", "slimline.cli", "predict", str(table_model), str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "missing ['c'], extra ['d']" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("text", "non-numeric feature columns ['b'] (expected numbers; encode them first)"),
        ("missing", "missing values in columns ['a', 'label'] (empty cells per column: "
                    "{'a': 2, 'label': 1}"),
        ("unknown_label", "target column 'label' holds values that are not the model's "
                          "classes: ['maybe'] (classes: ['no', 'yes'])"),
    ],
)  # fmt: skip
def test_table_values_are_checked_as_prepare_checks_them(table_model, tmp_path, change, message):
    frame, labels = rows()
    frame["label"] = labels
    if change == "text":
        frame["b"] = "x"
    elif change == "missing":
        frame.loc[[1, 2], "a"] = np.nan
        frame.loc[3, "label"] = None
    else:
        frame.loc[5, "label"] = "maybe"
    path = write_table(frame, tmp_path / "rows.parquet")
    with pytest.raises(InputError) as info:
        predict(table_model, path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_table_needs_a_model_trained_on_a_table(model_path, tmp_path):
    path = write_table(rows()[0], tmp_path / "rows.csv")
    with pytest.raises(InputError, match="rows.csv: a table, but the model's metadata names no"):
        predict(model_path, path)


def test_prepared_split_is_taken_as_it_is(table_model, tmp_path):
    from slimline.compression.data.store import PREPARED_MARKER

    frame, labels = rows()
    z = ((frame.to_numpy() - [3.0, 2.0, 1.0]) / 2.0).astype(np.float32)  # already standardized
    y = (labels == "yes").astype(np.int64)
    stats = {"mean": np.float32([3, 2, 1]), "std": np.float32([2, 2, 2])}
    np.savez(tmp_path / "prepared.npz", x=z, y=y, prepared=PREPARED_MARKER, **stats)
    out = predict(table_model, tmp_path / "prepared.npz")
    assert out.accuracy == 1.0 and out.names == labels.tolist()
    np.savez(tmp_path / "raw.npz", x=z, y=y)  # the same numbers unmarked: raw, standardized again
    assert predict(table_model, tmp_path / "raw.npz").accuracy < 1.0
    stats["mean"] = np.float32([0, 0, 0])
    np.savez(tmp_path / "other.npz", x=z, y=y, prepared=PREPARED_MARKER, **stats)
    with pytest.raises(InputError, match="other.npz: a prepared split standardized with other"):
        predict(table_model, tmp_path / "other.npz")


@pytest.fixture(scope="module")
def cancer_project(tmp_path_factory):
    """scikit-learn's breast cancer data as a CSV, prepared by the real prepare recipe, and a
    small linear model trained on the prepared train split, exported with export's metadata."""
    from sklearn.datasets import load_breast_cancer

    from slimline.compression.data.prepare import prepare
    from slimline.compression.data.store import load_splits
    from slimline.compression.release.bundle import model_metadata
    from slimline.core.params.loading import load_params

    root = tmp_path_factory.mktemp("cancer")
    frame = load_breast_cancer(as_frame=True).frame
    write_table(frame, root / "cancer.csv")
    params = load_params(
        write_params(
            root / "params.yaml",
            data={"source": "table", "path": "cancer.csv", "target": "target"},
            teacher={"arch": "mlp"},
            student={"arch": "mlp"},
        )
    )
    report = prepare(params, root)
    assert report["duplicates_dropped"] == 0  # every CSV row is in exactly one split
    train, val, test = load_splits(root / "data/prepared")
    torch.manual_seed(0)
    net = nn.Linear(train.input_shape[0], 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    export_onnx(net, train.input_shape, root / "raw.onnx", 20)
    add_metadata(root / "raw.onnx", root / "model.onnx", model_metadata(params, root, test))
    return root, (train, val, test)


def test_prepared_test_split_and_raw_csv_give_the_models_accuracy(cancer_project):
    """The split files users have: predict must agree with the model run on the prepared x
    (what the validate stage measures), and the raw CSV rows must give the same answers."""
    root, splits = cancer_project
    sess = session(root / "model.onnx")
    correct = [int((run_logits(sess, s.x).argmax(axis=1) == s.y).sum()) for s in splits]
    test = splits[2]
    expected = correct[2] / len(test.y)
    assert expected > 0.9  # a real model (chance: 0.63)
    out = predict(root / "model.onnx", root / "data/prepared/test.npz")
    assert out.accuracy == expected and out.labels is not None and len(out.labels) == len(test.y)
    table = predict(root / "model.onnx", root / "cancer.csv")  # every row: train, val and test
    assert table.labels is not None and len(table.labels) == 569
    assert table.accuracy == sum(correct) / 569
    meta = read_metadata(root / "model.onnx")
    assert json.loads(meta["feature_names"])[:2] == ["mean radius", "mean texture"]
    assert meta["target"] == "target" and json.loads(meta["class_names"]) == ["0", "1"]


@pytest.fixture(scope="module")
def signal_model(tmp_path_factory):
    """A 'classifier' of (2, 8) signals: class 1 when channel 0, standardized, sums higher
    than channel 1; its metadata says each channel has its own mean and std."""
    net = first_half_minus_second()
    tmp = tmp_path_factory.mktemp("signal")
    export_onnx(net, (2, 8), tmp / "raw.onnx", 20)
    meta = {
        "class_names": json.dumps(["low", "high"]),
        "input_shape": json.dumps([2, 8]),
        "layout": "signal",
        "normalization": json.dumps({"mean": [10.0, -10.0], "std": [2.0, 4.0], "scale": 1.0}),
    }
    add_metadata(tmp / "raw.onnx", tmp / "model.onnx", meta)
    return tmp / "model.onnx"


def test_raw_signals_are_standardized_per_channel(signal_model, tmp_path):
    from slimline.compression.release.predict import Preprocessing, load_inputs

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 20, 8)).astype(np.float32)
    raw = np.stack([10 + 2 * a, -10 + 4 * b], axis=1)  # (N, C, L) as recorded
    y = (a.sum(axis=1) > b.sum(axis=1)).astype(np.int64)
    np.savez(tmp_path / "sig.npz", x=raw, y=y)
    pre = Preprocessing.from_model(signal_model)
    assert pre.layout == "signal"
    x, _ = load_inputs(tmp_path / "sig.npz", pre)
    np.testing.assert_allclose(x, np.stack([a, b], axis=1), atol=1e-5)
    assert predict(signal_model, tmp_path / "sig.npz").accuracy == 1.0


def test_one_channel_signals_may_come_as_n_l(tmp_path):
    from slimline.compression.release.predict import Preprocessing, load_inputs

    pre = Preprocessing((1, 8), np.array([3.0], np.float32), np.array([2.0], np.float32), 1.0,
                        ["a", "b"])  # fmt: skip
    np.savez(tmp_path / "mono.npz", x=np.full((4, 8), 5.0, np.float32))
    x, y = load_inputs(tmp_path / "mono.npz", pre)
    assert x.shape == (4, 1, 8) and y is None
    np.testing.assert_array_equal(x, np.ones((4, 1, 8), np.float32))


def test_bundle_metadata_names_the_layout(tmp_path):
    from slimline.compression.data.dataset import Split
    from slimline.compression.release.bundle import model_metadata
    from slimline.core.params.loading import load_params
    from tests.support.data import make_signal_split
    from tests.support.paths import ROOT

    params = load_params(ROOT / "params.yaml")
    signals = make_signal_split(6)
    assert model_metadata(params, tmp_path, signals)["layout"] == "signal"
    assert json.loads(model_metadata(params, tmp_path, signals)["input_shape"]) == [2, 64]
    tabular = Split(np.zeros((3, 5), np.float32), np.zeros(3, np.int64), ["a"],
                    np.zeros(5, np.float32), np.ones(5, np.float32), 1.0)  # fmt: skip
    assert model_metadata(params, tmp_path, tabular)["layout"] == "tabular"


def test_a_native_int8_model_warns_on_a_cpu_without_its_instruction_set(
    model_path, tmp_path, monkeypatch
):
    import slimline.compression.release.predict as predict_module

    made = tmp_path / "native.onnx"  # as a native quantize on a VNNI machine marks its model
    add_metadata(model_path, made, {"int8_target": "native",
                                    "int8_requires": json.dumps(["AVX-512 VNNI"])})  # fmt: skip
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4, 4), np.uint8))
    avx2 = {"model": "AMD EPYC", "instruction_sets": {"AVX2": True, "AVX-512 VNNI": False}}
    monkeypatch.setattr(predict_module, "cpu_info", lambda: avx2)
    said = predict(made, tmp_path / "d.npz").warning
    assert said is not None and "AVX-512 VNNI" in said and "AMD EPYC" in said
    assert predict(model_path, tmp_path / "d.npz").warning is None  # no target: no warning
    vnni = {"model": "x", "instruction_sets": {"AVX2": True, "AVX-512 VNNI": True}}
    monkeypatch.setattr(predict_module, "cpu_info", lambda: vnni)
    assert predict(made, tmp_path / "d.npz").warning is None
