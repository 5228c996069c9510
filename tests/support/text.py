"""A small text task for the tests: topic sentences (`data.make_texts`) tokenized as prepare
tokenizes them, and a trained transformer over them, exported to ONNX."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from tests.support.data import make_texts

MAX_LEN = 16
TRANSFORMER = {"vocab_size": 0, "dim": 32, "layers": [{"heads": 4, "head_dim": 8, "ffn": 64}],
               "pooling": "cls"}  # fmt: skip


@functools.cache
def text_splits():
    """(train, val, test) `Split`s of token ids and the tokenizer, from 360 sentences."""
    from slimline.compression.data.dataset import Split, Vocab
    from slimline.compression.data.tokenizer import encode, pad_id, train_wordpiece

    texts, labels = make_texts(360)
    names = sorted(set(labels))
    y = np.asarray([names.index(v) for v in labels], np.int64)
    tok = train_wordpiece(texts[:240], 300)
    vocab = Vocab(tok.get_vocab_size(), pad_id(tok, "tokenizer"))
    none = np.zeros(1, np.float32)

    def split(rows: slice) -> Split:
        ids, _ = encode(tok, texts[rows], MAX_LEN)
        return Split(ids, y[rows], names, none, none + 1, 1.0, vocab=vocab)

    return split(slice(0, 240)), split(slice(240, 300)), split(slice(300, 360)), tok


@functools.cache
def trained_transformer():
    """A transformer of TRANSFORMER's size trained on `text_splits` (well above chance)."""
    from slimline.compression.models.text_families import Transformer
    from slimline.compression.training.fit import fit, seed_everything
    from slimline.compression.training.setup import Setup

    train, val, _, _ = text_splits()
    seed_everything(0, 1)
    config = TRANSFORMER | {"vocab_size": train.vocab.size, "pad_id": train.vocab.pad_id}
    model = Transformer((MAX_LEN,), 3, **config)
    fit(model, Setup(train, val, epochs=6, lr=0.01, batch_size=32, weight_decay=1e-4, seed=0))
    return model


def exported_transformer(folder: Path) -> Path:
    from slimline.compression.runtime.onnx_io import export_onnx

    path = folder / "transformer.onnx"
    export_onnx(trained_transformer(), (MAX_LEN,), path)
    return path
