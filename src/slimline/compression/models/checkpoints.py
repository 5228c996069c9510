"""Checkpoints that load without pickle: a model's config beside a plain state dict.

Loading rebuilds the modules from the config (`families.build_from_config`) and uses
`torch.load(weights_only=True)`."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimline.compression.models.families import build_from_config, model_config
from slimline.core.atomic import atomic_path
from slimline.core.errors import InputError

FORMAT = "slimline-checkpoint/1"

_EXPECTED = f"expected a {FORMAT} file written by slimline's save_checkpoint"


class CheckpointError(InputError):
    """An unreadable, tampered or mismatched checkpoint; the message names the file."""


def save_checkpoint(path: str | Path, model: nn.Module) -> None:
    payload = {
        "format": FORMAT,
        "config": json.dumps(model_config(model), sort_keys=True),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    # through a file object: given a path, torch.save names the zip's records after the file
    # (here a random temp name), so identical weights would give different bytes every run and
    # DVC would rerun every stage downstream of an unchanged checkpoint
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save(payload, f)


def load_checkpoint(path: str | Path) -> nn.Module:
    """Rebuild a model saved by `save_checkpoint`, in eval mode; never unpickles objects."""
    path = Path(path)
    return model_from_payload(path, read_payload(path))


def read_payload(path: Path) -> dict[str, Any]:
    """The dict a checkpoint holds, loaded with `weights_only` (tensors and plain values)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found ({_EXPECTED})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many kinds for corrupt or refused input
        raise CheckpointError(f"{path}: {_load_failure(e)}; {_EXPECTED}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"{path}: wrong checkpoint format {type(payload).__name__!r}; {_EXPECTED}"
        )
    return payload


def model_from_payload(path: Path, payload: dict[str, Any]) -> nn.Module:
    """The model of a `save_checkpoint` payload, in eval mode; `path` names it in errors."""
    if payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: wrong checkpoint format {payload.get('format')!r}; {_EXPECTED}"
        )
    try:
        model = build_from_config(json.loads(payload["config"]))
        model.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        what = str(e).splitlines()[0][:300]
        raise CheckpointError(
            f"{path}: config and weights do not match ({type(e).__name__}: {what}); {_EXPECTED}"
        ) from e
    return model.eval()


def _load_failure(error: Exception) -> str:
    # torch's refusal advises weights_only=False: say only what was refused, never that
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    if isinstance(error, pickle.UnpicklingError) and refused:
        return (
            "unsafe checkpoint refused: it pickles Python objects, not only tensors "
            f"(found {refused.group(1)})"
        )
    first = str(error).splitlines()[0].split(". ")[0][:160] if str(error) else ""
    detail = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return f"unreadable checkpoint, not a complete torch.save file ({detail})"
