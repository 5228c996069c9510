"""Standardization with the train split's statistics only, in memory or block by block.

`StandardRows` reads any rows of a decoded image folder standardized, and `store.save_split`
streams such rows into the prepared file."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass
from slimline.compression.data.images import DecodedImages, to_unit
from slimline.compression.data.rows import blocks

# Standard deviations below this are treated as 1: a constant feature (a border pixel that is
# always 0) must not blow up to huge values in val/test.
MIN_STD = 1e-6


def standardize(
    parts: dict[str, tuple[np.ndarray, np.ndarray]],
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """z-score every split with the train split's per-channel (signals (N, C, L), images
    (N, C, H, W)) or per-feature (tabular (N, F)) statistics."""
    x_train = parts["train"][0]
    axes = (0, *range(2, x_train.ndim))  # all but the channel (feature) axis
    mean = x_train.mean(axis=axes, dtype=np.float64).astype(np.float32)
    std = x_train.std(axis=axes, dtype=np.float64).astype(np.float32)
    std = np.where(std < MIN_STD, np.float32(1), std)
    out = {name: (standardize_rows(x, mean, std), y) for name, (x, y) in parts.items()}
    return out, mean, std


def standardize_rows(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """x z-scored per channel (feature) as float32; rows at a time give the same values."""
    shape = channel_shape(x.ndim)
    out = np.subtract(x, mean.reshape(shape))
    out /= std.reshape(shape)  # in place: the same values as (x - mean) / std, one copy less
    return out.astype(np.float32, copy=False)


def channel_shape(ndim: int) -> tuple[int, ...]:
    """How per-channel statistics broadcast over an x of `ndim` (with N): (1, -1, 1, ...)."""
    return (1, -1) + (1,) * (ndim - 2)


def pixel_statistics(images: DecodedImages, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`standardize`'s per-channel mean and std of those samples, read block by block: each
    channel's count of every pixel level, then mean and std of the levels' float32 values
    summed exactly (math.fsum) in float64; equal to numpy's to float32 precision."""
    channels = images.input_shape[0]
    counts = np.zeros((channels, 256), np.int64)
    for block in blocks(np.sort(rows), images.input_shape):
        pixels = images.pixels[block][:, :channels]
        for c in range(channels):
            counts[c] += np.bincount(pixels[:, c].reshape(-1), minlength=256)
    levels = to_unit(np.arange(256, dtype=np.uint8)).astype(np.float64)
    mean, std = np.zeros(channels), np.zeros(channels)
    for c, count in enumerate(counts):
        n = max(int(count.sum()), 1)
        mean[c] = math.fsum(count * levels) / n
        std[c] = math.sqrt(math.fsum(count * (levels - mean[c]) ** 2) / n)
    std32 = std.astype(np.float32)
    return mean.astype(np.float32), np.where(std32 < MIN_STD, np.float32(1), std32)


class StandardRows:
    """Samples of a decoded image folder, standardized when read: the rows of one split's x,
    as `standardize` would make them, never all in memory. Indexing reads those rows;
    `blocks()` yields all of them in order, BLOCK_BYTES at a time."""

    def __init__(self, images: DecodedImages, rows: np.ndarray, mean, std):
        self.images, self.rows, self.mean, self.std = images, rows, mean, std
        self.shape = (len(rows), *images.input_shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        rows = self.rows[key]
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        start = 0
        for x in self._read(rows):  # a block at a time: no temporaries the size of out
            out[start : start + len(x)] = x
            start += len(x)
        return out

    def blocks(self) -> Iterator[np.ndarray]:
        return self._read(self.rows)

    def _read(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        for block in blocks(rows, self.shape[1:]):
            yield standardize_rows(self.images.x(block), self.mean, self.std)
