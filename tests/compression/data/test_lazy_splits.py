"""Every split read lazily (`StoredRows`), and every consumer reading it a batch at a time: the
same values as with the split in memory, never the whole x at once."""

import numpy as np
import pytest
import torch
from torch import nn

from slimline.compression.data.dataset import SPLITS, Dataset
from slimline.compression.data.rows import StoredRows
from slimline.compression.data.store import load_split, load_splits, save_split
from slimline.compression.runtime.calibration import batch_reader, stratified_sample
from slimline.compression.runtime.onnx_io import export_onnx, run_logits, session
from slimline.compression.training.fit import loss_and_accuracy, predict_logits


class NoWhole(StoredRows):
    """StoredRows that refuse to be read whole or in more than `limit` rows at once."""

    limit = 64

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("x read whole")

    def __getitem__(self, key):
        rows = super().__getitem__(key)
        assert len(rows) <= self.limit, f"{len(rows)} rows read at once"
        return rows


@pytest.fixture
def prepared(tmp_path):
    rng = np.random.default_rng(0)
    for i, name in enumerate(SPLITS):
        x = rng.normal(size=(150 + i, 2, 3, 3)).astype(np.float32)
        ds = Dataset(x, np.arange(len(x)) % 3, ["a", "b", "c"], 1.0)
        save_split(tmp_path / f"{name}.npz", x, ds.y, ds, np.zeros(2), np.ones(2))
    return tmp_path


def no_whole(split):
    return NoWhole(split.x.path, "x")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(18, 3))


def test_load_splits_lazy_reads_every_split_row_by_row(prepared):
    lazy, eager = load_splits(prepared, lazy=True), load_splits(prepared)
    for a, b in zip(lazy, eager, strict=True):
        assert isinstance(a.x, StoredRows) and isinstance(b.x, np.ndarray)
        assert a.input_shape == b.input_shape and len(a.x) == len(b.x)
        np.testing.assert_array_equal(np.asarray(a.x), b.x)
        np.testing.assert_array_equal(a.y, b.y)


def test_run_logits_converts_one_batch_at_a_time(prepared, model, tmp_path):
    val = load_split(prepared, "val")
    export_onnx(model, val.input_shape, tmp_path / "m.onnx", 17)
    sess = session(tmp_path / "m.onnx")
    lazy = no_whole(load_split(prepared, "val", lazy=True))
    np.testing.assert_array_equal(run_logits(sess, lazy, batch_size=64), run_logits(sess, val.x))


def test_predict_logits_and_loss_read_batches(prepared, model):
    test = load_split(prepared, "test")
    lazy = load_split(prepared, "test", lazy=True)
    lazy = type(lazy)(**{**vars(lazy), "x": no_whole(lazy)})
    np.testing.assert_array_equal(
        predict_logits(model, lazy.x, batch_size=64), predict_logits(model, test.x)
    )
    NoWhole.limit = 512  # loss_and_accuracy predicts with the default batch
    try:
        assert loss_and_accuracy(model, lazy) == loss_and_accuracy(model, test)
    finally:
        NoWhole.limit = 64


def test_the_calibration_sample_reads_only_its_rows(prepared):
    train = load_split(prepared, "train")
    lazy = no_whole(load_split(prepared, "train", lazy=True))
    x, y = stratified_sample(lazy, train.y, 30, 42)
    want_x, want_y = stratified_sample(train.x, train.y, 30, 42)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)
    everything, _ = stratified_sample(load_split(prepared, "train", lazy=True).x, train.y, 999, 0)
    np.testing.assert_array_equal(everything, train.x)


def test_the_calibration_reader_feeds_the_same_batches(prepared):
    train = load_split(prepared, "train")
    lazy = no_whole(load_split(prepared, "train", lazy=True))
    reader = batch_reader(lazy, lambda b: {"input": np.ascontiguousarray(b, np.float32)})
    got = [b["input"] for b in iter(reader.get_next, None)]
    assert all(b.flags.c_contiguous and b.dtype == np.float32 for b in got)
    np.testing.assert_array_equal(np.concatenate(got), train.x)
