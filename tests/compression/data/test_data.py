from pathlib import Path

import numpy as np
import pytest

from slimline.compression.data.dataset import SPLITS, DataError, Dataset
from slimline.compression.data.expectations import DataValidationError, validate
from slimline.compression.data.normalize import standardize
from slimline.compression.data.sources import load_source
from slimline.compression.data.split import drop_duplicates, split
from slimline.compression.data.store import PREPARED_MARKER, load_split, save_split
from slimline.core.params.inputs import Data
from tests.support.data import make_images, make_signals, wine_frame, write_table


def npz_source(path: Path, layout: str = "auto") -> Data:
    return Data(source="npz", path=str(path), layout=layout)  # type: ignore[arg-type]


def table_source(path: Path, target: str = "target") -> Data:
    return Data(source="table", path=str(path), target=target)


def test_digits_source_is_images_scaled_to_unit_range():
    ds = load_source(Data(), Path())
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == np.float32
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.class_names == [str(i) for i in range(10)] and ds.scale == 16.0


def test_npz_source_keeps_class_names_and_adds_channel_axis(tmp_path, npz_file):
    ds = load_source(npz_source(npz_file), tmp_path)
    assert ds.x.shape == (36, 1, 8, 8) and ds.y.dtype == np.int64
    assert ds.class_names == ["a", "b", "c"]
    np.savez(tmp_path / "tab.npz", x=np.ones((6, 4)), y=np.array([0, 1, 0, 1, 0, 1]))
    tab = load_source(npz_source(tmp_path / "tab.npz"), tmp_path)
    assert tab.x.shape == (6, 4) and tab.class_names == ["0", "1"]


def test_signal_layout_reads_n_c_l_and_adds_a_channel_to_n_l(tmp_path):
    x, y = make_signals(12)
    np.savez(tmp_path / "sig.npz", x=x, y=y)
    ds = load_source(npz_source(tmp_path / "sig.npz", "signal"), tmp_path)
    assert ds.x.shape == (12, 2, 64) and ds.x.dtype == np.float32  # (N, C, L) as given
    np.testing.assert_array_equal(ds.x, x)
    np.savez(tmp_path / "mono.npz", x=x[:, 0], y=y)
    mono = load_source(npz_source(tmp_path / "mono.npz", "signal"), tmp_path)
    assert mono.x.shape == (12, 1, 64)  # (N, L) -> (N, 1, L)
    # the same (N, L) file under auto stays tabular, and (N, C, L) under auto is (N, H, W)
    assert load_source(npz_source(tmp_path / "mono.npz"), tmp_path).x.shape == (12, 64)
    assert load_source(npz_source(tmp_path / "sig.npz"), tmp_path).x.shape == (12, 1, 2, 64)
    image = load_source(npz_source(tmp_path / "sig.npz", "image"), tmp_path)
    assert image.x.shape == (12, 1, 2, 64)


@pytest.mark.parametrize(
    ("layout", "shape", "expected"),
    [
        ("signal", (6, 1, 4, 4), r"signal reads x as \(N, L\) or \(N, C, L\)"),
        ("tabular", (6, 2, 8), r"tabular reads x as \(N, F\)"),
        ("image", (6, 8), r"image reads x as \(N, H, W\) or \(N, C, H, W\)"),
    ],
)
def test_layout_and_shape_disagree(tmp_path, layout, shape, expected):
    np.savez(tmp_path / "d.npz", x=np.zeros(shape, np.float32), y=np.arange(6) % 2)
    with pytest.raises(DataError, match=rf"data\.layout: {expected} \(got x of shape") as info:
        load_source(npz_source(tmp_path / "d.npz", layout), tmp_path)
    assert str(shape) in str(info.value) and "d.npz" in str(info.value)


def test_signals_are_standardized_per_channel_with_train_statistics():
    x, y = make_signals(90)
    x[:, 0] = x[:, 0] * 5 + 3  # channels on different scales and offsets
    x[:, 1] -= 2
    ds = Dataset(x, y, ["a", "b", "c"], 1.0)
    raw = split(ds, Data(), seed=0)
    parts, mean, std = standardize(raw)
    assert mean.shape == std.shape == (2,)
    np.testing.assert_allclose(mean, raw["train"][0].mean(axis=(0, 2)), rtol=1e-5)
    train = parts["train"][0]
    np.testing.assert_allclose(train.mean(axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(train.std(axis=(0, 2)), 1, atol=1e-4)
    expected_val = (raw["val"][0] - mean[None, :, None]) / std[None, :, None]
    np.testing.assert_allclose(parts["val"][0], expected_val, rtol=1e-5, atol=1e-5)
    entries = validate(parts, 3, 2, "signals")  # GX: every expectation holds, per channel too
    assert all(e["success"] for e in entries)
    assert [e["column"] for e in entries if e["batch"] == "channels"] == ["train_mean"]


def test_channels_off_centre_fail_although_the_overall_mean_is_zero():
    x, y = make_signals(90)
    ds = Dataset(x, y, ["a", "b", "c"], 1.0)
    parts, _, _ = standardize(split(ds, Data(), seed=0))
    train = parts["train"][0].copy()
    train[:, 0] += 1  # channel 0 at +1, channel 1 at -1: the per-sample mean is untouched
    train[:, 1] -= 1
    parts["train"] = (train, parts["train"][1])
    assert failed(parts) == {("expect_column_values_to_be_between", "train_mean")}


def test_image_folder_reads_grey_pngs_resized_with_sorted_class_names(tmp_path, image_folder):
    ds = load_source(Data(source="image-folder", path=str(image_folder), image_size=8), tmp_path)
    assert ds.x.shape == (30, 1, 8, 8)
    assert ds.class_names == ["class_0", "class_1", "class_2"]
    assert np.bincount(ds.y).tolist() == [10, 10, 10]


def test_image_folder_rgb_keeps_three_channels(tmp_path):
    from PIL import Image

    for label, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / "rgb" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (10, 10), colour).save(tmp_path / "rgb" / label / f"{i}.jpg")
    ds = load_source(Data(source="image-folder", path="rgb"), tmp_path)
    assert ds.x.shape == (6, 3, 8, 8)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        (b"", "not a readable .npz"),
        (b"PK\x03\x04truncated", "not a readable .npz"),
    ],
)
def test_bad_npz_files(tmp_path, content, message):
    path = tmp_path / "d.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        load_source(npz_source(path), tmp_path)
    assert str(path) in str(info.value)


def test_truncated_real_npz(tmp_path, npz_file):
    cut = tmp_path / "cut.npz"
    cut.write_bytes(npz_file.read_bytes()[:400])
    with pytest.raises(DataError, match="cut.npz: not a readable .npz"):
        load_source(npz_source(cut), tmp_path)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 3))}, "missing array 'y'"),
        ({"x": np.zeros((4, 3)), "y": np.zeros(3, np.int64)}, "same length \\(got 4 and 3\\)"),
        ({"x": np.zeros((4, 3)), "y": np.zeros(4)}, "integer labels \\(got float64"),
        ({"x": np.array(list("abcd")), "y": np.zeros(4, np.int64)}, "x must be numeric"),
        (
            {"x": np.zeros(4), "y": np.zeros(4, np.int64)},
            r"data.layout: auto reads x as \(N, F\), \(N, H, W\) or \(N, C, H, W\) "
            r"\(got x of shape \(4,\)",
        ),
        ({"x": np.zeros((4, 3)), "y": np.array([0, 1, -1, 2])}, "labels 0..2, one per .*got -1"),
    ],
)
def test_npz_content_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_source(npz_source(tmp_path / "d.npz"), tmp_path)


def test_image_folder_errors(tmp_path, image_folder):
    source = Data(source="image-folder", path=str(image_folder))
    (image_folder / "class_0" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt: not an image"):
        load_source(source, tmp_path)
    (image_folder / "class_0" / "notes.txt").unlink()
    (image_folder / "class_1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="broken.png: unreadable image"):
        load_source(source, tmp_path)
    (image_folder / "class_1" / "broken.png").unlink()
    (image_folder / "empty").mkdir()
    with pytest.raises(DataError, match="empty: empty class folder"):
        load_source(source, tmp_path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".pq"])
def test_table_source_reads_features_and_maps_labels(tmp_path, suffix):
    frame = wine_frame()
    path = write_table(frame, tmp_path / f"wine{suffix}")
    ds = load_source(table_source(path), tmp_path)
    features = [c for c in frame.columns if c != "target"]
    assert ds.x.shape == (178, 13) and ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    np.testing.assert_allclose(ds.x, frame[features].to_numpy(), rtol=1e-6)
    assert ds.feature_names == tuple(features) and ds.target == "target" and ds.scale == 1.0
    assert ds.class_names == ["0", "1", "2"] and np.bincount(ds.y).tolist() == [59, 71, 48]


def test_table_class_names_are_the_sorted_label_values(tmp_path):
    frame = wine_frame()
    names = np.array(["zinfandel", "barolo", "merlot"])
    frame["target"] = names[frame["target"]]  # text labels, not in sorted order
    ds = load_source(table_source(write_table(frame, tmp_path / "w.csv")), tmp_path)
    assert ds.class_names == ["barolo", "merlot", "zinfandel"]
    assert [ds.class_names[k] for k in ds.y] == frame["target"].tolist()
    frame["target"] = np.array([10, 2, 7])[wine_frame()["target"]]  # numbers sort as numbers
    ds = load_source(table_source(write_table(frame, tmp_path / "n.parquet")), tmp_path)
    assert ds.class_names == ["2", "7", "10"]
    assert [int(ds.class_names[k]) for k in ds.y] == frame["target"].tolist()


def bad_table(tmp_path: Path, kind: str) -> Path:
    """A wine table broken one way, as .csv unless the kind says otherwise."""
    frame = wine_frame()
    path = tmp_path / "bad.csv"
    if kind == "text":
        frame["name"], frame["city"] = "x", "Paris"
    elif kind == "missing":
        frame.loc[[3, 5, 7], "ash"] = np.nan
        frame.loc[9, "hue"] = np.nan
    elif kind == "missing_label":
        frame["target"] = frame["target"].astype("float64")
        frame.loc[4, "target"] = np.nan
    elif kind == "single_class":
        frame["target"] = "red"
    elif kind == "only_target":
        frame = frame[["target"]]
    elif kind == "no_rows":
        frame = frame.iloc[:0]
    elif kind in ("garbage_csv", "garbage_parquet"):
        path = tmp_path / ("bad.csv" if kind == "garbage_csv" else "bad.parquet")
        path.write_bytes(b"\xff\xfe\x00\x81 not text" if kind == "garbage_csv" else b"PAR1junk")
        return path
    elif kind == "suffix":
        path = tmp_path / "bad.xlsx"
    return write_table(frame, path)


@pytest.mark.parametrize(
    ("kind", "target", "message"),
    [
        ("text", "target", "non-numeric feature columns ['city', 'name'] (expected numbers; "
                           "encode them first)"),
        ("missing", "target", "missing values in columns ['ash', 'hue'] (empty cells per "
                              "column: {'ash': 3, 'hue': 1}"),
        ("missing_label", "target", "missing values in columns ['target'] (empty cells per "
                                    "column: {'target': 1}"),
        ("text", "label", "no target column 'label' (data.target; columns found: ['alcohol', "),
        ("single_class", "target", "target column 'target' holds a single class 'red'"),
        ("only_target", "target", "no feature columns besides the target 'target' (columns "
                                  "found: ['target'])"),
        ("no_rows", "target", "no rows"),
        ("garbage_csv", "target", "not a readable CSV file (UnicodeDecodeError"),
        ("garbage_parquet", "target", "not a readable Parquet file (ArrowInvalid"),
        ("suffix", "target", "expected a table file ending in .csv, .parquet, .pq"),
    ],
)  # fmt: skip
def test_table_errors_name_the_file_and_the_columns(tmp_path, kind, target, message):
    path = bad_table(tmp_path, kind)
    with pytest.raises(DataError) as info:
        load_source(table_source(path, target), tmp_path)
    assert str(info.value).startswith(f"data.path: {path}: ")
    assert message in str(info.value)
    if kind == "text":  # every column found is listed, the target among them
        assert "'city'" in str(info.value) or target == "target"


def test_missing_table_file(tmp_path):
    with pytest.raises(DataError, match="absent.parquet: file not found"):
        load_source(table_source(tmp_path / "absent.parquet"), tmp_path)


def test_prepared_split_is_marked_and_carries_the_table_columns(tmp_path):
    ds = load_source(table_source(write_table(wine_frame(), tmp_path / "w.csv")), tmp_path)
    ds, _ = drop_duplicates(ds)  # keeps what the source said about its columns
    mean, std = ds.x.mean(axis=0), ds.x.std(axis=0)
    save_split(tmp_path / "test.npz", ds.x, ds.y, ds, mean, std)
    with np.load(tmp_path / "test.npz", allow_pickle=False) as z:
        assert str(z["prepared"]) == PREPARED_MARKER
    split = load_split(tmp_path, "test")
    assert split.feature_names == ds.feature_names and len(split.feature_names) == 13
    assert split.target == "target" and split.input_shape == (13,)
    images = load_source(Data(), Path())
    save_split(tmp_path / "val.npz", images.x[:5], images.y[:5], images, mean, std)
    with np.load(tmp_path / "val.npz", allow_pickle=False) as z:
        assert "prepared" in z.files and "feature_names" not in z.files
    assert load_split(tmp_path, "val").feature_names == ()
    assert load_split(tmp_path, "val").target is None


def test_split_is_deterministic_stratified_and_disjoint():
    x, y = make_images(n_per_class=40, classes=4)
    ds = Dataset(x, y, list("abcd"), 1.0)
    cfg = Data(val_fraction=0.25, test_fraction=0.25)
    a, b = split(ds, cfg, seed=3), split(ds, cfg, seed=3)
    for name in SPLITS:
        np.testing.assert_array_equal(a[name][0], b[name][0])
    assert [np.bincount(a[n][1]).tolist() for n in SPLITS] == [[20] * 4, [10] * 4, [10] * 4]
    other = split(ds, cfg, seed=4)
    assert not np.array_equal(a["test"][0], other["test"][0])


def test_standardize_uses_train_statistics_only():
    x, y = make_images(n_per_class=20)
    parts = {"train": (x, y), "val": (x + 5, y), "test": (x, y)}
    out, mean, std = standardize(parts)
    assert abs(out["train"][0].mean()) < 1e-5 and abs(out["train"][0].std() - 1) < 1e-4
    assert mean.shape == (1,) and out["val"][0].mean() > 4  # val shifted, not re-centred


def test_drop_duplicates_keeps_first():
    x = np.array([[1.0, 2], [1, 2], [3, 4]], np.float32)
    ds, dropped = drop_duplicates(Dataset(x, np.array([0, 0, 1]), ["a", "b"], 1.0))
    assert dropped == 1 and ds.x.tolist() == [[1, 2], [3, 4]]


def valid_parts(classes: int = 3):
    x, y = make_images(n_per_class=30, classes=classes)
    ds = Dataset(x, y, [str(i) for i in range(classes)], 1.0)
    parts, _, _ = standardize(split(ds, Data(), seed=0))
    return parts


def failed(parts, num_classes=3, min_per_class=2) -> set[tuple[str, str | None]]:
    with pytest.raises(DataValidationError) as info:
        validate(parts, num_classes, min_per_class, "src.npz")
    assert "src.npz" in str(info.value)
    return {
        (e["expectation"], e["column"])
        for e in info.value.report["expectations"]
        if not e["success"]
    }


def test_valid_data_passes_every_expectation():
    entries = validate(valid_parts(), 3, 2, "src")
    assert len(entries) == 16 and all(e["success"] for e in entries)


def test_nan_is_caught_by_not_null():
    parts = valid_parts()
    parts["val"][0][0, 0, 0, 0] = np.nan
    assert ("expect_column_values_to_not_be_null", "x_min") in failed(parts)


def test_infinity_and_out_of_range_values():
    parts = valid_parts()
    parts["test"][0][1, 0, 0, 0] = np.inf
    assert ("expect_column_values_to_be_between", "x_max") in failed(parts)
    parts = valid_parts()
    parts["train"][0][2, 0, 0, 0] = -1e4
    assert ("expect_column_values_to_be_between", "x_min") in failed(parts)


def test_labels_outside_range():
    parts = valid_parts()
    parts["train"][1][0] = 7
    parts["test"][1][0] = -1
    assert ("expect_column_values_to_be_in_set", "y") in failed(parts)


def test_class_missing_from_a_split():
    parts = valid_parts()
    x, y = parts["val"]
    keep = y != 2
    parts["val"] = (x[keep], y[keep])
    assert ("expect_column_values_to_be_between", "count") in failed(parts)


def test_test_sample_duplicated_in_train_is_leakage():
    parts = valid_parts()
    x_test, y_test = parts["test"]
    x_train, y_train = parts["train"]
    parts["train"] = (np.concatenate([x_train, x_test[:1]]), np.concatenate([y_train, y_test[:1]]))
    assert failed(parts) == {("expect_column_values_to_be_unique", "sample_hash")}


def test_schema_wrong_dtype_and_not_standardized():
    parts = valid_parts()
    parts["val"] = (parts["val"][0].astype(np.float64), parts["val"][1])
    assert ("expect_column_values_to_be_in_set", "x_dtype") in failed(parts)
    parts = valid_parts()
    parts["train"] = (parts["train"][0] + 1, parts["train"][1])
    assert ("expect_column_mean_to_be_between", "x_mean") in failed(parts)


def test_gx_raising_fails_closed(monkeypatch):
    import slimline.compression.data.expectations as v

    def broken(*_):
        raise RuntimeError("gx exploded")

    monkeypatch.setattr(v, "_run", broken)
    with pytest.raises(DataValidationError, match="could not run .*gx exploded"):
        validate(valid_parts(), 3, 2, "src")
