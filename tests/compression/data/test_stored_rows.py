"""A prepared split read row by row from its file: the same values as loading it whole."""

import numpy as np
import pytest

from slimline.compression.data.dataset import Dataset
from slimline.compression.data.rows import StoredRows
from slimline.compression.data.store import load_split, save_split


@pytest.fixture
def stored(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(101, 3, 4, 5)).astype(np.float32)
    ds = Dataset(x, np.arange(101) % 3, ["a", "b", "c"], 1.0)
    save_split(tmp_path / "train.npz", x, ds.y, ds, np.zeros(3), np.ones(3))
    return tmp_path, x


def test_every_way_of_indexing_reads_the_stored_values(stored):
    prepared, x = stored
    lazy = load_split(prepared, "train", lazy=True)
    assert isinstance(lazy.x, StoredRows)
    assert lazy.x.shape == x.shape and len(lazy.x) == 101 and lazy.input_shape == (3, 4, 5)
    np.testing.assert_array_equal(lazy.x[10:37], x[10:37])
    np.testing.assert_array_equal(lazy.x[::9], x[::9])
    np.testing.assert_array_equal(lazy.x[7], x[7])
    np.testing.assert_array_equal(lazy.x[-1], x[-1])
    rows = np.array([50, 3, 4, 5, 100, 3, 0])  # unsorted, runs, a repeat
    np.testing.assert_array_equal(lazy.x[rows], x[rows])
    np.testing.assert_array_equal(np.asarray(lazy.x), x)
    assert lazy.x[np.array([], dtype=np.int64)].shape == (0, 3, 4, 5)


def test_a_compressed_member_is_refused_with_a_reason(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", x=np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="compressed"):
        StoredRows(tmp_path / "c.npz", "x")


def test_an_object_array_is_refused_never_read(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle=False"):
        StoredRows(tmp_path / "o.npz", "x")
