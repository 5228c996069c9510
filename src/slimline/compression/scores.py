"""Accuracy, top-1 agreement and the confusion matrix, on numpy arrays.

Every function takes either logits (N, K) or predicted labels (N,), so the same code scores
torch outputs, ONNX Runtime outputs and stored predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from slimline.core.atomic import atomic_path


def predictions(logits_or_preds: np.ndarray) -> np.ndarray:
    """Top-1 labels (N,) from logits (N, K); labels pass through."""
    a = np.asarray(logits_or_preds)
    if a.ndim == 2:
        return a.argmax(axis=1)
    if a.ndim == 1:
        return a.astype(np.int64)
    raise ValueError(f"expected logits (N, K) or labels (N,) (got shape {a.shape})")


def accuracy(logits_or_preds: np.ndarray, y: np.ndarray) -> float:
    """Fraction of samples whose top-1 prediction equals the label."""
    pred, y = predictions(logits_or_preds), np.asarray(y)
    _same_length(pred, y)
    return float(np.mean(pred == y))


def agreement(logits_a: np.ndarray, logits_b: np.ndarray) -> float:
    """Fraction of samples on which two models make the same top-1 prediction."""
    a, b = predictions(logits_a), predictions(logits_b)
    _same_length(a, b)
    return float(np.mean(a == b))


def confusion_matrix(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) int64 counts: rows are true classes, columns predicted classes."""
    y, pred = np.asarray(y, np.int64), predictions(pred)
    _same_length(pred, y)
    for name, a in (("labels", y), ("predictions", pred)):
        if a.size and (a.min() < 0 or a.max() >= k):
            raise ValueError(f"{name} must be in [0, {k}) (got {a.min()}..{a.max()})")
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str | Path) -> None:
    """The confusion matrix as a PNG (counts in cells), written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + Agg canvas, not pyplot: no global backend or state touched, no display needed.
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix {cm.shape} does not match {k} class names")
    size = max(4.0, 0.45 * k + 2)
    fig = Figure(figsize=(size, size), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    ax.set(
        xticks=range(k),
        yticks=range(k),
        xlabel="predicted",
        ylabel="true",
        title=f"confusion matrix ({int(cm.sum())} samples)",
    )
    # class names are data (image folder names): "$" must not be read as mathtext, which
    # fails to draw on a name like "$\frac$"
    ax.set_xticklabels(class_names, rotation=90 if k > 12 else 0, parse_math=False)
    ax.set_yticklabels(class_names, parse_math=False)
    threshold = cm.max() / 2 if cm.size else 0
    for i, j in np.ndindex(cm.shape):
        if cm[i, j]:
            color = "white" if cm[i, j] > threshold else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color=color)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        # no "Software" stamp: the PNG bytes depend only on the matrix
        fig.savefig(tmp, format="png", metadata={"Software": None})


def _same_length(a: np.ndarray, b: np.ndarray) -> None:
    if len(a) != len(b):
        raise ValueError(f"length mismatch: {len(a)} vs {len(b)} samples")
    if len(a) == 0:
        raise ValueError("cannot score an empty set")
