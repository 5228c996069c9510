"""A small text task for the tests: topic sentences (`data.make_texts`) tokenized as prepare
tokenizes them, and a trained transformer over them, exported to ONNX."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn

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


def bert_like_teacher(
    folder: Path,
    texts: list[str],
    labels: list[str],
    vocab_size: int = 130,
    dim: int = 32,
    max_len: int = MAX_LEN,
):
    """A pretrained text teacher as a user brings one from Hugging Face: an ONNX classifier
    over int64 `input_ids`, `attention_mask` and `token_type_ids` (word, position and type
    embeddings, a pooler), with its own `tokenizer.json` whose ids are not the student's
    (a smaller vocabulary than `text_splits`'). Trained here on `texts`; returns the two
    files' paths."""
    from slimline.compression.data.tokenizer import encode, pad_id, save_tokenizer, train_wordpiece

    tok = _reordered(train_wordpiece(texts, vocab_size))
    ids, _ = encode(tok, texts, max_len)
    names = sorted(set(labels))
    y = torch.tensor([names.index(v) for v in labels])
    torch.manual_seed(0)
    model = BertLike(tok.get_vocab_size(), len(names), dim, max_len)
    x = torch.from_numpy(ids.astype(np.int64))
    mask = (x != pad_id(tok, "tokenizer")).long()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x, mask, torch.zeros_like(x)), y)
        loss.backward()
        opt.step()
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path, tok_path = folder / "teacher.onnx", folder / "tokenizer.json"
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", min=2, max=max_len)
    axes = {0: batch, 1: seq}
    torch.onnx.export(
        model, (x[:2], mask[:2], torch.zeros_like(x[:2])), str(onnx_path), dynamo=True,
        external_data=False, input_names=["input_ids", "attention_mask", "token_type_ids"],
        dynamic_shapes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes},
    )  # fmt: skip
    save_tokenizer(tok, tok_path)
    return onnx_path, tok_path


def _reordered(tok):
    """The same tokenizer with its learned tokens' ids reversed (the special tokens keep
    theirs): a vocabulary ordered otherwise than slimline's, as every outside one is."""
    import json

    from tokenizers import Tokenizer

    from slimline.compression.data.tokenizer import SPECIALS

    spec = json.loads(tok.to_str())
    tokens = sorted(spec["model"]["vocab"], key=spec["model"]["vocab"].get)
    learned = [t for t in tokens if t not in SPECIALS][::-1]
    spec["model"]["vocab"] = {t: i for i, t in enumerate([*SPECIALS, *learned])}
    return Tokenizer.from_str(json.dumps(spec))


class BertLike(nn.Module):
    """Hugging Face's three inputs; word, position and type embeddings, one feed-forward
    block, mean pooling over the mask, a tanh pooler."""

    def __init__(self, vocab: int, classes: int, dim: int = 32, max_len: int = MAX_LEN):
        super().__init__()
        self.word, self.segment = nn.Embedding(vocab, dim), nn.Embedding(2, dim)
        self.position = nn.Embedding(max_len, dim)
        self.norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.pooler, self.classifier = nn.Linear(dim, dim), nn.Linear(dim, classes)

    def forward(self, input_ids, attention_mask, token_type_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        embedded = self.word(input_ids) + self.position(positions) + self.segment(token_type_ids)
        h = self.norm(embedded)
        h = h + self.ffn(h)
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.classifier(torch.tanh(self.pooler(pooled)))
