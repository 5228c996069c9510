"""Text sources: a CSV / Parquet table with a text column and a label column, or a folder with
one sub-folder per class and one UTF-8 `.txt` file per document.

A text's identity is its normalized form (`tokenizer.normalized`): duplicates are found, and
leakage between splits is checked, on a hash of it. The learnability probe and the conflicting-
label check see texts as bags of token ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimline.compression.data.dataset import DataError
from slimline.compression.data.sources import read_table
from slimline.compression.data.tokenizer import normalized

TEXT_SUFFIX = ".txt"
# Bag-of-words width for the learnability probe: token ids folded into this many counts.
BOW_BUCKETS = 1024


@dataclass(frozen=True)
class Texts:
    """Raw texts with their labels; `Labelled` for the checks on labels."""

    texts: list[str]
    y: np.ndarray  # (N,) int64
    class_names: list[str]
    target: str | None = None  # table sources: the label column
    scale: float = 1.0
    feature_names: tuple[str, ...] = ()

    @property
    def keys(self) -> np.ndarray:
        """(N, 2) uint64: a 128-bit hash of each normalized text (`split.sample_groups`)."""
        digests = b"".join(
            hashlib.blake2b(normalized(t).encode(), digest_size=16).digest() for t in self.texts
        )
        return np.frombuffer(digests, np.uint64).reshape(-1, 2)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for text in self.texts:
            h.update(text.encode())
            h.update(b"\0")
        h.update(np.ascontiguousarray(self.y).data)
        return h.hexdigest()

    def take(self, rows: np.ndarray) -> Texts:
        return Texts([self.texts[i] for i in rows], self.y[rows], self.class_names, self.target)


def load_texts(path: Path, text_column: str, target: str | None) -> Texts:
    """A table (`target` names the label column) or a folder of class folders."""
    if path.is_dir():
        if target:
            raise DataError(
                f"data.target: null for a folder of texts (the class is the folder; got "
                f"{target!r} for {path})"
            )
        return _folder(path)
    if not target:
        raise DataError(f"data.target: the label column of the text file {path} (got None)")
    return _table(path, text_column, target)


def _table(path: Path, text_column: str, target: str) -> Texts:
    where = f"data.path: {path}"
    frame = read_table(path, where)
    columns = list(frame.columns)
    for field, column in (("data.text", text_column), ("data.target", target)):
        if column not in columns:
            raise DataError(f"{where}: no {field} column {column!r} (columns found: {columns})")
    texts = frame[text_column]
    missing = texts.isna() | frame[target].isna()
    if missing.any():
        rows = np.flatnonzero(missing.to_numpy())[:5].tolist()
        raise DataError(
            f"{where}: {int(missing.sum())} rows without a text or a label in columns "
            f"{text_column!r} / {target!r} (first rows: {rows}; expected both in every row)"
        )
    if not all(isinstance(t, str) for t in texts):
        raise DataError(f"{where}: column {text_column!r} must hold text (found numbers)")
    labels = frame[target].tolist()
    try:
        values = sorted(set(labels))
    except TypeError:  # mixed kinds (numbers and text): order them as text
        values = sorted(set(labels), key=str)
    index = {v: i for i, v in enumerate(values)}
    y = np.asarray([index[v] for v in labels], np.int64)
    return _checked(Texts(list(texts), y, [str(v) for v in values], target), where)


def _folder(root: Path) -> Texts:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"data.path: {root}: no class folders (expected root/<class>/*.txt)")
    texts, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in (root / name).iterdir() if not f.name.startswith("."))
        for f in files:
            if f.suffix.lower() != TEXT_SUFFIX or not f.is_file():
                raise DataError(f"{f}: not a text file (expected *{TEXT_SUFFIX}, UTF-8)")
            try:
                texts.append(f.read_text(encoding="utf-8"))
            except UnicodeDecodeError as e:
                raise DataError(f"{f}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            labels.append(label)
    return _checked(Texts(texts, np.asarray(labels, np.int64), classes), f"data.path: {root}")


def _checked(texts: Texts, where: str) -> Texts:
    empty = [i for i, t in enumerate(texts.texts) if not normalized(t)]
    if empty:
        raise DataError(
            f"{where}: {len(empty)} empty texts (first rows: {empty[:5]}; expected some text "
            "in every sample)"
        )
    return texts


def bag_of_words(ids: np.ndarray, pad: int) -> np.ndarray:
    """(N, BOW_BUCKETS) float32 counts of each row's token ids (padding left out): what the
    learnability probe sees of a text."""
    out = np.zeros((len(ids), BOW_BUCKETS), np.float32)
    rows, cols = np.nonzero(ids != pad)
    np.add.at(out, (rows, ids[rows, cols] % BOW_BUCKETS), 1)
    return out
