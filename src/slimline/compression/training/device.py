"""Where training and teacher logits run: the CPU or a CUDA GPU, in fp32 or bf16 autocast.

`params.device` (`auto | cpu | cuda`) and `params.precision` (`fp32 | bf16`) resolve once per
stage into an `Accelerator`. Export, quantization and the benchmark stay on the CPU with
onnxruntime (the deployment target): checkpoints are saved from CPU tensors, so a model trained
on a GPU exports exactly like one trained on the CPU.

Reproducibility: on the CPU, seeded runs are bit-identical (`fit.seed_everything`). On CUDA,
torch's deterministic algorithms are asked for (with cuBLAS's fixed workspace) but only warn
where an op has none, so reruns agree closely, not bit for bit; bf16 changes the numbers
against fp32 by design.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from slimline.core.errors import InputError, ResourceError

Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class Accelerator:
    device: torch.device
    precision: Precision = "fp32"

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def name(self) -> str:
        if self.cuda:
            return torch.cuda.get_device_name(self.device)
        return platform.processor() or platform.machine() or "cpu"

    def describe(self) -> dict[str, str]:
        """What metrics, the model card and MLflow's lineage record."""
        return {"device": self.device.type, "device_name": self.name, "precision": self.precision}

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """bf16 autocast for the forward pass where asked; fp32 does nothing."""
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            yield

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model on the device; conv families on CUDA in channels-last (faster kernels)."""
        model = model.to(self.device)
        if self.cuda and _has_conv2d(model):
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return model

    @property
    def pin_memory(self) -> bool:
        """Whether host batches should be page-locked: on CUDA that is what lets the
        non-blocking copies of `batch` overlap the training step."""
        return self.cuda

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """A batch (inputs or labels) on the device, in the model's memory format; from
        pinned memory the copy to a GPU is asynchronous."""
        x = x.to(self.device, non_blocking=self.cuda)
        if self.cuda and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


CPU = Accelerator(torch.device("cpu"))


def accelerator(device: Literal["auto", "cpu", "cuda"], precision: Precision) -> Accelerator:
    """The device `params.device` names; `InputError` (exit 2) for cuda where there is none."""
    available = torch.cuda.is_available()
    if device == "cuda" and not available:
        raise InputError(
            "device: cuda, but torch sees no CUDA GPU (torch.cuda.is_available() is False, "
            f"torch {torch.__version__}); use device: auto or cpu"
        )
    if device == "cpu" or not available:
        return Accelerator(torch.device("cpu"), precision)
    # cuBLAS needs a fixed workspace for deterministic matmuls; set before its first use
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    return Accelerator(torch.device("cuda"), precision)


@contextlib.contextmanager
def out_of_memory_hint(acc: Accelerator, section: str) -> Iterator[None]:
    """Turn CUDA's out-of-memory error into one message (exit 1) naming what to lower."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise ResourceError(
            f"out of GPU memory on {acc.name}: lower {section}.batch_size (or use precision: bf16)"
        ) from None


def _has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())
