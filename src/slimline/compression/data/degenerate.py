"""Data no classifier can learn from, refused before the split with a message saying what.

Each check raises DataError (exit 2) naming the source: a single class, a declared class with
no samples or too few to split, samples that all have the same features, and exact duplicates
whose labels conflict in a large share of the data (below that share they are only reported).
The checks on features also work from groups of identical samples (`split.sample_groups` over a
hash of each), for sources streamed rather than held in memory.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from slimline.compression.data.dataset import SPLITS, DataError, Dataset, Labelled
from slimline.compression.data.split import sample_groups

# Exact duplicates with different labels: refused when the distinct feature vectors that carry
# more than one label exceed this share of all distinct feature vectors.
MAX_CONFLICT_SHARE = 0.1


def check_classes(ds: Labelled, where: str, min_per_class: int) -> None:
    """At least two classes, every declared class present, each with a sample per split."""
    counts = np.bincount(ds.y, minlength=len(ds.class_names))
    present = np.flatnonzero(counts)
    if len(present) < 2:
        name = ds.class_names[present[0]] if len(present) else "none"
        column = f"target column {ds.target!r} holds" if ds.target else "the labels hold"
        raise DataError(
            f"{where}: {column} a single class {name!r} in all {len(ds.y)} samples "
            "(expected at least two classes)"
        )
    empty = [f"{ds.class_names[k]!r} (label {k})" for k in np.flatnonzero(counts == 0)]
    if empty:
        raise DataError(
            f"{where}: class {', '.join(empty)} has no samples ({len(ds.class_names)} classes "
            "declared by class_names; expected samples of every class)"
        )
    need = len(SPLITS) * min_per_class
    few = [(ds.class_names[k], int(counts[k])) for k in np.flatnonzero(counts < need)]
    if few:
        named = ", ".join(f"{name!r} has {n}" for name, n in few)
        raise DataError(
            f"{where}: too few samples to split: class {named} (after dropping duplicates); "
            f"expected at least {need} per class, data.min_per_class {min_per_class} in each of "
            "train/val/test"
        )


def check_split_counts(
    parts: Mapping[str, tuple[object, np.ndarray]], ds: Labelled, where: str, min_per_class: int
) -> None:
    """Every class in every split (x or rows, y) with at least min_per_class samples."""
    totals = np.bincount(ds.y, minlength=len(ds.class_names))
    short = [
        f"class {ds.class_names[k]!r} has {int((y == k).sum())} in {name} "
        f"(of {int(totals[k])} samples)"
        for name, (_, y) in parts.items()
        for k in range(len(ds.class_names))
        if (y == k).sum() < min_per_class
    ]
    if short:
        raise DataError(
            f"{where}: too few samples to split: {'; '.join(short[:5])}; expected at least "
            f"data.min_per_class {min_per_class} per class in each split (add samples of those "
            "classes, lower data.min_per_class or raise data.val_fraction / test_fraction)"
        )


def check_features_vary(ds: Dataset, where: str) -> None:
    """Refuse when every sample has the same features: nothing to tell the classes apart."""
    flat = ds.x.reshape(len(ds.x), -1)
    if len(flat) > 1 and np.array_equal(flat.min(axis=0), flat.max(axis=0)):
        raise _all_alike(len(flat), flat.shape[1], where)


def check_samples_vary(first: np.ndarray, inverse: np.ndarray, n_values: int, where: str) -> None:
    """check_features_vary from the groups of identical samples (`split.sample_groups`): every
    value constant across samples is every sample alike, one group for all of them."""
    if len(inverse) > 1 and len(first) == 1:
        raise _all_alike(len(inverse), n_values, where)


def _all_alike(n: int, n_values: int, where: str) -> DataError:
    return DataError(
        f"{where}: all {n} samples have the same features (every one of the "
        f"{n_values} values is constant across samples); expected features that vary "
        "between samples"
    )


def conflicting_labels(ds: Dataset, where: str) -> dict:
    """Exact duplicate features with different labels: counted, refused above a share."""
    flat = np.ascontiguousarray(ds.x.reshape(len(ds.x), -1))
    return label_conflicts(*sample_groups(flat), ds, where)


def label_conflicts(first: np.ndarray, inverse: np.ndarray, ds: Labelled, where: str) -> dict:
    """conflicting_labels from the groups of identical samples (`split.sample_groups`)."""
    labels = np.unique(np.stack([inverse, ds.y]), axis=1)  # distinct (group, label) pairs
    per_group = np.bincount(labels[0], minlength=len(first))
    conflicted = np.flatnonzero(per_group > 1)
    samples = int(np.isin(inverse, conflicted).sum())
    report: dict = {
        "features": int(len(conflicted)),
        "samples": samples,
        "share": round(len(conflicted) / max(len(first), 1), 4),
        "max_share": MAX_CONFLICT_SHARE,
    }
    if len(conflicted):
        group = conflicted[np.argmin(first[conflicted])]  # the earliest in the file
        members = np.flatnonzero(inverse == group)
        other = members[ds.y[members] != ds.y[members[0]]][0]
        a, b = int(members[0]), int(other)
        report["example"] = {
            "samples": [a, b],
            "labels": [ds.class_names[ds.y[a]], ds.class_names[ds.y[b]]],
        }
        if report["share"] > MAX_CONFLICT_SHARE:
            raise DataError(
                f"{where}: {len(conflicted)} of {len(first)} distinct feature vectors "
                f"({samples} samples) carry conflicting labels, e.g. samples {a} and {b} have "
                f"the same features and labels {report['example']['labels']}; expected at most "
                f"{MAX_CONFLICT_SHARE:.0%} (duplicates keep the first label)"
            )
    return report
