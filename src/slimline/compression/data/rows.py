"""Rows of an array on disk, read as asked for: what keeps memory flat however big a data set is."""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

# Rows of float32 x handled at a time when a data set is streamed (about this many bytes),
# and at most this many images decoded per batch: memory stays flat however many samples.
BLOCK_BYTES = 4 << 20


def blocks(rows: np.ndarray, input_shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """`rows` in consecutive pieces of about BLOCK_BYTES of float32 x each."""
    size = max(1, BLOCK_BYTES // (4 * math.prod(input_shape)))
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class StoredRows:
    """Rows of an array stored uncompressed in an .npz (as `save_split` writes them), read
    with positioned reads when indexed: `x[a:b]`, `x[rows]` or `np.asarray(x)` for all of it."""

    def __init__(self, path: Path, member: str):
        self._open_member(path, member)

    @classmethod
    def of_file(cls, path: Path, shape: tuple[int, ...], dtype: np.dtype, offset: int = 0):
        """Rows of a raw C-ordered array of `shape` and `dtype` at `offset` in a plain file."""
        rows = cls.__new__(cls)
        rows._set(path, offset, shape, dtype)
        return rows

    def _set(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.offset, self.shape, self.dtype = path, offset, tuple(shape), dtype
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def _open_member(self, path: Path, member: str) -> None:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo(f"{member}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{member} is compressed; it cannot be read row by row")
        with path.open("rb") as f:
            f.seek(info.header_offset + 26)  # the local header's name and extra lengths
            name_len, extra_len = np.frombuffer(f.read(4), "<u2")
            f.seek(info.header_offset + 30 + int(name_len) + int(extra_len))
            fmt = np.lib.format
            version = fmt.read_magic(f)
            read_header = (
                fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
        if np.dtype(dtype).kind not in "fiub":  # object arrays are pickles: never read
            raise ValueError(
                f"{member} holds {np.dtype(dtype)} values; numbers expected (object arrays "
                "cannot be loaded when allow_pickle=False)"
            )
        if fortran:
            raise ValueError(f"{member} is stored in Fortran order; expected C order")
        self._set(path, offset, tuple(shape), np.dtype(dtype))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: int | slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            rows = self._block(start, max(start, stop))
            return rows[::step] if step != 1 else rows
        if isinstance(key, int | np.integer):
            return self._block(int(key) % len(self), int(key) % len(self) + 1)[0]
        rows = np.asarray(key, dtype=np.int64) % max(len(self), 1)
        order = np.argsort(rows, kind="stable")
        ascending = rows[order]
        runs = np.split(ascending, np.flatnonzero(np.diff(ascending) != 1) + 1)
        found = np.concatenate([self._block(r[0], r[-1] + 1) for r in runs if len(r)] or [
            self._block(0, 0)
        ])  # fmt: skip
        out = np.empty_like(found)
        out[order] = found  # back in the order asked for
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)

    def _block(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1, one positioned read (the file is opened per call: forked
        DataLoader workers and threads never share a file offset)."""
        count = stop - start
        fd = os.open(self.path, os.O_RDONLY)
        try:
            data = os.pread(fd, count * self.row_bytes, self.offset + start * self.row_bytes)
        finally:
            os.close(fd)
        return np.frombuffer(data, self.dtype).reshape(count, *self.shape[1:]).copy()
