"""Data sources, the stratified split, normalization and the prepared files.

A source yields raw samples scaled to [0, 1] (images) or as given (tabular, signals).
`prepare` drops exact duplicates (a sample in both train and test is leakage), splits
stratified by label with the seed, standardizes with statistics of the train split only,
and the prepared files hold `x` exactly as the model consumes it plus what is needed to
preprocess new inputs.

Image folders can outgrow memory: `decode_image_folder` decodes one once, in batches, into a
temporary file of uint8 pixels beside the outputs, keeping only per-sample bookkeeping (labels
and a content hash) in memory; `StandardRows` then reads any rows of it standardized, block by
block, and `save_split` streams such rows into the prepared file (compression.prepare).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol

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
# Rows of float32 x handled at a time when a data set is streamed (about this many bytes),
# and at most this many images decoded per batch: memory stays flat however many samples.
BLOCK_BYTES = 4 << 20
DECODE_BATCH = 512
# the temporary file of decoded pixels, beside the prepared outputs while prepare runs
DECODED_PREFIX, DECODED_SUFFIX = ".decoded-", ".u8"


class DataError(InputError):
    """Bad or unreadable input data; the message names the file and what was expected."""


class Labelled(Protocol):
    """What the checks on labels and the prepared files need of a source besides its x."""

    @property
    def y(self) -> np.ndarray: ...
    @property
    def class_names(self) -> list[str]: ...
    @property
    def scale(self) -> float: ...
    @property
    def feature_names(self) -> tuple[str, ...]: ...
    @property
    def target(self) -> str | None: ...


@dataclass(frozen=True)
class Labels:
    """Labels with no x beside them (a streamed source's samples, after dropping duplicates)."""

    y: np.ndarray
    class_names: list[str]
    scale: float = 1.0
    feature_names: tuple[str, ...] = ()
    target: str | None = None


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
        h = hashlib.sha256(np.ascontiguousarray(self.x).data)  # its bytes, without a copy
        h.update(np.ascontiguousarray(self.y).data)
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
    """The whole folder in memory (see `decode_image_folder` for one bigger than memory)."""
    pixels, labels = [], []
    for label, f in _image_files(root):
        pixels.append(_decode(f, size))
        labels.append(label)
    x = to_unit(np.stack(pixels))  # (N, 3, size, size)
    if np.array_equal(x[:, 0], x[:, 1]) and np.array_equal(x[:, 0], x[:, 2]):
        x = x[:, :1]  # every image is grey: one channel
    classes = _image_classes(root)
    return Dataset(np.ascontiguousarray(x), np.asarray(labels, np.int64), classes, 255.0)


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1]: the values an image source's x holds."""
    return pixels.astype(np.float32) / np.float32(255.0)


def _image_classes(root: Path) -> list[str]:
    if not root.is_dir():
        raise DataError(f"data.path: {root}: folder not found (expected root/<class name>/*.png)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders (expected root/<class name>/*.png|jpg|jpeg)")
    return classes


def _image_files(root: Path) -> Iterator[tuple[int, Path]]:
    """(label, file) in the order the samples are numbered: classes sorted, files sorted; a
    class folder is listed only when its turn comes."""
    for label, name in enumerate(_image_classes(root)):
        files = sorted(f for f in (root / name).iterdir() if not f.name.startswith("."))
        if not files:
            raise DataError(f"{root / name}: empty class folder (expected *.png|jpg|jpeg images)")
        for f in files:
            if f.suffix.lower() not in IMAGE_SUFFIXES or not f.is_file():
                raise DataError(f"{f}: not an image (expected {', '.join(IMAGE_SUFFIXES)})")
            yield label, f


def _decode(f: Path, size: int) -> np.ndarray:
    """One image as (3, size, size) uint8 RGB, resized bilinearly."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            rgb = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{f}: unreadable image ({e})") from None
    except Image.DecompressionBombError as e:  # a bomb is bad input, not a crash
        raise DataError(f"{f}: unreadable image ({e})") from None
    return np.asarray(rgb).transpose(2, 0, 1)


@dataclass(frozen=True)
class DecodedImages:
    """An image folder decoded into a temporary file of (N, 3, S, S) uint8 pixels, with only
    per-sample bookkeeping in memory. Its x (N, C, S, S), C = 1 when every image is grey, holds
    the same values as `load_source` gives, and `sha256` is the same hash of them."""

    pixels: StoredRows  # (N, 3, S, S) uint8, rows of the temporary file
    y: np.ndarray  # (N,) int64
    keys: np.ndarray  # (N, 2) uint64: a 128-bit hash of each sample's pixels
    class_names: list[str]
    grey: bool
    sha256: str
    scale: float = 255.0
    feature_names: tuple[str, ...] = ()
    target: str | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1 if self.grey else 3, *self.pixels.shape[2:])

    def x(self, rows: np.ndarray | slice) -> np.ndarray:
        """Those samples (any order) as float32 in [0, 1]."""
        pixels = self.pixels[rows]
        return to_unit(pixels[:, :1] if self.grey else pixels)


@contextlib.contextmanager
def decode_image_folder(root: Path, size: int, scratch: Path) -> Iterator[DecodedImages]:
    """Decode `root/<class>/*` batch by batch into a temporary file in `scratch` (beside the
    outputs: /tmp may be memory), removed on leaving, also on error. A file that is not an
    image, wherever it is, raises DataError naming it before anything is used."""
    classes = _image_classes(root)  # a missing folder is refused before anything is made
    made = not scratch.exists()
    scratch.mkdir(parents=True, exist_ok=True)
    for stale in scratch.glob(f"{DECODED_PREFIX}*{DECODED_SUFFIX}"):  # left by a killed run
        stale.unlink(missing_ok=True)
    fd, name = tempfile.mkstemp(dir=scratch, prefix=DECODED_PREFIX, suffix=DECODED_SUFFIX)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            y, keys, grey, sha256 = _decode_all(root, size, out)
        pixels = StoredRows.of_file(path, (len(y), 3, size, size), np.dtype(np.uint8))
        yield DecodedImages(pixels, y, keys, classes, grey, sha256)
    finally:
        path.unlink(missing_ok=True)
        if made:  # a failed first run leaves no empty folder behind
            with contextlib.suppress(OSError):
                scratch.rmdir()


def _decode_all(root: Path, size: int, out: BinaryIO) -> tuple[np.ndarray, np.ndarray, bool, str]:
    """Write every image's pixels to `out`; the labels, keys, grey flag and Dataset.sha256."""
    labels: list[int] = []
    keys: list[np.ndarray] = []
    # Dataset.sha256 hashes x as float32, and x has one channel when every image is grey:
    # hash it both ways until an image in colour settles which
    rgb, grey, all_grey = hashlib.sha256(), hashlib.sha256(), True
    for pixels, batch_labels in _batches(root, size):
        labels += batch_labels
        digests = b"".join(hashlib.blake2b(p.tobytes(), digest_size=16).digest() for p in pixels)
        keys.append(np.frombuffer(digests, np.uint64).reshape(-1, 2))
        x = to_unit(pixels)
        rgb.update(x.tobytes())
        same = np.array_equal(pixels[:, 0], pixels[:, 1]) and np.array_equal(
            pixels[:, 0], pixels[:, 2]
        )
        all_grey = all_grey and bool(same)
        if all_grey:
            grey.update(x[:, :1].tobytes())
        out.write(pixels.tobytes())
    y = np.asarray(labels, np.int64)
    digest = grey if all_grey else rgb
    digest.update(y.tobytes())
    return y, np.concatenate(keys), all_grey, digest.hexdigest()


def _batches(root: Path, size: int) -> Iterator[tuple[np.ndarray, list[int]]]:
    """The folder's images as (B, 3, size, size) uint8 batches, with labels: B up to
    DECODE_BATCH, and to about BLOCK_BYTES of them as float32."""
    batch = min(DECODE_BATCH, max(1, BLOCK_BYTES // (4 * 3 * size * size)))
    pixels: list[np.ndarray] = []
    labels: list[int] = []
    for label, f in _image_files(root):
        pixels.append(_decode(f, size))
        labels.append(label)
        if len(pixels) == batch:
            yield np.stack(pixels), labels
            pixels, labels = [], []
    if pixels:
        yield np.stack(pixels), labels


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
    out = {name: (standardize_rows(x, mean, std), y) for name, (x, y) in parts.items()}
    return out, mean, std


def standardize_rows(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """x z-scored per channel (feature) as float32; rows at a time give the same values."""
    shape = channel_shape(x.ndim)
    out = np.subtract(x, mean.reshape(shape))
    out /= std.reshape(shape)  # in place: the same values as (x - mean) / std, one copy less
    return out.astype(np.float32, copy=False)


def channel_shape(ndim: int) -> tuple[int, ...]:
    """How per-channel statistics broadcast over an x of `ndim` (with N): (1, -1, 1, ...)."""
    return (1, -1) + (1,) * (ndim - 2)


def pixel_statistics(images: DecodedImages, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`standardize`'s per-channel mean and std of those samples, read block by block: each
    channel's count of every pixel level, then mean and std of the levels' float32 values
    summed exactly (math.fsum) in float64; equal to numpy's to float32 precision."""
    channels = images.input_shape[0]
    counts = np.zeros((channels, 256), np.int64)
    for block in blocks(np.sort(rows), images.input_shape):
        pixels = images.pixels[block][:, :channels]
        for c in range(channels):
            counts[c] += np.bincount(pixels[:, c].reshape(-1), minlength=256)
    levels = to_unit(np.arange(256, dtype=np.uint8)).astype(np.float64)
    mean, std = np.zeros(channels), np.zeros(channels)
    for c, count in enumerate(counts):
        n = max(int(count.sum()), 1)
        mean[c] = math.fsum(count * levels) / n
        std[c] = math.sqrt(math.fsum(count * (levels - mean[c]) ** 2) / n)
    std32 = std.astype(np.float32)
    return mean.astype(np.float32), np.where(std32 < MIN_STD, np.float32(1), std32)


def blocks(rows: np.ndarray, input_shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """`rows` in consecutive pieces of about BLOCK_BYTES of float32 x each."""
    size = max(1, BLOCK_BYTES // (4 * math.prod(input_shape)))
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class StandardRows:
    """Samples of a decoded image folder, standardized when read: the rows of one split's x,
    as `standardize` would make them, never all in memory. Indexing reads those rows;
    `blocks()` yields all of them in order, BLOCK_BYTES at a time."""

    def __init__(self, images: DecodedImages, rows: np.ndarray, mean, std):
        self.images, self.rows, self.mean, self.std = images, rows, mean, std
        self.shape = (len(rows), *images.input_shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        rows = self.rows[key]
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        start = 0
        for x in self._read(rows):  # a block at a time: no temporaries the size of out
            out[start : start + len(x)] = x
            start += len(x)
        return out

    def blocks(self) -> Iterator[np.ndarray]:
        return self._read(self.rows)

    def _read(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        for block in blocks(rows, self.shape[1:]):
            yield standardize_rows(self.images.x(block), self.mean, self.std)


def save_split(
    path: Path, x: np.ndarray | StandardRows, y: np.ndarray, ds: Labelled, mean, std
) -> None:
    """Write one split as an .npz; the caller makes it atomic (see slimline.compression.prepare).

    Written by hand rather than np.savez, which stamps the current time into the zip: the
    same data must give the same bytes, so DVC sees an unchanged output and skips downstream.
    A `StandardRows` x is streamed into its member block by block (the .npy header, then the
    rows): the same bytes as the whole array would give.
    """
    arrays = {
        "x": x.astype(np.float32) if isinstance(x, np.ndarray) else x,
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
            )
    except FileNotFoundError:
        raise DataError(f"{path}: prepared split not found; run the prepare stage first") from None
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as e:
        raise DataError(f"{path}: unreadable prepared split ({e}); rerun prepare") from None


class StoredRows:
    """Rows of an array stored uncompressed in an .npz (as `save_split` writes them), read
    with positioned reads when indexed: `x[a:b]`, `x[rows]` or `np.asarray(x)` for all of it."""

    def __init__(self, path: Path, member: str):
        self._open_member(path, member)

    @classmethod
    def of_file(cls, path: Path, shape: tuple[int, ...], dtype: np.dtype, offset: int = 0):
        """Rows of a raw C-ordered array of `shape` and `dtype` at `offset` in a plain file."""
        rows = cls.__new__(cls)
        rows._set(path, offset, shape, dtype)
        return rows

    def _set(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.offset, self.shape, self.dtype = path, offset, tuple(shape), dtype
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def _open_member(self, path: Path, member: str) -> None:
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
            offset = f.tell()
        if np.dtype(dtype).kind not in "fiub":  # object arrays are pickles: never read
            raise ValueError(
                f"{member} holds {np.dtype(dtype)} values; numbers expected (object arrays "
                "cannot be loaded when allow_pickle=False)"
            )
        if fortran:
            raise ValueError(f"{member} is stored in Fortran order; expected C order")
        self._set(path, offset, tuple(shape), np.dtype(dtype))

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


def load_splits(prepared: str | Path, lazy: bool = False) -> tuple[Split, Split, Split]:
    """(train, val, test); `lazy`: each split's x is read as batches ask for it (`StoredRows`),
    so a stage's memory does not grow with the data set."""
    train, val, test = (load_split(prepared, name, lazy=lazy) for name in SPLITS)
    return train, val, test
