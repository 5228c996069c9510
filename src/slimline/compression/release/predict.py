"""Classify files with the deployable model, using onnxruntime and numpy (Pillow to decode
images, pandas to read tables): what a consumer of dist/model.onnx needs, with no torch and
no slimline project."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slimline.compression.data.dataset import layout_of
from slimline.compression.data.images import IMAGE_SUFFIXES
from slimline.compression.data.normalize import channel_shape
from slimline.compression.data.sources import TABLE_SUFFIXES, read_table, table_features
from slimline.compression.data.tokenizer import TOKENIZER_FILE
from slimline.compression.release.text_inputs import text_inputs
from slimline.compression.runtime.int8_target import warning
from slimline.compression.runtime.onnx_io import read_metadata, run_logits, session
from slimline.core.cpu import cpu_info
from slimline.core.errors import InputError


@dataclass(frozen=True)
class Preprocessing:
    """From the model's metadata_props: shape, normalization and class names."""

    input_shape: tuple[int, ...]
    mean: np.ndarray
    std: np.ndarray
    scale: float
    class_names: list[str]
    feature_names: tuple[str, ...] = ()  # a model trained on a table: its feature columns
    target: str | None = None  # ... and its label column (of a text table too)
    text_column: str | None = None  # a text model: the column its texts are read from

    @classmethod
    def from_model(cls, path: Path) -> Preprocessing:
        meta = read_metadata(path)
        try:
            norm = json.loads(meta["normalization"])
            return cls(
                tuple(json.loads(meta["input_shape"])),
                np.asarray(norm["mean"], np.float32),
                np.asarray(norm["std"], np.float32),
                float(norm["scale"]),
                json.loads(meta["class_names"]),
                tuple(json.loads(meta.get("feature_names", "[]"))),
                meta.get("target") or None,
                meta.get("text_column"),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise InputError(
                f"{path}: metadata lacks {e} (expected input_shape, normalization and "
                "class_names, as slimline's export stage writes them)"
            ) from None

    @property
    def layout(self) -> str:
        """tabular (F,), signal (C, L) or image (C, H, W), read from the input shape."""
        return layout_of(self.input_shape)

    def labels(self, file: Path, frame: Any) -> np.ndarray:
        """The class index of each row's value in the table's target column (features or
        texts alike); values that are not the model's classes are refused, naming them."""
        index = {name: k for k, name in enumerate(self.class_names)}
        values = [str(v) for v in frame[self.target].tolist()]
        unknown = sorted({v for v in values if v not in index})
        if unknown:
            raise InputError(
                f"{file}: target column {self.target!r} holds values that are not the model's "
                f"classes: {unknown[:5]} (classes: {self.class_names})"
            )
        return np.asarray([index[v] for v in values], np.int64)

    def standardize(self, x: np.ndarray) -> np.ndarray:
        """x (N, *input_shape) already in [0, 1] (raw / scale) -> the model's input: per
        feature (tabular) or per channel (signals, images), as at prepare."""
        shape = channel_shape(1 + len(self.input_shape))
        return ((x - self.mean.reshape(shape)) / self.std.reshape(shape)).astype(np.float32)


def load_inputs(file: Path, pre: Preprocessing) -> tuple[np.ndarray, np.ndarray | None]:
    """(x as the model consumes it, labels if the file has them)."""
    if not file.is_file():
        raise InputError(
            f"{file}: file not found (expected an image, an .npz with x or a CSV/Parquet table)"
        )
    if file.suffix.lower() in IMAGE_SUFFIXES:
        return pre.standardize(_image(file, pre.input_shape)[None]), None
    if file.suffix.lower() in TABLE_SUFFIXES:
        return _table(file, pre)
    if file.suffix.lower() != ".npz":
        raise InputError(f"{file}: expected {', '.join(IMAGE_SUFFIXES + TABLE_SUFFIXES)} or .npz")
    try:
        with np.load(file, allow_pickle=False) as z:
            x, y = z["x"], (z["y"] if "y" in z.files else None)
            prepared = "prepared" in z.files
            stats = (z["mean"], z["std"]) if prepared and {"mean", "std"} <= set(z.files) else None
    except Exception as e:
        raise InputError(f"{file}: not a readable .npz with an array x ({e})") from None
    if prepared:  # a prepared split: x is already standardized, exactly as the model consumes it
        return _prepared(file, x, stats, pre), y
    x = x.astype(np.float32) / np.float32(pre.scale)
    if x.ndim == len(pre.input_shape) and pre.layout in ("signal", "image"):
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W); (N, L) -> (N, 1, L)
    if tuple(x.shape[1:]) != pre.input_shape:
        raise InputError(f"{file}: x must be (N, {pre.input_shape}) (got {x.shape})")
    return pre.standardize(x), y


def _prepared(
    file: Path, x: np.ndarray, stats: tuple[np.ndarray, np.ndarray] | None, pre: Preprocessing
) -> np.ndarray:
    if tuple(x.shape[1:]) != pre.input_shape:
        raise InputError(f"{file}: x must be (N, {pre.input_shape}) (got {x.shape})")
    if stats is not None and not all(
        a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=0)
        for a, b in zip(stats, (pre.mean, pre.std), strict=True)
    ):
        raise InputError(
            f"{file}: a prepared split standardized with other statistics than the model's "
            "(made by another prepare run); pass the raw data instead"
        )
    return x.astype(np.float32)


def _table(file: Path, pre: Preprocessing) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows of a CSV / Parquet file with the model's feature columns (and optionally its target
    column, giving labels): the same checks as the prepare stage."""
    if not pre.feature_names:
        raise InputError(
            f"{file}: a table, but the model's metadata names no feature columns (it was not "
            "trained on a table); expected an image or an .npz"
        )
    frame = read_table(file, str(file))
    features, target = list(pre.feature_names), pre.target
    has_target = target is not None and target in frame.columns
    columns = [str(c) for c in frame.columns if not (has_target and c == target)]
    missing = [c for c in features if c not in columns]
    extra = [c for c in columns if c not in features]
    if missing or extra:
        raise InputError(
            f"{file}: columns differ from the model's: missing {missing}, extra {extra} "
            f"(expected the feature columns {features}"
            + (f" and optionally the target {target!r})" if target else ")")
        )
    x = table_features(frame, features, target if has_target else None, str(file))
    x = pre.standardize(x / np.float32(pre.scale))
    if not has_target:
        return x, None
    return x, pre.labels(file, frame)


def _image(file: Path, input_shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    channels, height, width = input_shape
    try:
        with Image.open(file) as im:
            resized = im.convert("L" if channels == 1 else "RGB").resize((width, height))
            pixels = np.asarray(resized, np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{file}: unreadable image ({e})") from None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)  # (C, H, W)


@dataclass(frozen=True)
class Predictions:
    classes: np.ndarray  # (N,) top-1 class index
    names: list[str]  # (N,) its class name
    confidence: np.ndarray  # (N,) its softmax probability
    labels: np.ndarray | None  # (N,) when the file had y
    warning: str | None = None  # this CPU may compute the model wrongly (int8_target.warning)

    @property
    def accuracy(self) -> float | None:
        return None if self.labels is None else float(np.mean(self.classes == self.labels))


def predict(model: Path, file: Path) -> Predictions:
    """Classify `file` with the ONNX `model`: images, an .npz, a table; for a text model, a
    table's text column or a .txt file of one text per line, tokenized with the
    tokenizer.json beside the model."""
    pre = Preprocessing.from_model(model)
    if pre.text_column is not None:
        x, y = text_inputs(file, model.parent / TOKENIZER_FILE, pre)
    else:
        x, y = load_inputs(file, pre)
    logits = run_logits(session(model), x)  # (N, K)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    top = probs.argmax(axis=1)
    names, confidence = [pre.class_names[i] for i in top], probs[np.arange(len(top)), top]
    return Predictions(top, names, confidence, y, warning(read_metadata(model), cpu_info()))
