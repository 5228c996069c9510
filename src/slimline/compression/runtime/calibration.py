"""Calibration data for onnxruntime: which samples (stratified) and how they are fed (batches).

Used by static quantization, its sensitivity ranking and the peer quantizers of bench/peers.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from slimline.compression.runtime.onnx_io import file_feeds

BATCH = 64  # samples per calibration batch


def stratified_sample(
    x: np.ndarray, y: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """n samples with class proportions kept (largest remainder), every class at least once
    when n allows; deterministic for a seed, in the original order. n=0 gives an empty
    sample (dynamic quantization needs no calibration). Only the chosen rows of x are read,
    so x may be a lazily read split (`StoredRows`)."""
    if n < 0:
        raise ValueError(f"stratified_sample: n must be >= 0 (got {n})")
    if n == 0:
        return x[:0].copy(), y[:0].copy()
    if n >= len(y):
        return np.array(x[:]), y.copy()  # x[:] reads a StoredRows whole
    classes, counts = np.unique(y, return_counts=True)
    quota = n * counts / counts.sum()
    take = np.floor(quota).astype(int)
    if n >= len(classes):
        take = np.maximum(take, 1)
    while take.sum() < n:  # give the rest to the largest remainders
        take[np.argmax(np.where(take < counts, quota - take, -np.inf))] += 1
    while take.sum() > n:  # the `at least one` rule overshot: trim the most over quota
        take[np.argmax(np.where(take > 1, take - quota, -np.inf))] -= 1
    rng = np.random.default_rng(seed)
    picks = [
        rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take, strict=True)
    ]
    idx = np.sort(np.concatenate(picks))
    return x[idx], y[idx]


def batch_reader(x: np.ndarray, feed: Callable[[np.ndarray], dict[str, np.ndarray]]) -> Any:
    """A fresh CalibrationDataReader over x in batches, each made into the model's inputs by
    `feed` (`onnx_io.file_feeds`: floats, or token ids and their mask): ORT readers cannot
    rewind."""
    from onnxruntime.quantization import CalibrationDataReader

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = (feed(x[i : i + BATCH]) for i in range(0, len(x), BATCH))

        def get_next(self) -> dict | None:
            return next(self._it, None)

    return Batches()


def range_cache(model: Path, x: np.ndarray, method: Any, options: dict, tmp: Path) -> Path:
    """Calibrate `model` once on x: the ranges on slimline's grid (`round_ranges`), saved as
    quantize_static's JSON cache in tmp, so that every quantization of the model reuses them."""
    from onnxruntime.quantization import create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    ops = sorted(set(QDQRegistry) | set(QLinearOpsRegistry))  # what quantize_static calibrates
    calibrator = create_calibrator(model, ops, str(tmp / "augmented.onnx"), method,
                                   extra_options=options)  # fmt: skip
    calibrator.collect_data(batch_reader(x, file_feeds(model)))
    cache = tmp / "calibration.json"
    save_tensors_data(round_ranges(calibrator.compute_data()), cache)
    return cache


# steps per power of two of a range's magnitude: each end moves outward by less than 1/128 of
# that power of two (a range grows by at most ~3 % of its magnitude)
GRID_STEPS = 128


def round_ranges(tensors: Any) -> Any:
    """Calibration ranges (onnxruntime TensorsData) widened outward to a grid of
    1/GRID_STEPS of their magnitude's power of two, in place; returns them.

    onnxruntime's FP32 kernels differ in the last bits between CPUs (AVX2 and AVX-512 MLAS
    paths sum in other orders), so raw min/max ranges, and the scales and file made from them,
    would differ too. On the grid two CPUs agree unless a range falls within that last-bit
    difference (~1e-7 relative) of a grid line: about 1e-4 per range at this grid."""
    for data in tensors.data.values():
        if not (hasattr(data, "lowest") and hasattr(data, "highest")):
            continue
        dtype = np.asarray(data.lowest).dtype
        lo, hi = np.asarray(data.lowest, np.float64), np.asarray(data.highest, np.float64)
        step = _grid_step(np.maximum(np.abs(lo), np.abs(hi)))
        data.lowest = (np.floor(lo / step) * step).astype(dtype)
        data.highest = (np.ceil(hi / step) * step).astype(dtype)
    return tensors


def _grid_step(magnitude: np.ndarray) -> np.ndarray:
    exponent = np.ceil(np.log2(np.maximum(magnitude, np.finfo(np.float32).tiny)))
    return np.exp2(exponent) / GRID_STEPS
