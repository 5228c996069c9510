"""Data sources: the bundled digits, an .npz of arrays, a CSV / Parquet table, an image folder.

A source yields raw samples scaled to [0, 1] (images) or as given (tabular, signals); the
prepared files hold `x` exactly as the model consumes it (data.prepare)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slimline.core.params.inputs import Data
from slimline.core.params.layouts import layout_problem, resolve, resolve_layout

if TYPE_CHECKING:
    import pandas as pd
from slimline.compression.data.dataset import DataError, Dataset
from slimline.compression.data.images import image_folder

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def load_source(data: Data, base: Path) -> Dataset:
    if data.source == "digits":
        return _digits()
    path = resolve(data.path or "", base)
    if data.source == "npz":
        return _npz(path, data.layout)
    if data.source == "table":
        return _table(path, data.target or "")
    return image_folder(path, data.image_size)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images[:, None, :, :] / 16.0).astype(np.float32)  # (N, 1, 8, 8), pixels 0..16
    return Dataset(x, bunch.target.astype(np.int64), [str(c) for c in bunch.target_names], 16.0)


def _npz(path: Path, layout: str = "auto") -> Dataset:
    if not path.is_file():
        raise DataError(f"data.path: {path}: file not found (expected an .npz with x and y)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as e:
        raise DataError(
            f"{path}: not a readable .npz ({type(e).__name__}: {e}); expected numpy.savez "
            "output with arrays x and y"
        ) from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(
                f"{path}: missing array {key!r} (expected x: (N, F), (N, [C,] L) or "
                "(N, [C,] H, W) features, "
                f"y: (N,) integer labels; found {sorted(arrays) or 'no arrays'})"
            )
    x, y = arrays["x"], arrays["y"]
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: x must be numeric (got {x.dtype} {x.shape})")
    problem = layout_problem(layout, x.shape, str(path))
    if problem:
        raise DataError(problem)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y must be (N,) integer labels (got {y.dtype} {y.shape})")
    if len(x) != len(y):
        raise DataError(f"{path}: x and y must have the same length (got {len(x)} and {len(y)})")
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    x = x.astype(np.float32) / np.float32(scale)
    if (resolve_layout(layout, x.ndim), x.ndim) in (("image", 3), ("signal", 2)):
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W); (N, L) -> (N, 1, L)
    names = _class_names(path, arrays.get("class_names"), y)
    outside = np.unique(y[(y < 0) | (y >= len(names))])
    if len(outside):  # GX checks this too, but a stratified split would trip over it first
        raise DataError(
            f"{path}: y must hold labels 0..{max(len(names), 1) - 1}, one per class name "
            f"(got {', '.join(map(str, outside[:5].tolist()))})"
        )
    return Dataset(x, y.astype(np.int64), names, scale)


def _class_names(path: Path, given: np.ndarray | None, y: np.ndarray) -> list[str]:
    if given is None:
        return [str(i) for i in range(int(y.max()) + 1 if len(y) else 0)]
    if given.ndim != 1 or given.dtype.kind not in "US":
        raise DataError(f"{path}: class_names must be a 1-d array of strings (got {given.dtype})")
    return [str(c) for c in given]


def _table(path: Path, target: str) -> Dataset:
    """A CSV / Parquet file: `target` is the label column, every other column a feature."""
    where = f"data.path: {path}"
    frame = read_table(path, where)
    columns = [str(c) for c in frame.columns]
    if target not in columns:
        raise DataError(
            f"{where}: no target column {target!r} (data.target; columns found: {columns})"
        )
    features = [c for c in columns if c != target]
    if not features:
        raise DataError(
            f"{where}: no feature columns besides the target {target!r} (columns found: {columns})"
        )
    x = table_features(frame, features, target, where)
    labels = frame[target].tolist()
    try:
        values = sorted(set(labels))
    except TypeError:  # mixed kinds (numbers and text): order them as text
        values = sorted(set(labels), key=str)
    names = [str(v) for v in values]
    if len(names) < 2:
        raise DataError(
            f"{where}: target column {target!r} holds a single class {names[0]!r} "
            "(expected at least two classes)"
        )
    if len(set(names)) != len(names):
        raise DataError(f"{where}: target column {target!r} has labels that read the same: {names}")
    index = {v: i for i, v in enumerate(values)}
    y = np.asarray([index[v] for v in labels], np.int64)
    return Dataset(x, y, names, 1.0, tuple(features), target)


def read_table(path: Path, where: str) -> pd.DataFrame:
    """A CSV or Parquet file (by its suffix) as a DataFrame; `where` starts every message."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{where}: expected a table file ending in {', '.join(TABLE_SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"{where}: file not found (expected a CSV or Parquet table)")
    try:
        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:  # parser, Arrow and empty-file errors
        kind = "CSV" if suffix == ".csv" else "Parquet"
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(
            f"{where}: not a readable {kind} file ({type(e).__name__}: {message})"
        ) from None
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DataError(f"{where}: no rows (expected a header and one row per sample)")
    return frame


def table_features(
    frame: pd.DataFrame, features: list[str], target: str | None, where: str
) -> np.ndarray:
    """The feature columns as (N, F) float32, after checking that they are numbers and that no
    cell (of the features or the target) is empty; `where` starts every message."""
    from pandas.api.types import is_numeric_dtype

    text = sorted(c for c in features if not is_numeric_dtype(frame[c]))
    if text:
        raise DataError(
            f"{where}: non-numeric feature columns {text} (expected numbers; encode them first)"
        )
    checked = features + ([target] if target is not None else [])
    counts = frame[checked].isna().sum()
    missing = {str(c): int(n) for c, n in counts.items() if n}
    if missing:
        raise DataError(
            f"{where}: missing values in columns {sorted(missing)} (empty cells per column: "
            f"{missing}; expected a value in every cell: fill or drop those rows first)"
        )
    return np.ascontiguousarray(frame[features].to_numpy(dtype=np.float32))
