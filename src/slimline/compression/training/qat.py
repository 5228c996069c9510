"""Quantization-aware fine-tuning (QAT) for when post-training quantization cannot keep accuracy.

The shipped model stays what the rest of the pipeline knows: a static QDQ INT8 file made by
onnxruntime from an FP32 ONNX export. QAT only changes which FP32 weights (and activation
clips) go into that quantizer. Recipe:
1. sites: every Conv / Linear input (the model input, pooled features) and every nn.ReLU output,
   which is where onnxruntime's QDQ quantizer puts uint8 activations; ranges observed over the
   calibration samples in FP32, as its MinMax calibrator does.
2. clips: best first, the activation upper bounds (observed max x 2^-k, k = 1..10) that keep
   the fake-quantized model closest (KL) to the FP32 one. An outlier channel that swamps
   a tensor's uint8 grid gets clipped instead of crushing every other channel.
3. fine-tune with fake quantization (KD loss from the teacher, `fit.fit`, as the caller's
   `Setup` says: the stage's is `setup.finetune_setup`, prune's epochs and lr): weights on the
   target format's grid (per output channel or per tensor, as `quantize.per_channel`:
   uint8 for portable, int8 for native, as onnxruntime makes them), activations uint8
   asymmetric per tensor over the observed ranges (re-observed after each epoch). Both through
   torch's fake_quantize ops, whose gradient is the straight-through estimator (1 inside the
   range, 0 outside).
4. export the fine-tuned FP32 weights with the clips as ONNX Clip nodes, so onnxruntime's
   calibration sees the clipped ranges; the caller quantizes that file like any other.
Conv weights are fake-quantized before BatchNorm, which the export folds into them: per
channel the two are the same grid (BN scales each output channel); per tensor it is close.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from slimline.compression.runtime.onnx_io import export_onnx
from slimline.compression.training.device import CPU, Accelerator
from slimline.compression.training.fit import Callback, EpochRecord, LossFn, fit
from slimline.compression.training.setup import Setup

CLIP_STEPS = 10  # candidate clips: observed max / 2^k, k = 0..CLIP_STEPS
CLIP_GAIN = 0.9  # a clip must cut the KL to FP32 by 10 %: noise does not clip anything
SEARCH_SAMPLES = 512
LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)


class _WeightFakeQuant(nn.Module):
    """Weights on onnxruntime's grid `(qmin, qmax)` (int8_target.Int8Target.weight_grid), with
    its scale and zero point (quant_utils.compute_scale_zp):
    - symmetric, as onnxruntime's QDQ quantizer makes every int8 weight and every per-channel
      one: scale 2 max|w| / (qmax - qmin), zero point the grid's middle. int8 [-127, 127] is
      max|w| / 127 and 0 ([-128, 127] with max|w| / 127.5 would round the largest weight to
      128, clamp it and stop its gradient); [-64, 64] is `reduce_range`'s 7 bits; uint8
      per channel is 2 max|w| / 255 around 128;
    - asymmetric, uint8 per tensor: [0, 255] over [min(w, 0), max(w, 0)], zero point
      round(-min / scale)."""

    def __init__(self, per_channel: bool, grid: tuple[int, int]):
        super().__init__()
        self.per_channel, self.grid = per_channel, grid

    def forward(self, w: Tensor) -> Tensor:
        qmin, qmax = self.grid
        # one range per output channel (dim 0 of Conv and Linear weights), or one in all
        dims = tuple(range(1, w.ndim)) if self.per_channel else tuple(range(w.ndim))
        lo = w.detach().amin(dim=dims).clamp_max(0)
        hi = w.detach().amax(dim=dims).clamp_min(0)
        if qmin < 0 or self.per_channel:  # symmetric
            scale = 2 * torch.maximum(-lo, hi).clamp_min(1e-12) / (qmax - qmin)
            middle = round((qmin + qmax) / 2 + 1e-9)  # numpy's round(127.5) is 128, as here
            zero = torch.full_like(scale, middle, dtype=torch.int32)
        else:
            scale = ((hi - lo) / (qmax - qmin)).clamp_min(1e-12)
            zero = (qmin - lo / scale).round().clamp(qmin, qmax).to(torch.int32)
        if self.per_channel:
            return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, qmin, qmax)
        return torch.fake_quantize_per_tensor_affine(w, float(scale), int(zero), qmin, qmax)


class _Site:
    """One uint8 activation: observes its range, clips it, fake-quantizes it."""

    def __init__(self, name: str, clippable: bool):
        self.name, self.clippable = name, clippable
        self.lo, self.hi = math.inf, -math.inf
        self.clip: float | None = None
        self.unclipped = math.nan  # the FP32 max the clip search started from
        self.mode = "off"  # off | observe | quant | export

    def reset(self) -> None:
        self.lo, self.hi = math.inf, -math.inf

    def __call__(self, x: Tensor) -> Tensor:
        if self.mode == "off":
            return x
        if self.clip is not None:  # what the exported Clip node will do
            x = x.clamp(max=self.clip)
        if self.mode == "observe":  # the ranges onnxruntime calibrates on the clipped model
            self.lo = min(self.lo, float(x.detach().min()))
            self.hi = max(self.hi, float(x.detach().max()))
        if self.mode in ("observe", "export"):
            return x
        lo, hi = min(0.0, self.lo), max(0.0, self.hi)  # uint8 over a range holding 0 (ORT)
        scale = max(hi - lo, 1e-12) / 255.0
        zero = int(round(-lo / scale))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


class FakeQuantModel:
    """Hooks fake quantization onto a model (in place) and takes it off again."""

    def __init__(
        self, model: nn.Module, per_channel: bool, weight_grid: tuple[int, int] = (-127, 127)
    ):
        self.model, self.sites, self._hooks = model, [], []
        for name, module in model.named_modules():
            if isinstance(module, LAYERS):
                site = _Site(f"{name}:input", clippable=False)
                self._hooks.append(module.register_forward_pre_hook(_pre(site)))
                parametrize.register_parametrization(
                    module, "weight", _WeightFakeQuant(per_channel, weight_grid)
                )
                self.sites.append(site)
            elif isinstance(module, nn.ReLU):
                site = _Site(f"{name}:output", clippable=True)
                self._hooks.append(module.register_forward_hook(_post(site)))
                self.sites.append(site)

    def set_mode(self, mode: str) -> None:
        for site in self.sites:
            site.mode = mode

    @torch.no_grad()
    def observe(self, x: np.ndarray, acc: Accelerator = CPU) -> None:
        """FP32 ranges over x (weights unquantized), as onnxruntime's MinMax calibration."""
        was_training = self.model.training
        self.model.eval()
        for site in self.sites:
            site.reset()
        self.set_mode("observe")
        with _raw_weights(self.model):
            for i in range(0, len(x), 256):
                self.model(acc.batch(torch.as_tensor(np.asarray(x[i : i + 256]))))
        self.set_mode("quant")
        self.model.train(was_training)

    def remove(self) -> None:
        """Raw FP32 weights back in place; the Clip hooks stay (mode export) for the export."""
        for module in self.model.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        self.set_mode("export")

    def clips(self) -> list[dict[str, Any]]:
        return [
            {"site": s.name, "observed_max": s.unclipped, "clip": s.clip}
            for s in self.sites
            if s.clip is not None
        ]


def _pre(site: _Site) -> Callable:
    def hook(module: nn.Module, args: tuple) -> tuple:
        return (site(args[0]), *args[1:])

    return hook


def _post(site: _Site) -> Callable:
    def hook(module: nn.Module, args: tuple, out: Tensor) -> Tensor:
        return site(out)

    return hook


class _raw_weights:  # noqa: N801 - used as a context manager, reads like one
    """Parametrized weights without their fake quantization (FP32 observation)."""

    def __init__(self, model: nn.Module):
        self.fqs = [m for m in model.modules() if isinstance(m, _WeightFakeQuant)]

    def __enter__(self) -> None:
        self.saved = [fq.forward for fq in self.fqs]
        for fq in self.fqs:
            fq.forward = lambda w: w  # type: ignore[method-assign]

    def __exit__(self, *exc: object) -> None:
        for fq, forward in zip(self.fqs, self.saved, strict=True):
            fq.forward = forward  # type: ignore[method-assign]


@torch.no_grad()
def _search_clips(fq: FakeQuantModel, x: np.ndarray, reference: Tensor) -> None:
    """Best first: each round tries every candidate clip of every unclipped site, keeps the
    one that brings the fake-quantized logits closest (KL) to FP32's, and stops when none
    gains CLIP_GAIN. Each candidate re-observes the ranges downstream, as calibration would.
    (Site by site in graph order failed: upstream of a collapse every clip looks alike, so
    noise picked one that then hid the outlier's real fix.)"""
    target = F.log_softmax(reference, dim=1)
    batch = torch.as_tensor(np.asarray(x), dtype=torch.float32)

    def distance() -> float:
        fq.observe(x)
        out = F.log_softmax(fq.model(batch), dim=1)
        return float(F.kl_div(out, target, reduction="batchmean", log_target=True))

    best = distance()
    for site in fq.sites:
        site.unclipped = site.hi
    open_ = [s for s in fq.sites if s.clippable and s.hi > 0]
    while open_:
        found: tuple[float, _Site, float] | None = None
        for site in open_:
            for k in range(1, CLIP_STEPS + 1):
                site.clip = site.unclipped / 2**k
                d = distance()
                if d < best * CLIP_GAIN and (found is None or d < found[0]):
                    found = (d, site, site.clip)
            site.clip = None
        if found is None:
            break
        best, site, site.clip = found
        open_.remove(site)
    fq.observe(x)


class _Reobserve:
    """After each epoch: ranges of the new weights, as onnxruntime will calibrate them."""

    def __init__(self, fq: FakeQuantModel, x: np.ndarray, acc: Accelerator):
        self.fq, self.x, self.acc = fq, x, acc

    def on_epoch_end(self, record: EpochRecord) -> None:
        self.fq.observe(self.x, self.acc)


@dataclass(frozen=True, eq=False)
class QatTarget:
    """What QAT imitates and writes for: onnxruntime's static quantization of the exported
    file, calibrated on `calib_x`, its weights per channel (or not) on `weight_grid`."""

    calib_x: np.ndarray  # the calibration sample (N, ...): the activation ranges
    per_channel: bool  # quantize.per_channel
    weight_grid: tuple[int, int] = (-127, 127)  # int8_target.Int8Target.weight_grid
    opset: int = 20  # of the exported FP32 file


def finetune_qat(
    model: nn.Module,
    setup: Setup,
    loss_fn: LossFn,
    target: QatTarget,
    out_path: str | Path,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Fine-tune a copy of `model` with fake quantization as `setup` says; export its FP32
    weights (with the activation clips as Clip nodes) to out_path; return what was done, for
    the report."""
    model = copy.deepcopy(model).eval()  # the caller's model stays the FP32 reference
    calib_x = target.calib_x
    x = np.asarray(calib_x[:SEARCH_SAMPLES], dtype=np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(x))  # (N, K) FP32 logits, before any hook
    fq = FakeQuantModel(model, target.per_channel, target.weight_grid)
    fq.observe(calib_x)
    _search_clips(fq, x, reference)
    reobserve = _Reobserve(fq, calib_x, setup.acc)
    history = fit(model, setup, loss_fn=loss_fn, callbacks=[reobserve, *callbacks], desc="qat")
    fq.observe(calib_x)  # fit left the best epoch's weights (on the CPU)
    clips = fq.clips()
    fq.remove()
    export_onnx(model, setup.train.input_shape, out_path, target.opset)
    return {
        "epochs": setup.epochs,
        "lr": setup.lr,
        "best_epoch": history.best_epoch,
        "fake_quant_val_accuracy": history.best.val_accuracy,
        "per_channel": target.per_channel,
        "weight_grid": list(target.weight_grid),
        "clips": clips,
    }
