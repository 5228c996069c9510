"""What `slimline predict` feeds a text model: raw texts, tokenized with the bundle's own
tokenizer.json exactly as prepare tokenized the training texts (`tokenizer.encode`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slimline.compression.data.sources import TABLE_SUFFIXES, read_table
from slimline.compression.data.tokenizer import encode, load_tokenizer
from slimline.core.errors import InputError

if TYPE_CHECKING:
    from slimline.compression.release.predict import Preprocessing

TEXT_SUFFIX = ".txt"


def text_inputs(
    file: Path, tokenizer: Path, pre: Preprocessing
) -> tuple[np.ndarray, np.ndarray | None]:
    """(token ids (N, max_len), labels when the table has the target column)."""
    if not file.is_file():
        raise InputError(
            f"{file}: file not found (expected a CSV / Parquet table with a "
            f"{pre.text_column!r} column, or a {TEXT_SUFFIX} file of one text per line)"
        )
    texts, labels = _read(file, pre)
    if not texts:
        raise InputError(f"{file}: no texts (expected at least one non-empty line or row)")
    tok = load_tokenizer(tokenizer, "the model's tokenizer")
    ids, _ = encode(tok, texts, pre.input_shape[0])
    return ids, labels


def _read(file: Path, pre: Preprocessing) -> tuple[list[str], np.ndarray | None]:
    suffix = file.suffix.lower()
    if suffix == TEXT_SUFFIX:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise InputError(f"{file}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        return [line for line in lines if line.strip()], None
    if suffix not in TABLE_SUFFIXES:
        raise InputError(f"{file}: expected {TEXT_SUFFIX} or {', '.join(TABLE_SUFFIXES)}")
    frame = read_table(file, str(file))
    column = pre.text_column or ""
    if column not in frame.columns:
        raise InputError(
            f"{file}: no text column {column!r} (columns found: {list(map(str, frame.columns))})"
        )
    texts = ["" if v is None or v != v else str(v) for v in frame[column].tolist()]
    if pre.target is None or pre.target not in frame.columns:
        return texts, None
    return texts, pre.labels(file, frame)
