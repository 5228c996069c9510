"""The prepare stage as DVC runs it: a subprocess, exit codes, outputs kept on failure."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slimline.compression.data.store import load_split
from tests.support.data import bad_npz, make_images, wine_frame, write_table
from tests.support.params import write_params
from tests.support.paths import ROOT
from tests.support.processes import run_stage

OUTPUTS = [
    "data/prepared/train.npz",
    "data/prepared/val.npz",
    "data/prepared/test.npz",
    "reports/data_validation.json",
]


def snapshot(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in OUTPUTS}


@pytest.fixture(scope="module")
def prepared_once(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    result = run_stage("prepare", write_params(root / "params.yaml"))
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture
def prepared_digits(prepared_once, tmp_path) -> Path:
    """A project with a good prepare result, copied fresh for each test."""
    shutil.copytree(prepared_once, tmp_path, dirs_exist_ok=True)
    return tmp_path / "params.yaml"


def test_digits_prepared_and_reported(prepared_digits):
    root = prepared_digits.parent
    train, test = (
        load_split(root / "data/prepared", "train"),
        load_split(root / "data/prepared", "test"),
    )
    assert train.x.dtype == np.float32 and train.y.dtype == np.int64
    assert train.input_shape == (1, 8, 8) and train.num_classes == 10
    assert abs(float(train.x.mean())) < 1e-4
    assert len(train.y) + len(test.y) + len(load_split(root / "data/prepared", "val").y) == 1797
    report = json.loads((root / "reports/data_validation.json").read_text())
    assert report["success"] and len(report["sha256"]) == 64
    assert all(e["success"] for e in report["expectations"])
    assert report["splits"]["test"]["samples"] == len(test.y)
    probe = report["learnability"]
    assert probe["verdict"] == "learnable" and probe["majority_accuracy"] < 0.15
    assert min(probe["accuracy"].values()) > 0.9 and probe["held_out_samples"] > 500
    assert report["conflicting_labels"]["features"] == 0


def test_rerun_gives_identical_bytes(prepared_digits):
    before = snapshot(prepared_digits.parent)
    assert run_stage("prepare", prepared_digits).returncode == 0
    assert snapshot(prepared_digits.parent) == before


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "file not found"),
        ("empty", "not a readable .npz"),
        ("truncated", "not a readable .npz"),
        ("no_y", "missing array 'y'"),
        ("nan", "expect_column_values_to_not_be_null"),
        ("label_out_of_range", "y must hold labels 0..1, one per class name (got 2)"),
        ("length_mismatch", "same length"),
        ("float_labels", "integer labels"),
        ("inf", "expect_column_values_to_not_be_null"),
    ],
)
def test_bad_data_exits_2_and_keeps_last_good_outputs(prepared_digits, kind, message):
    root = prepared_digits.parent
    before = snapshot(root)
    data_file = root / "user.npz"
    if kind != "missing":
        bad_npz(data_file, kind)
    params = write_params(root / "params.yaml", data={"source": "npz", "path": "user.npz"})
    result = run_stage("prepare", params)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "user.npz" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(root) == before
    assert not list((root / "data/prepared").glob(".*"))  # no temp files left behind


def degenerate_npz(path: Path, kind: str) -> None:
    """Data no classifier can learn from, each a different way; learnable unless broken."""
    x, y = make_images(n_per_class=40)  # 120 separable samples, classes a, b, c
    names = np.array(["a", "b", "c"])
    if kind == "single_class":
        y[:] = 1
    elif kind == "declared_class_without_samples":
        names = np.array(["a", "b", "c", "d"])
    elif kind == "class_too_few_to_split":
        x, y = x[:84], y[:84]  # class c keeps 4 samples
    elif kind == "class_too_few_for_val":
        x, y = x[:87], y[:87]  # class c keeps 7: one in val, below min_per_class 2
    elif kind == "identical_samples":
        x[:] = x[0]
    elif kind == "constant_features":
        x = np.full((300, 5), 3.0, np.float32)
        y = np.arange(300) % 3
    elif kind == "conflicting_labels":
        x, y = np.concatenate([x, x]), np.concatenate([y, (y + 1) % 3])
    elif kind == "random_labels":
        y = np.random.default_rng(0).permutation(y)
    np.savez(path, x=x, y=y, class_names=names)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("single_class", "the labels hold a single class 'b' in all 120 samples (expected at "
                         "least two classes)"),
        ("declared_class_without_samples", "class 'd' (label 3) has no samples"),
        ("class_too_few_to_split", "too few samples to split: class 'c' has 4 (after dropping "
                                   "duplicates); expected at least 6 per class"),
        ("class_too_few_for_val", "too few samples to split: class 'c' has 1 in val (of 7 "
                                  "samples)"),
        ("identical_samples", "all 120 samples have the same features"),
        ("constant_features", "all 300 samples have the same features (every one of the 5 "
                              "values is constant"),
        ("conflicting_labels", "120 of 120 distinct feature vectors (240 samples) carry "
                               "conflicting labels, e.g. samples 0 and 120 have the same "
                               "features and labels ['a', 'b']"),
        ("random_labels", "the labels look unrelated to the features"),
    ],
)  # fmt: skip
def test_unlearnable_data_exits_2_and_keeps_last_good_outputs(prepared_digits, kind, message):
    root = prepared_digits.parent
    before = snapshot(root)
    degenerate_npz(root / "user.npz", kind)
    tabular = MLP if kind == "constant_features" else {}  # (N, F) data feeds only mlp
    data = {"source": "npz", "path": "user.npz"}
    result = run_stage("prepare", write_params(root / "params.yaml", data=data, **tabular))
    assert result.returncode == 2, result.stderr
    assert f"data.path: {root / 'user.npz'}: {message}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(root) == before
    assert not list((root / "data/prepared").glob(".*"))


def test_random_labels_message_gives_the_probe_and_the_majority(prepared_digits):
    root = prepared_digits.parent
    degenerate_npz(root / "user.npz", "random_labels")
    params = write_params(root / "params.yaml", data={"source": "npz", "path": "user.npz"})
    stderr = run_stage("prepare", params).stderr
    assert "probe fit on train scores 0." in stderr and "val/test samples against the " in stderr
    assert "majority-class rate 0.3" in stderr and "one-sided binomial p = " in stderr


def test_image_folder_with_one_class_folder_exits_2(prepared_digits, image_folder):
    root = prepared_digits.parent
    before = snapshot(root)
    for extra in ("class_1", "class_2"):
        shutil.rmtree(image_folder / extra)
    data = {"source": "image-folder", "path": str(image_folder), "image_size": 8}
    result = run_stage("prepare", write_params(root / "params.yaml", data=data))
    assert result.returncode == 2, result.stderr
    assert (
        f"data.path: {image_folder}: the labels hold a single class 'class_0' in all 10 samples"
        in result.stderr
    )
    assert snapshot(root) == before


def test_image_folder_source_through_the_stage(tmp_path, image_folder):
    params = write_params(
        tmp_path / "params.yaml",
        data={
            "source": "image-folder",
            "path": "images",
            "image_size": 8,
            "val_fraction": 0.2,
            "test_fraction": 0.2,
        },
    )
    result = run_stage("prepare", params)
    assert result.returncode == 0, result.stderr
    split = load_split(tmp_path / "data/prepared", "val")
    assert split.class_names == ["class_0", "class_1", "class_2"]
    assert split.scale == 255.0 and split.input_shape == (1, 8, 8)


def test_corrupt_image_late_in_a_folder_exits_2_and_leaves_nothing_half_written(
    prepared_digits, image_folder
):
    # the folder is streamed: the images sorted before this one are decoded and written to a
    # temporary file first, which must go with the refusal
    root = prepared_digits.parent
    before = snapshot(root)
    broken = image_folder / "class_2" / "zz_last.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    data = {"source": "image-folder", "path": str(image_folder), "image_size": 8,
            "val_fraction": 0.2, "test_fraction": 0.2}  # fmt: skip
    result = run_stage("prepare", write_params(root / "params.yaml", data=data))
    assert result.returncode == 2, result.stderr
    assert f"error: {broken}: unreadable image" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(root) == before
    assert not list((root / "data/prepared").glob(".*"))  # no decoded pixels, no temp splits


MLP = {"teacher": {"arch": "mlp"}, "student": {"arch": "mlp"}}


def table_params(path: Path, table: str, target: str = "target") -> Path:
    return write_params(path, data={"source": "table", "path": table, "target": target}, **MLP)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_source_through_the_stage(tmp_path, suffix):
    frame = wine_frame()
    frame["target"] = np.array(["barolo", "merlot", "cabernet"])[frame["target"]]
    write_table(frame, tmp_path / f"wine{suffix}")
    result = run_stage("prepare", table_params(tmp_path / "params.yaml", f"wine{suffix}"))
    assert result.returncode == 0, result.stderr
    splits = [load_split(tmp_path / "data/prepared", name) for name in ("train", "val", "test")]
    features = [c for c in frame.columns if c != "target"]
    for split in splits:
        assert split.x.dtype == np.float32 and split.input_shape == (13,)
        assert split.class_names == ["barolo", "cabernet", "merlot"]
        assert list(split.feature_names) == features and split.target == "target"
    assert sum(len(s.y) for s in splits) == 178
    train = splits[0]
    assert np.abs(train.x.mean(axis=0)).max() < 1e-4  # standardized per feature, from train
    np.testing.assert_allclose(train.x.std(axis=0), 1, atol=1e-3)
    # a prepared row maps back to a row of the table, with its label
    raw = train.x[0] * train.std + train.mean
    match = np.abs(frame[features].to_numpy() - raw).max(axis=1).argmin()
    np.testing.assert_allclose(frame[features].to_numpy()[match], raw, rtol=1e-4)
    assert frame["target"][match] == train.class_names[train.y[0]]
    report = json.loads((tmp_path / "reports/data_validation.json").read_text())
    assert report["success"] and report["source"] == str(tmp_path / f"wine{suffix}")
    assert report["class_names"] == ["barolo", "cabernet", "merlot"]
    assert all(e["success"] for e in report["expectations"])
    assert sum(report["splits"]["train"]["class_counts"]) == len(train.y)


@pytest.mark.parametrize(
    ("kind", "target", "message"),
    [
        ("text", "target", "non-numeric feature columns ['city', 'name'] (expected numbers"),
        ("missing", "target", "missing values in columns ['ash'] (empty cells per column: "
                              "{'ash': 2}"),
        ("text", "label", "no target column 'label' (data.target; columns found: ['alcohol'"),
        ("single_class", "target", "target column 'target' holds a single class 'red'"),
    ],
)  # fmt: skip
def test_bad_table_exits_2_and_keeps_last_good_outputs(prepared_digits, kind, target, message):
    root = prepared_digits.parent
    before = snapshot(root)
    frame = wine_frame()
    if kind == "text":
        frame["name"], frame["city"] = "x", "Paris"
    elif kind == "missing":
        frame.loc[[3, 5], "ash"] = np.nan
    else:
        frame["target"] = "red"
    write_table(frame, root / "user.csv")
    result = run_stage("prepare", table_params(root / "params.yaml", "user.csv", target))
    assert result.returncode == 2, result.stderr
    assert f"data.path: {root / 'user.csv'}: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(root) == before


def test_table_with_conv_models_is_a_params_error(tmp_path):
    write_table(wine_frame(), tmp_path / "wine.csv")
    data = {"source": "table", "path": "wine.csv", "target": "target"}
    result = run_stage("prepare", write_params(tmp_path / "params.yaml", data=data))
    assert result.returncode == 2
    assert "teacher.arch: mlp for tabular (N, F) data in wine.csv (got 'resnet')" in result.stderr


def test_bad_params_exit_2_with_one_message(tmp_path):
    params = write_params(tmp_path / "params.yaml", distill={"alpha": 2})
    result = run_stage("prepare", params)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {params}: invalid params",
        "  distill.alpha: less than or equal to 1 (got 2)",
    ]


# A write refused for lack of room, without root: a file-size limit (RLIMIT_FSIZE) set in the
# stage's own process makes its writes fail with EFBIG, as a full disk or a quota would
# (the tmpfs variant, which needs root: tests/reliability/test_disk_full.py).
LIMITED = """
import resource, runpy, signal, sys
limit = int(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = [sys.argv[2], "--params", "params.yaml"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_file_size_limit_while_writing_the_splits_keeps_the_old_splits(prepared_digits):
    root = prepared_digits.parent
    before = snapshot(root)
    limit = 64 * 1024
    assert (root / "data/prepared/train.npz").stat().st_size > limit  # the write must fail
    result = subprocess.run(
        [sys.executable, "-c", LIMITED, str(limit), str(ROOT / "stages" / "prepare.py")],
        cwd=root, env={**os.environ, "CI": "true"}, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: stage prepare: File too large while writing its outputs; "
        "the previous outputs are kept"
    )
    assert "Traceback" not in result.stderr
    assert snapshot(root) == before
    assert not list((root / "data/prepared").glob(".*"))  # no temp files left behind
