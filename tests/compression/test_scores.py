"""Accuracy, agreement and the confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest

from slimline.compression.scores import accuracy, agreement, confusion_matrix, plot_confusion

PNG = b"\x89PNG\r\n\x1a\n"


def test_accuracy_from_logits_and_labels():
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.3, 0.2], [0.0, 5.0]], np.float32)
    y = np.array([1, 0, 1, 1])
    assert accuracy(logits, y) == 0.75
    assert accuracy(np.array([1, 0, 0, 1]), y) == 0.75  # labels pass through
    with pytest.raises(ValueError, match="length mismatch"):
        accuracy(logits, y[:3])
    with pytest.raises(ValueError, match="empty"):
        accuracy(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(ValueError, match=r"logits \(N, K\) or labels"):
        accuracy(np.zeros((2, 2, 2)), y[:2])


def test_agreement_is_top1():
    a = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    b = a * 3 + 0.1  # same argmax, different scale
    assert agreement(a, b) == 1.0
    b[3] = [0.0, 0.0, 9.0]
    assert agreement(a, b) == 0.75
    assert agreement(a, np.array([0, 1, 2, 2])) == 0.75


def test_confusion_matrix_counts():
    y = np.array([0, 0, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 2, 0, 2])
    cm = confusion_matrix(y, pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]  # rows true, columns predicted
    assert cm.dtype == np.int64 and cm.sum() == len(y)
    assert np.trace(cm) / cm.sum() == accuracy(pred, y)
    logits = np.eye(3)[pred]
    assert confusion_matrix(y, logits, 3).tolist() == cm.tolist()
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


def test_plot_confusion_writes_png_atomically(tmp_path):
    cm = confusion_matrix(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), 3)
    path = tmp_path / "plots" / "confusion.png"
    plot_confusion(cm, ["zero", "one", "two"], path)
    assert path.read_bytes()[:8] == PNG
    assert [p.name for p in path.parent.iterdir()] == ["confusion.png"]  # no temp left over
    first = path.read_bytes()
    plot_confusion(cm, ["zero", "one", "two"], path)
    assert path.read_bytes() == first  # deterministic bytes
    with pytest.raises(ValueError, match="does not match 2 class names"):
        plot_confusion(cm, ["zero", "one"], path)
    assert path.read_bytes() == first


def test_plot_confusion_takes_class_names_as_plain_text(tmp_path):
    # image-folder class names are data: "$...$" is not mathtext ("$\frac$" failed to draw)
    names = ["$\\frac$", "a$b", "$x^$"]
    plot_confusion(np.eye(3, dtype=np.int64), names, tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:8] == PNG
