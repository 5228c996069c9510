"""What a data set is in slimline: samples with labels, a prepared split, and the error
bad input raises."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from slimline.core.errors import InputError

SPLITS = ("train", "val", "test")


class Vocab(NamedTuple):
    """What a text model's embedding is sized by: the tokenizer's vocabulary and its pad id."""

    size: int
    pad_id: int


# a prepared x of (N, *input_shape): the layout by len(input_shape)
LAYOUTS = {1: "tabular", 2: "signal", 3: "image"}


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
    vocab: Vocab | None = None  # text: the tokenizer's vocabulary size and pad id
    # text whose teacher reads other tokens than the student (an imported teacher's tokenizer,
    # or the larger vocabulary beside the student's own): each sample's ids in the teacher's
    # tokens, row for row with x
    teacher_x: np.ndarray | None = None
    teacher_vocab: Vocab | None = None

    def for_teacher(self) -> Split:
        """The split as the teacher reads it: the teacher's own token ids where prepare made
        them, else this split."""
        if self.teacher_x is None:
            return self
        return dataclasses.replace(
            self, x=self.teacher_x, vocab=self.teacher_vocab, teacher_x=None, teacher_vocab=None
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def layout(self) -> str:
        return "text" if self.x.dtype.kind in "iu" else layout_of(self.input_shape)


def layout_of(input_shape: tuple[int, ...]) -> str:
    """tabular (F,), signal (C, L) or image (C, H, W): what a model's input shape holds."""
    return LAYOUTS.get(len(input_shape), "unknown")
