"""Image folders, `root/<class>/*.png|jpg|jpeg`, decoded to RGB (or grey) pixels.

A folder can outgrow memory: `decode_image_folder` decodes one once, in batches, into a
temporary file of uint8 pixels beside the outputs, keeping only per-sample bookkeeping (labels
and a content hash) in memory."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

if TYPE_CHECKING:
    pass
from slimline.compression.data.dataset import DataError, Dataset
from slimline.compression.data.rows import BLOCK_BYTES, StoredRows

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

DECODE_BATCH = 512

# the temporary file of decoded pixels, beside the prepared outputs while prepare runs
DECODED_PREFIX, DECODED_SUFFIX = ".decoded-", ".u8"


def image_folder(root: Path, size: int) -> Dataset:
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
