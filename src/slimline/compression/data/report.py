"""What prepare writes besides the splits: the output paths, and reports/data_validation.json
(the source, its hash, the duplicates and conflicts, the learnability probe, each split's
hash and class counts, every data expectation)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from slimline.compression.data.dataset import SPLITS
from slimline.core.params.schema import Params


def output_paths(params: Params, root: Path) -> list[Path]:
    prepared = root / params.paths.prepared
    return [prepared / f"{name}.npz" for name in SPLITS] + [root / params.paths.data_report]


def digest_of(*arrays: np.ndarray) -> hashlib._Hash:
    """sha256 of the arrays' bytes one after the other, without copies of them."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)
    return digest


def split_entry(digest: hashlib._Hash, y: np.ndarray, num_classes: int) -> dict:
    """One split in the report; `digest` has hashed its x bytes, then its y bytes."""
    return {
        "samples": len(y),
        "sha256": digest.hexdigest(),
        "class_counts": [int((y == k).sum()) for k in range(num_classes)],
    }


def data_report(source, sha256, ds, dropped, conflicts, learnability, splits, entries) -> dict:
    return {
        "success": True,
        "source": source,
        "sha256": sha256,
        "class_names": ds.class_names,
        "duplicates_dropped": dropped,
        "conflicting_labels": conflicts,
        "learnability": learnability,
        "splits": splits,
        "expectations": entries,
    }
