"""Text families over token ids: a pre-norm `transformer`, a `textcnn` and a bag of embeddings
(`boe`), each built from a JSON-able config read back from its modules (`layer_config`), so
that pruning can change widths, FFN sizes and head counts and a checkpoint still rebuilds it.

Inputs are (B, L) token ids and an optional (B, L) attention mask (1 for a token, 0 for
padding); without a mask, ids equal to `pad_id` are padding. Padding never reaches the output:
attention ignores it and every pooling skips it, so a text padded to any length scores the same.
The attention is written out (separate q, k, v and output projections, `heads` kept on the
module) rather than `nn.MultiheadAttention`, whose heads torch-pruning cannot remove.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimline.core.params.models import TEXT_ARCHS

POOLINGS = ("cls", "mean")


def _mask(ids: torch.Tensor, mask: torch.Tensor | None, pad_id: int) -> torch.Tensor:
    """(B, L) bool: True where a token is."""
    return (ids != pad_id) if mask is None else mask.bool()


def _masked_mean(h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over the tokens (B, L, D) -> (B, D), padding left out."""
    w = keep.unsqueeze(-1).to(h.dtype)
    return (h * w).sum(1) / w.sum(1).clamp_min(1.0)


class SelfAttention(nn.Module):
    """Multi-head self-attention with its head count on the module, so pruning heads away
    (torch-pruning's `num_heads` for q, k and v) leaves a module that still splits right."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.q, self.k, self.v = (nn.Linear(dim, heads * head_dim) for _ in range(3))
        self.out = nn.Linear(heads * head_dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, length, _ = x.shape
        q, k, v = (
            proj(x).reshape(b, length, self.heads, self.head_dim).transpose(1, 2)
            for proj in (self.q, self.k, self.v)
        )
        scores = q @ k.transpose(-2, -1) / self.head_dim**0.5  # (B, H, L, L)
        # a large negative, not -inf: a row of only padding must not become NaN
        scores = scores.masked_fill(~keep[:, None, None, :], -1e4)
        h = torch.softmax(scores, dim=-1) @ v
        return self.out(h.transpose(1, 2).reshape(b, length, self.heads * self.head_dim))


class Block(nn.Module):
    """Pre-norm: x + attention(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, dim: int, heads: int, head_dim: int, ffn: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads, head_dim)
        self.up, self.down = nn.Linear(dim, ffn), nn.Linear(ffn, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), keep)
        return x + self.down(nn.functional.gelu(self.up(self.norm2(x))))

    def layer_config(self) -> dict[str, int]:
        a = self.attention
        return {"heads": a.heads, "head_dim": a.head_dim, "ffn": self.up.out_features}


class Transformer(nn.Module):
    def __init__(self, input_shape, num_classes: int, vocab_size: int, dim: int,
                 layers: list[dict], pooling: str = "cls", pad_id: int = 0):  # fmt: skip
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: one of {', '.join(POOLINGS)} (got {pooling!r})")
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.pooling, self.pad_id = pooling, pad_id
        self.embed = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(self.input_shape[0], dim)
        self.blocks = nn.ModuleList(Block(dim, **layer) for layer in layers)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = _mask(ids, mask, self.pad_id)
        positions = torch.arange(ids.shape[1], device=ids.device)
        h = self.embed(ids) + self.position(positions)
        for block in self.blocks:
            h = block(h, keep)
        h = self.norm(h)
        pooled = h[:, 0] if self.pooling == "cls" else _masked_mean(h, keep)
        return self.fc(pooled)

    def layer_config(self) -> dict[str, Any]:
        return {
            "vocab_size": self.embed.num_embeddings,
            "dim": self.embed.embedding_dim,
            "layers": [b.layer_config() for b in self.blocks if isinstance(b, Block)],
            "pooling": self.pooling,
            "pad_id": self.pad_id,
        }


class TextCNN(nn.Module):
    """Embeddings, one conv per kernel size, max over the tokens (padding left out), fc."""

    def __init__(self, input_shape, num_classes: int, vocab_size: int, dim: int,
                 kernels: list[int], channels: list[int], pad_id: int = 0):  # fmt: skip
        super().__init__()
        if len(kernels) != len(channels):
            raise ValueError(f"textcnn: one channel count per kernel (got {kernels}, {channels})")
        self.input_shape, self.num_classes, self.pad_id = tuple(input_shape), num_classes, pad_id
        self.embed = nn.Embedding(vocab_size, dim)
        self.convs = nn.ModuleList(
            nn.Conv1d(dim, c, k, padding=k // 2) for k, c in zip(kernels, channels, strict=True)
        )
        self.fc = nn.Linear(sum(channels), num_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = _mask(ids, mask, self.pad_id)
        h = (self.embed(ids) * keep.unsqueeze(-1)).transpose(1, 2)  # (B, D, L), pads zeroed
        pooled = []
        for conv in self.convs:
            c = torch.relu(conv(h))[..., : ids.shape[1]]  # even kernels give one extra step
            pooled.append(c.masked_fill(~keep[:, None, :], -1e4).amax(-1))
        return self.fc(torch.cat(pooled, dim=1))

    def layer_config(self) -> dict[str, Any]:
        return {
            "vocab_size": self.embed.num_embeddings,
            "dim": self.embed.embedding_dim,
            "kernels": [c.kernel_size[0] for c in self.convs if isinstance(c, nn.Conv1d)],
            "channels": [c.out_channels for c in self.convs if isinstance(c, nn.Conv1d)],
            "pad_id": self.pad_id,
        }


class BagOfEmbeddings(nn.Module):
    """Mean of the token embeddings (padding left out), a hidden layer, fc."""

    def __init__(self, input_shape, num_classes: int, vocab_size: int, dim: int, hidden: int,
                 pad_id: int = 0):  # fmt: skip
        super().__init__()
        self.input_shape, self.num_classes, self.pad_id = tuple(input_shape), num_classes, pad_id
        self.embed = nn.Embedding(vocab_size, dim)
        self.hidden = nn.Linear(dim, hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = _mask(ids, mask, self.pad_id)
        return self.fc(torch.relu(self.hidden(_masked_mean(self.embed(ids), keep))))

    def layer_config(self) -> dict[str, Any]:
        return {
            "vocab_size": self.embed.num_embeddings,
            "dim": self.embed.embedding_dim,
            "hidden": self.hidden.out_features,
            "pad_id": self.pad_id,
        }


TEXT_CLASSES: dict[str, type[nn.Module]] = dict(
    zip(TEXT_ARCHS, (Transformer, TextCNN, BagOfEmbeddings), strict=True)
)
