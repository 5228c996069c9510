"""The teacher as a torch module, whether trained here or imported from ONNX.

`OnnxTeacher` runs an imported file with onnxruntime behind `nn.Module.forward`, so
distillation and pruning use it exactly like a trained teacher. Its checkpoint holds the ONNX
bytes, the interface (JSON) and the data statistics as tensors, never a pickle, so the
checkpoint alone is the teacher; `load_teacher` opens either kind.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimline.compression.models.checkpoints import (
    CheckpointError,
    model_from_payload,
    read_payload,
)
from slimline.compression.models.onnx_teacher import TeacherFeed, TeacherInterface
from slimline.compression.runtime.onnx_io import session
from slimline.core.atomic import atomic_path

FORMAT = "slimline-onnx-teacher/1"


class OnnxTeacher(nn.Module):
    """An ONNX teacher as a torch module: prepared samples in, logits out (no gradients)."""

    reads_teacher_ids = True  # the data as its own tokenizer made it (`Split.for_teacher`)

    def __init__(self, onnx_bytes: bytes, feed: TeacherFeed):
        super().__init__()
        self.onnx_bytes, self.feed = onnx_bytes, feed
        self.session = session(onnx_bytes, torch.get_num_threads(), name="the ONNX teacher")

    @property
    def param_count(self) -> int:
        return self.feed.interface.params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.feed.logits(self.session, x.detach().cpu().numpy())
        return torch.from_numpy(logits).to(x.device)


def save_teacher(path: Path, onnx_bytes: bytes, feed: TeacherFeed) -> None:
    """An ONNX teacher's checkpoint: the file's bytes, its interface, the data statistics."""
    payload = {
        "format": FORMAT,
        "interface": json.dumps(feed.interface.as_dict(), sort_keys=True),
        "onnx": torch.frombuffer(bytearray(onnx_bytes), dtype=torch.uint8),
        "mean": torch.from_numpy(np.asarray(feed.mean, np.float32)),
        "std": torch.from_numpy(np.asarray(feed.std, np.float32)),
        "scale": float(feed.scale),
    }
    with atomic_path(path) as tmp, tmp.open("wb") as f:  # a file object: see save_checkpoint
        torch.save(payload, f)


def load_teacher(path: str | Path) -> nn.Module:
    """The teacher checkpoint at `path`, trained here or imported from ONNX, in eval mode."""
    path = Path(path)
    payload = read_payload(path)
    if payload.get("format") != FORMAT:
        model = model_from_payload(path, payload)
        object.__setattr__(model, "reads_teacher_ids", True)  # trained on them (for_teacher)
        return model
    try:
        feed = TeacherFeed(
            TeacherInterface.from_dict(json.loads(payload["interface"])),
            payload["mean"].numpy(), payload["std"].numpy(), float(payload["scale"]),
        )  # fmt: skip
        return OnnxTeacher(payload["onnx"].numpy().tobytes(), feed).eval()
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: damaged ONNX teacher checkpoint ({type(e).__name__}: {str(e)[:200]}); "
            "rerun the train_teacher stage"
        ) from e
