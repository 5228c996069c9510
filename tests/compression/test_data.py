from pathlib import Path

import numpy as np
import pytest

from slimline.compression import data
from slimline.compression.validation import DataValidationError, validate
from slimline.core.params import Data
from tests.conftest import make_images


def npz_source(path: Path) -> Data:
    return Data(source="npz", path=str(path))


def test_digits_source_is_images_scaled_to_unit_range():
    ds = data.load_source(Data(), Path())
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == np.float32
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.class_names == [str(i) for i in range(10)] and ds.scale == 16.0


def test_npz_source_keeps_class_names_and_adds_channel_axis(tmp_path, npz_file):
    ds = data.load_source(npz_source(npz_file), tmp_path)
    assert ds.x.shape == (36, 1, 8, 8) and ds.y.dtype == np.int64
    assert ds.class_names == ["a", "b", "c"]
    np.savez(tmp_path / "tab.npz", x=np.ones((6, 4)), y=np.array([0, 1, 0, 1, 0, 1]))
    tab = data.load_source(npz_source(tmp_path / "tab.npz"), tmp_path)
    assert tab.x.shape == (6, 4) and tab.class_names == ["0", "1"]


def test_image_folder_reads_grey_pngs_resized_with_sorted_class_names(tmp_path, image_folder):
    ds = data.load_source(
        Data(source="image-folder", path=str(image_folder), image_size=8), tmp_path
    )
    assert ds.x.shape == (30, 1, 8, 8)
    assert ds.class_names == ["class_0", "class_1", "class_2"]
    assert np.bincount(ds.y).tolist() == [10, 10, 10]


def test_image_folder_rgb_keeps_three_channels(tmp_path):
    from PIL import Image

    for label, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / "rgb" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (10, 10), colour).save(tmp_path / "rgb" / label / f"{i}.jpg")
    ds = data.load_source(Data(source="image-folder", path="rgb"), tmp_path)
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
    with pytest.raises(data.DataError, match=message) as info:
        data.load_source(npz_source(path), tmp_path)
    assert str(path) in str(info.value)


def test_truncated_real_npz(tmp_path, npz_file):
    cut = tmp_path / "cut.npz"
    cut.write_bytes(npz_file.read_bytes()[:400])
    with pytest.raises(data.DataError, match="cut.npz: not a readable .npz"):
        data.load_source(npz_source(cut), tmp_path)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 3))}, "missing array 'y'"),
        ({"x": np.zeros((4, 3)), "y": np.zeros(3, np.int64)}, "same length \\(got 4 and 3\\)"),
        ({"x": np.zeros((4, 3)), "y": np.zeros(4)}, "integer labels \\(got float64"),
        ({"x": np.zeros(4), "y": np.zeros(4, np.int64)}, "x must be numeric"),
        ({"x": np.zeros((4, 3)), "y": np.array([0, 1, -1, 2])}, "labels 0..2, one per .*got -1"),
    ],
)
def test_npz_content_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(data.DataError, match=message):
        data.load_source(npz_source(tmp_path / "d.npz"), tmp_path)


def test_image_folder_errors(tmp_path, image_folder):
    source = Data(source="image-folder", path=str(image_folder))
    (image_folder / "class_0" / "notes.txt").write_text("hello")
    with pytest.raises(data.DataError, match="notes.txt: not an image"):
        data.load_source(source, tmp_path)
    (image_folder / "class_0" / "notes.txt").unlink()
    (image_folder / "class_1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(data.DataError, match="broken.png: unreadable image"):
        data.load_source(source, tmp_path)
    (image_folder / "class_1" / "broken.png").unlink()
    (image_folder / "empty").mkdir()
    with pytest.raises(data.DataError, match="empty: empty class folder"):
        data.load_source(source, tmp_path)


def test_split_is_deterministic_stratified_and_disjoint():
    x, y = make_images(n_per_class=40, classes=4)
    ds = data.Dataset(x, y, list("abcd"), 1.0)
    cfg = Data(val_fraction=0.25, test_fraction=0.25)
    a, b = data.split(ds, cfg, seed=3), data.split(ds, cfg, seed=3)
    for name in data.SPLITS:
        np.testing.assert_array_equal(a[name][0], b[name][0])
    assert [np.bincount(a[n][1]).tolist() for n in data.SPLITS] == [[20] * 4, [10] * 4, [10] * 4]
    other = data.split(ds, cfg, seed=4)
    assert not np.array_equal(a["test"][0], other["test"][0])


def test_standardize_uses_train_statistics_only():
    x, y = make_images(n_per_class=20)
    parts = {"train": (x, y), "val": (x + 5, y), "test": (x, y)}
    out, mean, std = data.standardize(parts)
    assert abs(out["train"][0].mean()) < 1e-5 and abs(out["train"][0].std() - 1) < 1e-4
    assert mean.shape == (1,) and out["val"][0].mean() > 4  # val shifted, not re-centred


def test_drop_duplicates_keeps_first():
    x = np.array([[1.0, 2], [1, 2], [3, 4]], np.float32)
    ds, dropped = data.drop_duplicates(data.Dataset(x, np.array([0, 0, 1]), ["a", "b"], 1.0))
    assert dropped == 1 and ds.x.tolist() == [[1, 2], [3, 4]]


def valid_parts(classes: int = 3):
    x, y = make_images(n_per_class=30, classes=classes)
    ds = data.Dataset(x, y, [str(i) for i in range(classes)], 1.0)
    parts, _, _ = data.standardize(data.split(ds, Data(), seed=0))
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
    assert len(entries) == 15 and all(e["success"] for e in entries)


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
    import slimline.compression.validation as v

    def broken(*_):
        raise RuntimeError("gx exploded")

    monkeypatch.setattr(v, "_run", broken)
    with pytest.raises(DataValidationError, match="could not run .*gx exploded"):
        validate(valid_parts(), 3, 2, "src")
