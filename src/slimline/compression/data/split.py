"""Exact duplicates dropped, then the deterministic stratified train / val / test split.

A sample in both train and test is leakage, so duplicates go before the split."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from slimline.core.params.inputs import Data

if TYPE_CHECKING:
    pass
from slimline.compression.data.dataset import SPLITS, DataError, Dataset, Labelled


def drop_duplicates(ds: Dataset) -> tuple[Dataset, int]:
    """Keep the first of samples with identical features, so no sample can be in two splits."""
    flat = np.ascontiguousarray(ds.x.reshape(len(ds.x), -1))
    _, first = np.unique(flat, axis=0, return_index=True)
    keep = np.sort(first)
    return replace(ds, x=ds.x[keep], y=ds.y[keep]), len(ds.x) - len(keep)


def sample_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of identical samples from one key row per sample (the samples themselves, or a
    hash of each): the first index of each group and the group of each sample."""
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def split(ds: Dataset, data: Data, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Deterministic stratified train/val/test split."""
    index = split_indices(ds, data, seed)
    return {name: (ds.x[i], ds.y[i]) for name, i in index.items()}


def split_indices(ds: Labelled, data: Data, seed: int) -> dict[str, np.ndarray]:
    """The samples of each split (train, val, test), stratified by label, in the split's order."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(ds.y))
    try:
        rest, test = train_test_split(
            idx, test_size=data.test_fraction, stratify=ds.y, random_state=seed
        )
        val_share = data.val_fraction / (1 - data.test_fraction)
        train, val = train_test_split(
            rest, test_size=val_share, stratify=ds.y[rest], random_state=seed
        )
    except ValueError as e:
        found = np.bincount(ds.y[ds.y >= 0], minlength=len(ds.class_names))
        counts = {name: int(n) for name, n in zip(ds.class_names, found, strict=False)}
        where = f"data.path: {data.path}" if data.source != "digits" else "data"
        raise DataError(
            f"{where}: cannot split {len(ds.y)} samples of {len(counts)} classes stratified into "
            f"train/val/test ({e}); every class needs several samples (class counts: {counts})"
        ) from None
    return dict(zip(SPLITS, (train, val, test), strict=True))
