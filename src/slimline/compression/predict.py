"""Classify files with the deployable model, using onnxruntime and numpy (and Pillow to decode
images): what a consumer of dist/model.onnx needs, with no torch and no slimline project."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimline.compression.data import IMAGE_SUFFIXES
from slimline.compression.onnx_io import read_metadata, run_logits, session
from slimline.core.errors import InputError


@dataclass(frozen=True)
class Preprocessing:
    """From the model's metadata_props: shape, normalization and class names."""

    input_shape: tuple[int, ...]
    mean: np.ndarray
    std: np.ndarray
    scale: float
    class_names: list[str]

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
            )
        except (KeyError, ValueError, TypeError) as e:
            raise InputError(
                f"{path}: metadata lacks {e} (expected input_shape, normalization and "
                "class_names, as slimline's export stage writes them)"
            ) from None

    def standardize(self, x: np.ndarray) -> np.ndarray:
        """x already in [0, 1] (raw / scale) -> the model's input."""
        shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
        return ((x - self.mean.reshape(shape)) / self.std.reshape(shape)).astype(np.float32)


def load_inputs(file: Path, pre: Preprocessing) -> tuple[np.ndarray, np.ndarray | None]:
    """(x as the model consumes it, labels if the file has them)."""
    if not file.is_file():
        raise InputError(f"{file}: file not found (expected an image or an .npz with x)")
    if file.suffix.lower() in IMAGE_SUFFIXES:
        return pre.standardize(_image(file, pre.input_shape)[None]), None
    if file.suffix.lower() != ".npz":
        raise InputError(f"{file}: expected {', '.join(IMAGE_SUFFIXES)} or .npz")
    try:
        with np.load(file, allow_pickle=False) as z:
            x, y = z["x"], (z["y"] if "y" in z.files else None)
    except Exception as e:
        raise InputError(f"{file}: not a readable .npz with an array x ({e})") from None
    x = x.astype(np.float32) / np.float32(pre.scale)
    if x.ndim == len(pre.input_shape) and len(pre.input_shape) == 3:
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W)
    if tuple(x.shape[1:]) != pre.input_shape:
        raise InputError(f"{file}: x must be (N, {pre.input_shape}) (got {x.shape})")
    return pre.standardize(x), y


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

    @property
    def accuracy(self) -> float | None:
        return None if self.labels is None else float(np.mean(self.classes == self.labels))


def predict(model: Path, file: Path) -> Predictions:
    pre = Preprocessing.from_model(model)
    x, y = load_inputs(file, pre)
    logits = run_logits(session(model), x)  # (N, K)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    top = probs.argmax(axis=1)
    return Predictions(top, [pre.class_names[i] for i in top], probs[np.arange(len(top)), top], y)
