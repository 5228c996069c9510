"""Great Expectations suite over prepared text splits, failing closed like the array suite.

Each sample becomes a row: its label, how many tokens it has (padding left out), its smallest
and largest token id, whether `max_len` cut it, and a hash of its normalized text.
Four batches: the samples (labels, ids inside the vocabulary, no empty text), the class counts
per split, the train rows (how many texts were cut: a `max_len` far below the texts' length
throws most of each away), and the text hashes (the same text in two splits is leakage).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from slimline.compression.data.dataset import SPLITS
from slimline.compression.data.expectations import run_suites

# Texts cut at max_len: above this share of the train split, max_len is too small for the data.
MAX_CUT_SHARE = 0.5
# split: (ids, y, text keys, cut), as `tokenizer.encode` and `Texts.keys` give them
Parts = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def frames(parts: Parts, num_classes: int, pad: int) -> dict[str, pd.DataFrame]:
    rows = []
    for name, (ids, y, keys, cut) in parts.items():
        real = ids != pad
        n_tokens = real.sum(axis=1)
        rows.append(
            pd.DataFrame(
                {
                    "split": name,
                    "y": y,
                    "n_tokens": n_tokens,
                    "min_id": np.where(real, ids, np.iinfo(np.int32).max).min(axis=1),
                    "max_id": np.where(real, ids, -1).max(axis=1),
                    "cut": cut.astype(np.int64),
                    "text_hash": [f"{a:016x}{b:016x}" for a, b in keys.tolist()],
                }
            )
        )
    samples = pd.concat(rows, ignore_index=True)
    counts = pd.DataFrame(
        [
            {"split": name, "label": k, "count": int(np.sum(y == k))}
            for name, (_, y, _, _) in parts.items()
            for k in range(num_classes)
        ]
    )
    # duplicates inside a split are harmless (dedupe keeps the first); across splits, leakage
    hashes = samples.drop_duplicates(["split", "text_hash"])[["split", "text_hash"]]
    return {
        "samples": samples,
        "class_counts": counts,
        "train": samples[samples["split"] == "train"],
        "leakage": hashes,
    }


def suites(num_classes: int, vocab_size: int, min_tokens: int, min_per_class: int) -> dict:
    import great_expectations.expectations as gxe

    return {
        "samples": [
            gxe.ExpectColumnValuesToNotBeNull(column="y"),
            gxe.ExpectColumnValuesToBeInSet(column="y", value_set=list(range(num_classes))),
            gxe.ExpectColumnDistinctValuesToBeInSet(column="split", value_set=list(SPLITS)),
            # an empty text is only its special tokens ([CLS] [SEP])
            gxe.ExpectColumnValuesToBeBetween(column="n_tokens", min_value=min_tokens),
            gxe.ExpectColumnValuesToBeBetween(column="min_id", min_value=0),
            gxe.ExpectColumnValuesToBeBetween(column="max_id", max_value=vocab_size - 1),
        ],
        "class_counts": [
            gxe.ExpectTableRowCountToEqual(value=len(SPLITS) * num_classes),
            gxe.ExpectColumnValuesToBeBetween(column="count", min_value=min_per_class),
        ],
        "train": [gxe.ExpectColumnMeanToBeBetween(column="cut", max_value=MAX_CUT_SHARE)],
        "leakage": [gxe.ExpectColumnValuesToBeUnique(column="text_hash")],
    }


def validate_text(
    parts: Parts,
    num_classes: int,
    vocab_size: int,
    pad: int,
    min_tokens: int,
    min_per_class: int,
    source: str,
) -> list[dict]:
    """Run the text suite; the entries, or DataValidationError naming what failed."""
    return run_suites(
        frames(parts, num_classes, pad),
        suites(num_classes, vocab_size, min_tokens, min_per_class),
        source,
    )
