"""Data sources, the stratified split, normalization and the prepared files.

A source yields raw samples scaled to [0, 1] (images) or as given (tabular, signals).
`prepare` drops exact duplicates (a sample in both train and test is leakage), splits
stratified by label with the seed, standardizes with statistics of the train split only,
and the prepared files hold `x` exactly as the model consumes it plus what is needed to
preprocess new inputs.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slimline.core.errors import InputError
from slimline.core.params import Data, layout_problem, resolve, resolve_layout

if TYPE_CHECKING:
    import pandas as pd

SPLITS = ("train", "val", "test")
# a prepared x of (N, *input_shape): the layout by len(input_shape)
LAYOUTS = {1: "tabular", 2: "signal", 3: "image"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
# The value of the `prepared` array that marks a prepared split: its x is already the model's
# input (standardized), so `slimline predict` must take it as it is.
PREPARED_MARKER = "slimline-prepared-split/1"
# Standard deviations below this are treated as 1: a constant feature (a border pixel that is
# always 0) must not blow up to huge values in val/test.
MIN_STD = 1e-6


class DataError(InputError):
    """Bad or unreadable input data; the message names the file and what was expected."""


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # (N, F) tabular, (N, C, L) signals or (N, C, H, W) images, float32
    y: np.ndarray  # (N,) int64
    class_names: list[str]
    scale: float  # raw value / scale = the value before standardization
    feature_names: tuple[str, ...] = ()  # table sources: the feature columns, in order
    target: str | None = None  # table sources: the label column

    @property
    def sha256(self) -> str:
        h = hashlib.sha256(np.ascontiguousarray(self.x).tobytes())
        h.update(self.y.tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class Split:
    """One prepared split, as stored in `<prepared>/<name>.npz`."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    mean: np.ndarray  # per channel (signals, images) or per feature (tabular)
    std: np.ndarray
    scale: float
    feature_names: tuple[str, ...] = ()  # table sources: the feature columns, in order
    target: str | None = None  # table sources: the label column

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def layout(self) -> str:
        return layout_of(self.input_shape)


def layout_of(input_shape: tuple[int, ...]) -> str:
    """tabular (F,), signal (C, L) or image (C, H, W): what a model's input shape holds."""
    return LAYOUTS.get(len(input_shape), "unknown")


def load_source(data: Data, base: Path) -> Dataset:
    if data.source == "digits":
        return _digits()
    path = resolve(data.path or "", base)
    if data.source == "npz":
        return _npz(path, data.layout)
    if data.source == "table":
        return _table(path, data.target or "")
    return _image_folder(path, data.image_size)


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


def _image_folder(root: Path, size: int) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    if not root.is_dir():
        raise DataError(f"data.path: {root}: folder not found (expected root/<class name>/*.png)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders (expected root/<class name>/*.png|jpg|jpeg)")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in (root / name).iterdir() if not f.name.startswith("."))
        if not files:
            raise DataError(f"{root / name}: empty class folder (expected *.png|jpg|jpeg images)")
        for f in files:
            if f.suffix.lower() not in IMAGE_SUFFIXES or not f.is_file():
                raise DataError(f"{f}: not an image (expected {', '.join(IMAGE_SUFFIXES)})")
            try:
                with Image.open(f) as im:
                    rgb = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                raise DataError(f"{f}: unreadable image ({e})") from None
            images.append(np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0)
            labels.append(label)
    x = np.stack(images)  # (N, 3, size, size)
    if np.array_equal(x[:, 0], x[:, 1]) and np.array_equal(x[:, 0], x[:, 2]):
        x = x[:, :1]  # every image is grey: one channel
    return Dataset(np.ascontiguousarray(x), np.asarray(labels, np.int64), classes, 255.0)


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


def drop_duplicates(ds: Dataset) -> tuple[Dataset, int]:
    """Keep the first of samples with identical features, so no sample can be in two splits."""
    flat = np.ascontiguousarray(ds.x.reshape(len(ds.x), -1))
    _, first = np.unique(flat, axis=0, return_index=True)
    keep = np.sort(first)
    return replace(ds, x=ds.x[keep], y=ds.y[keep]), len(ds.x) - len(keep)


def split(ds: Dataset, data: Data, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Deterministic stratified train/val/test split."""
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
    return {name: (ds.x[i], ds.y[i]) for name, i in zip(SPLITS, (train, val, test), strict=True)}


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
    shape = channel_shape(x_train.ndim)
    out = {
        name: (((x - mean.reshape(shape)) / std.reshape(shape)).astype(np.float32), y)
        for name, (x, y) in parts.items()
    }
    return out, mean, std


def channel_shape(ndim: int) -> tuple[int, ...]:
    """How per-channel statistics broadcast over an x of `ndim` (with N): (1, -1, 1, ...)."""
    return (1, -1) + (1,) * (ndim - 2)


def save_split(path: Path, x: np.ndarray, y: np.ndarray, ds: Dataset, mean, std) -> None:
    """Write one split as an .npz; the caller makes it atomic (see slimline.compression.prepare).

    Written by hand rather than np.savez, which stamps the current time into the zip: the
    same data must give the same bytes, so DVC sees an unchanged output and skips downstream.
    """
    arrays = {
        "x": x.astype(np.float32),
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
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(info, "w") as f:
                np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)


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
            )
    except FileNotFoundError:
        raise DataError(f"{path}: prepared split not found; run the prepare stage first") from None
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as e:
        raise DataError(f"{path}: unreadable prepared split ({e}); rerun prepare") from None


class StoredRows:
    """Rows of an array stored uncompressed in an .npz (as `save_split` writes them), read
    with positioned reads when indexed: `x[a:b]`, `x[rows]` or `np.asarray(x)` for all of it."""

    def __init__(self, path: Path, member: str):
        with zipfile.ZipFile(path) as z:
            info = z.getinfo(f"{member}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{member} is compressed; it cannot be read row by row")
        with path.open("rb") as f:
            f.seek(info.header_offset + 26)  # the local header's name and extra lengths
            name_len, extra_len = np.frombuffer(f.read(4), "<u2")
            f.seek(info.header_offset + 30 + int(name_len) + int(extra_len))
            fmt = np.lib.format
            version = fmt.read_magic(f)
            read_header = (
                fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if np.dtype(dtype).kind not in "fiub":  # object arrays are pickles: never read
            raise ValueError(
                f"{member} holds {np.dtype(dtype)} values; numbers expected (object arrays "
                "cannot be loaded when allow_pickle=False)"
            )
        if fortran:
            raise ValueError(f"{member} is stored in Fortran order; expected C order")
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: int | slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            rows = self._block(start, max(start, stop))
            return rows[::step] if step != 1 else rows
        if isinstance(key, int | np.integer):
            return self._block(int(key) % len(self), int(key) % len(self) + 1)[0]
        rows = np.asarray(key, dtype=np.int64) % max(len(self), 1)
        order = np.argsort(rows, kind="stable")
        ascending = rows[order]
        runs = np.split(ascending, np.flatnonzero(np.diff(ascending) != 1) + 1)
        found = np.concatenate([self._block(r[0], r[-1] + 1) for r in runs if len(r)] or [
            self._block(0, 0)
        ])  # fmt: skip
        out = np.empty_like(found)
        out[order] = found  # back in the order asked for
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)

    def _block(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1, one positioned read (the file is opened per call: forked
        DataLoader workers and threads never share a file offset)."""
        count = stop - start
        fd = os.open(self.path, os.O_RDONLY)
        try:
            data = os.pread(fd, count * self.row_bytes, self.offset + start * self.row_bytes)
        finally:
            os.close(fd)
        return np.frombuffer(data, self.dtype).reshape(count, *self.shape[1:]).copy()


def load_splits(prepared: str | Path, lazy_train: bool = False) -> tuple[Split, Split, Split]:
    """(train, val, test); `lazy_train`: the train split's x is read as batches ask for it."""
    train = load_split(prepared, "train", lazy=lazy_train)
    return train, load_split(prepared, "val"), load_split(prepared, "test")
