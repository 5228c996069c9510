"""The prepared files: one reproducible .npz per split, written by hand and read lazily."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from slimline.compression.data.dataset import SPLITS, DataError, Labelled, Split, Vocab
from slimline.compression.data.normalize import StandardRows
from slimline.compression.data.rows import StoredRows

# The value of the `prepared` array that marks a prepared split: its x is already the model's
# input (standardized), so `slimline predict` must take it as it is.
PREPARED_MARKER = "slimline-prepared-split/1"


def save_split(
    path: Path,
    x: np.ndarray | StandardRows,
    y: np.ndarray,
    ds: Labelled,
    mean,
    std,
    vocab: Vocab | None = None,
    teacher: tuple[np.ndarray, Vocab] | None = None,
) -> None:
    """Write one split as an .npz; the caller makes it atomic (see data.prepare).

    Written by hand rather than np.savez, which stamps the current time into the zip: the
    same data must give the same bytes, so DVC sees an unchanged output and skips downstream.
    A `StandardRows` x is streamed into its member block by block (the .npy header, then the
    rows): the same bytes as the whole array would give. Token ids keep their tokenizer's
    `vocab` (size, pad id) beside them.
    """
    arrays = {
        "x": _stored(x) if isinstance(x, np.ndarray) else x,
        "y": y.astype(np.int64),
        "class_names": np.asarray(ds.class_names, dtype=np.str_),
        "mean": mean,
        "std": std,
        "scale": np.float32(ds.scale),
        "prepared": np.str_(PREPARED_MARKER),
    }
    if ds.feature_names:
        arrays["feature_names"] = np.asarray(ds.feature_names, dtype=np.str_)
        arrays["target"] = np.str_(ds.target or "")
    if vocab is not None:
        arrays["vocab"] = np.asarray(vocab, np.int64)
    if teacher is not None:
        arrays["teacher_x"] = _stored(teacher[0])
        arrays["teacher_vocab"] = np.asarray(teacher[1], np.int64)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, value in arrays.items():
            array = value if isinstance(value, StandardRows) else np.asarray(value)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            # the expected size decides whether the member needs ZIP64 (over 2 GiB); the
            # header is rewritten with the real size and CRC when the member closes
            info.file_size = math.prod(array.shape) * array.dtype.itemsize + 128
            with z.open(info, "w") as f:
                if isinstance(array, StandardRows):
                    _stream_rows(f, array)
                else:
                    np.lib.format.write_array(f, array, allow_pickle=False)


def _stream_rows(f: IO[bytes], x: StandardRows) -> None:
    """The .npy of x written as np.lib.format.write_array writes a C-ordered array."""
    header = {"descr": np.lib.format.dtype_to_descr(x.dtype), "fortran_order": False}
    np.lib.format.write_array_header_1_0(f, {**header, "shape": tuple(map(int, x.shape))})
    written = 0
    for block in x.blocks():
        f.write(np.ascontiguousarray(block, x.dtype).data.cast("B"))
        written += len(block)
    if written != x.shape[0]:
        raise RuntimeError(f"wrote {written} rows of x, expected {x.shape[0]}")


def load_split(prepared: str | Path, name: str, lazy: bool = False) -> Split:
    """One prepared split; `lazy`: its x read from the file row by row as asked for
    (`StoredRows`), so a split bigger than memory is never loaded whole."""
    path = Path(prepared) / f"{name}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            return Split(
                x=StoredRows(path, "x") if lazy else z["x"],  # type: ignore[arg-type]
                y=z["y"],
                class_names=[str(c) for c in z["class_names"]],
                mean=z["mean"],
                std=z["std"],
                scale=float(z["scale"]),
                feature_names=tuple(str(c) for c in z.get("feature_names", [])),
                target=str(z["target"]) if "target" in z.files else None,
                vocab=_vocab(z, "vocab"),
                teacher_x=_teacher_x(z, path, lazy),
                teacher_vocab=_vocab(z, "teacher_vocab"),
            )
    except FileNotFoundError:
        raise DataError(f"{path}: prepared split not found; run the prepare stage first") from None
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as e:
        raise DataError(f"{path}: unreadable prepared split ({e}); rerun prepare") from None


def _vocab(z: np.lib.npyio.NpzFile, key: str) -> Vocab | None:
    return Vocab(*map(int, z[key])) if key in z.files else None


def _teacher_x(z: np.lib.npyio.NpzFile, path: Path, lazy: bool) -> np.ndarray | None:
    if "teacher_x" not in z.files:
        return None
    return StoredRows(path, "teacher_x") if lazy else z["teacher_x"]  # type: ignore[return-value]


def load_splits(prepared: str | Path, lazy: bool = False) -> tuple[Split, Split, Split]:
    """(train, val, test); `lazy`: each split's x is read as batches ask for it (`StoredRows`),
    so a stage's memory does not grow with the data set."""
    train, val, test = (load_split(prepared, name, lazy=lazy) for name in SPLITS)
    return train, val, test


def _stored(x: np.ndarray) -> np.ndarray:
    """Token ids stay integers (int32: a vocabulary fits, at half the bytes of int64);
    everything else is float32, as the model consumes it."""
    return x.astype(np.int32 if x.dtype.kind in "iu" else np.float32)
