"""Small data made by the tests themselves: images, signals, tables, splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slimline.compression.data.dataset import Dataset
from slimline.compression.data.store import save_split


def make_images(n_per_class: int = 12, classes: int = 3, size: int = 8, seed: int = 0):
    """Separable (N, 1, size, size) images: class k lights a band of rows."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.2, (n_per_class * classes, 1, size, size)).astype(np.float32)
    y = np.repeat(np.arange(classes), n_per_class)
    band = size // classes
    for i, k in enumerate(y):
        x[i, 0, k * band : (k + 1) * band] += 0.8
    return x, y.astype(np.int64)


def make_signals(n: int, channels: int = 2, length: int = 64, classes: int = 3, seed: int = 0):
    """(N, C, L) sine waves, class k at 2 + 2k cycles per window (a harmonic of it on the second
    channel), random phase and amplitude, plus noise: separable by frequency, not by level."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % classes).astype(np.int64)
    t = np.arange(length) / length
    cycles = (2 + 2 * y)[:, None, None] * np.arange(1, channels + 1)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, (n, channels, 1))
    amplitude = rng.uniform(0.5, 1.5, (n, 1, 1))
    x = amplitude * np.sin(2 * np.pi * cycles * t + phase)
    x = x + rng.normal(scale=0.3, size=(n, channels, length))
    return x.astype(np.float32), y


def make_signal_split(n: int, seed: int = 0, **kwargs):
    """A `Split` of `make_signals` (2 channels, L=64, 3 classes): mean 0, std about 1 already."""
    from slimline.compression.data.dataset import Split

    x, y = make_signals(n, seed=seed, **kwargs)
    names = [str(k) for k in range(int(y.max()) + 1)]
    c = x.shape[1]
    return Split(x, y, names, np.zeros(c, np.float32), np.ones(c, np.float32), 1.0)


def wine_frame():
    """scikit-learn's bundled wine data (178 rows, 13 numeric features, classes 0..2) as a
    DataFrame with a `target` column: a real table, made here, nothing downloaded."""
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame


def write_table(frame, path: Path) -> Path:
    """`frame` as CSV (.csv) or Parquet (.parquet / .pq), without the index."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def make_split(n: int, shape=(1, 8, 8), classes: int = 3, seed: int = 0):
    """A `Split` of noisy copies of one fixed random prototype per class: easy, not trivial."""
    from slimline.compression.data.dataset import Split

    protos = np.random.default_rng(123).normal(size=(classes, *shape)).astype(np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n).astype(np.int64)
    x = (protos[y] + rng.normal(scale=0.8, size=(n, *shape))).astype(np.float32)
    names = [str(k) for k in range(classes)]
    return Split(x, y, names, np.zeros(1, np.float32), np.ones(1, np.float32), 1.0)


def prepared_digits(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as prepared tabular (N, 64) splits, as the prepare stage writes."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = ((d.data - d.data.mean(0)) / (d.data.std(0) + 1e-6)).astype(np.float32)
    y = d.target.astype(np.int64)
    ds = Dataset(x, y, [str(k) for k in range(10)], 1.0)
    (root / "data/prepared").mkdir(parents=True)
    parts = {"train": slice(0, 1000), "val": slice(1000, 1400), "test": slice(1400, None)}
    for name, rows in parts.items():
        save_split(root / f"data/prepared/{name}.npz", x[rows], y[rows], ds, np.zeros(1),
                   np.ones(1))  # fmt: skip
    return x[:1000], y[:1000]


def bad_npz(path: Path, kind: str) -> None:
    x = np.random.default_rng(0).uniform(size=(60, 1, 8, 8)).astype(np.float32)
    y = np.arange(60) % 3
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        np.savez(path, x=x, y=y)
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "no_y":
        np.savez(path, x=x)
    elif kind == "nan":
        x[5, 0, 2, 2] = np.nan
        np.savez(path, x=x, y=y)
    elif kind == "label_out_of_range":
        np.savez(path, x=x, y=y, class_names=np.array(["a", "b"]))
    elif kind == "length_mismatch":
        np.savez(path, x=x, y=y[:-1])
    elif kind == "float_labels":
        np.savez(path, x=x, y=y.astype(np.float32))
    elif kind == "inf":
        x[7, 0, 1, 1] = np.inf
        np.savez(path, x=x, y=y)


TEXT_TOPICS = {
    "sport": ["match", "goal", "team", "coach", "league", "score", "player", "stadium"],
    "food": ["recipe", "bread", "cheese", "soup", "oven", "spicy", "dinner", "kitchen"],
    "travel": ["train", "flight", "hotel", "beach", "ticket", "island", "passport", "map"],
}
TEXT_FILLER = ["the", "a", "we", "really", "today", "with", "about", "new", "old", "some",
               "good", "after", "before", "my", "their", "was", "is", "and", "very"]  # fmt: skip


def make_texts(n: int, seed: int = 0, topics: dict[str, list[str]] = TEXT_TOPICS):
    """(texts, labels): n distinct short sentences, each naming two or three words of its
    topic among filler words, so a bag of words learns it; labels are the topic names."""
    rng = np.random.default_rng(seed)
    names = sorted(topics)
    texts: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    while len(texts) < n:
        label = names[len(texts) % len(names)]
        words = list(rng.choice(TEXT_FILLER, rng.integers(4, 9)))
        words += list(rng.choice(topics[label], rng.integers(2, 4), replace=False))
        text = " ".join(rng.permutation(words)).capitalize() + "."
        if text.lower() not in seen:
            seen.add(text.lower())
            texts.append(text)
            labels.append(label)
    return texts, labels


def write_texts(path: Path, texts: list[str], labels: list[str]) -> Path:
    """A CSV with columns `text` and `label`."""
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path
