"""Data no classifier can learn from: the checks before the split and the learnability probe."""

import numpy as np
import pytest

from slimline.compression.data import learnability
from slimline.compression.data.dataset import DataError, Dataset
from slimline.compression.data.degenerate import (
    MAX_CONFLICT_SHARE,
    check_classes,
    check_features_vary,
    check_samples_vary,
    conflicting_labels,
    label_conflicts,
)
from slimline.compression.data.learnability import probe
from slimline.compression.data.normalize import standardize
from slimline.compression.data.sources import load_source
from slimline.compression.data.split import drop_duplicates, sample_groups, split
from slimline.core.params.inputs import Data
from tests.support.data import make_images, make_signals, make_split, wine_frame


def dataset(x, y, classes: int = 3) -> Dataset:
    return Dataset(np.asarray(x, np.float32), np.asarray(y, np.int64),
                        [str(k) for k in range(classes)], 1.0)  # fmt: skip


def prepared(ds: Dataset, **fractions) -> dict:
    ds, _ = drop_duplicates(ds)
    parts, _, _ = standardize(split(ds, Data(**fractions), seed=0))
    return parts


def test_a_single_class_is_refused_for_every_source():
    x, _ = make_images()
    with pytest.raises(DataError, match=r"^src: the labels hold a single class '2' in all 36"):
        check_classes(dataset(x, np.full(36, 2)), "src", 2)
    table = Dataset(x, np.zeros(36, np.int64), ["red"], 1.0, ("a",), "colour")
    with pytest.raises(DataError, match="target column 'colour' holds a single class 'red'"):
        check_classes(table, "src", 2)


def test_a_declared_class_without_samples_and_a_class_too_small_are_named():
    x, y = make_images()
    with pytest.raises(DataError, match=r"class '3' \(label 3\) has no samples"):
        check_classes(dataset(x, y, classes=4), "src", 2)
    keep = np.r_[0:24, 24:29]  # class 2 keeps 5 samples
    with pytest.raises(DataError, match="class '2' has 5 .* at least 6 per class"):
        check_classes(dataset(x[keep], y[keep]), "src", 2)
    check_classes(dataset(x, y), "src", 2)  # 12 each: fine


def test_identical_samples_and_all_constant_features_are_refused():
    x, y = make_images()
    with pytest.raises(DataError, match="all 36 samples have the same features"):
        check_features_vary(dataset(np.broadcast_to(x[0], x.shape), y), "src")
    with pytest.raises(DataError, match="all 30 samples have the same features"):
        check_features_vary(dataset(np.ones((30, 4)), np.arange(30) % 3), "src")
    some_constant = np.c_[np.ones((30, 1)), np.arange(30)]  # one constant column is normal
    check_features_vary(dataset(some_constant, np.arange(30) % 3), "src")


def test_a_few_conflicting_labels_are_reported_many_are_refused():
    x, y = make_images(n_per_class=40)
    few = 5  # under MAX_CONFLICT_SHARE of 120 distinct vectors
    xs, ys = np.concatenate([x, x[:few]]), np.concatenate([y, (y[:few] + 1) % 3])
    report = conflicting_labels(dataset(xs, ys), "src")
    assert report["features"] == few and report["samples"] == 2 * few
    assert report["example"] == {"samples": [0, 120], "labels": ["0", "1"]}
    many = int(120 * MAX_CONFLICT_SHARE) + 1
    xs, ys = np.concatenate([x, x[:many]]), np.concatenate([y, (y[:many] + 1) % 3])
    with pytest.raises(DataError, match=f"src: {many} of 120 distinct feature vectors"):
        conflicting_labels(dataset(xs, ys), "src")
    assert conflicting_labels(dataset(x, y), "src") == {
        "features": 0, "samples": 0, "share": 0.0, "max_share": MAX_CONFLICT_SHARE,
    }  # fmt: skip


def digits_parts(shuffle: bool = False) -> dict:
    ds = load_source(Data(), None)  # type: ignore[arg-type]
    if shuffle:
        ds = dataset(ds.x, np.random.default_rng(0).permutation(ds.y), 10)
    return prepared(ds)


def test_probe_passes_digits_and_records_its_figures():
    # its cost (~0.13 s warm on digits) is a benchmark figure, not asserted here
    report = probe(digits_parts(), 10, "digits")
    assert report["verdict"] == "learnable" and report["majority_accuracy"] < 0.15
    assert min(report["accuracy"].values()) > 0.9 and max(report["p_value"].values()) < 1e-6


def test_probe_refuses_shuffled_digits_with_both_accuracies():
    with pytest.raises(DataError) as info:
        probe(digits_parts(shuffle=True), 10, "scikit-learn digits")
    message = str(info.value)
    assert message.startswith("scikit-learn digits: the labels look unrelated to the features")
    assert "against the majority-class rate 0.1" in message


def fixtures() -> dict:
    images = make_images()
    signals = make_signals(450)
    frame = wine_frame()
    wine = (frame.drop(columns="target").to_numpy(), frame["target"].to_numpy())
    split = make_split(300)
    return {
        "images": (images, {}),
        "image_folder": (make_images(n_per_class=10, size=12), {"val_fraction": 0.2,
                                                                  "test_fraction": 0.2}),
        "signals": (signals, {}),
        "wine": (wine, {}),
        "split": ((split.x, split.y), {}),
    }  # fmt: skip


@pytest.mark.parametrize("name", list(fixtures()))
def test_probe_passes_the_test_fixtures_and_refuses_them_shuffled(name):
    (x, y), fractions = fixtures()[name]
    report = probe(prepared(dataset(x, y), **fractions), 3, name)
    assert report["verdict"] == "learnable", report
    if len(y) >= 150:  # enough held-out samples for chance to be told apart
        shuffled = np.random.default_rng(1).permutation(y)
        with pytest.raises(DataError, match=f"{name}: the labels look unrelated"):
            probe(prepared(dataset(x, shuffled), **fractions), 3, name)


def test_a_held_out_split_too_small_to_tell_is_inconclusive_not_refused():
    x, y = make_images(n_per_class=3, classes=2)  # y: 0 0 0 1 1 1
    train, val, test = [0, 3], [1, 4], [2, 5]
    parts = {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}
    assert probe(parts, 2, "src")["verdict"] == "inconclusive"


def test_a_split_too_small_for_every_class_names_the_class_counts():
    x, y = make_images(n_per_class=6, classes=10)  # 6 each passes check_classes; val gets 9 < 10
    check_classes(dataset(x, y, classes=10), "src", 2)
    with pytest.raises(DataError) as info:
        split(dataset(x, y, classes=10), Data(source="npz", path="d.npz"), seed=0)
    message = str(info.value)
    assert message.startswith("data.path: d.npz: cannot split 60 samples of 10 classes")
    assert "class counts: {'0': 6, '1': 6," in message


def hash_keys(x: np.ndarray) -> np.ndarray:
    """One 128-bit hash per sample, as a streamed image folder keys its samples."""
    import hashlib

    flat = np.ascontiguousarray(x.reshape(len(x), -1))
    digests = b"".join(hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in flat)
    return np.frombuffer(digests, np.uint64).reshape(-1, 2)


def test_the_feature_checks_from_hashed_samples_match_the_checks_on_values():
    x, y = make_images(n_per_class=40)
    few = 5
    xs, ys = np.concatenate([x, x[:few], x[7:9]]), np.concatenate([y, (y[:few] + 1) % 3, y[7:9]])
    ds = dataset(xs, ys)
    groups = sample_groups(hash_keys(ds.x))
    assert label_conflicts(*groups, ds, "src") == conflicting_labels(ds, "src")
    check_samples_vary(*groups, 64, "src")  # they vary
    alike = dataset(np.broadcast_to(x[0], x.shape), y)
    with pytest.raises(DataError) as by_value:
        check_features_vary(alike, "src")
    with pytest.raises(DataError) as by_key:
        check_samples_vary(*sample_groups(hash_keys(alike.x)), 64, "src")
    assert str(by_key.value) == str(by_value.value)


def test_a_stratified_probe_sample_keeps_each_class_share(monkeypatch):
    monkeypatch.setattr(learnability, "MAX_TRAIN", 300)
    monkeypatch.setattr(learnability, "MAX_HELD_OUT", 200)
    x, y = make_images(n_per_class=400, classes=3)
    keep = np.r_[0:400, 400:520, 800:1200]  # classes of 400, 120 and 400 samples
    x, y = x[keep], y[keep]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    parts = {"train": (x[order[:600]], y[order[:600]]), "val": (x[order[600:760]],
             y[order[600:760]]), "test": (x[order[760:]], y[order[760:]])}  # fmt: skip
    report = probe(parts, 3, "src", seed=0, stratified=True)
    assert report["train_samples"] == 300 and report["held_out_samples"] == 200
    assert report["sample"] == {"method": learnability.STRATIFIED, "max_train": 300,
                                "max_held_out": 200}  # fmt: skip
    drawn = learnability._choose(parts["train"][1], 300, np.random.default_rng(0), True)
    share = np.bincount(parts["train"][1], minlength=3) * 300 / 600
    assert np.abs(np.bincount(parts["train"][1][drawn], minlength=3) - share).max() < 1
    assert len(np.unique(drawn)) == 300 and np.all(np.diff(drawn) > 0)
    assert "sample" not in probe(parts, 3, "src", seed=0)  # the uniform draw, as before
