"""Which CPUs an INT8 model is right on (`quantize.target`), and the check that it runs on one.

onnxruntime multiplies uint8 activations by int8 weights (U8S8). With VNNI (AVX-512 VNNI,
AVX-VNNI) or AMX the products are summed in int32 and the result is exact. Without them, on
AVX2 and plain AVX-512, MLAS uses VPMADDUBSW, which adds two u8 x s8 products into an int16
and saturates: 255 x 127 x 2 = 64,770 > 32,767. The model is then silently wrong. The
instruction set of the CPU that *runs* the model decides, not the one that built it.

- portable (the default): uint8 weights too (U8U8). MLAS widens both to 16 bits and sums the
  products in int32 on every CPU, so every x86-64 CPU computes the same, exact integers, at
  full 8-bit precision. On an AVX2-only EPYC it kept its FP32 source's prediction on every
  test sample, natively and under an emulated Haswell, where 8-bit U8S8 changed 2 to 8 of 360
  (docs/performance.md, "Which INT8 format is exact everywhere").
- native: the best format for the CPU the quantize stage runs on. With VNNI or AMX
  that is U8S8 with 8-bit weights, whose model then needs one of those sets wherever it runs.
  Without them it is U8S8 with 7-bit weights (onnxruntime's `reduce_range`: 255 x 64 x 2 =
  32,640 fits in an int16), exact on any CPU but one bit coarser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from slimline.core.cpu import describe

# any one of them sums u8 x s8 products without the int16 step
EXACT_SETS = ("AVX-512 VNNI", "AVX-VNNI", "AMX-INT8")


@dataclass(frozen=True)
class Int8Target:
    target: Literal["portable", "native"]
    weight_type: Literal["QUInt8", "QInt8"]  # activations are QUInt8 in every format
    reduce_range: bool  # 7-bit weights
    requires: tuple[str, ...]  # the CPU needs one of these; () runs exactly on any CPU
    made_on: str = ""  # native: the CPU that chose it (core.cpu.describe)

    @property
    def weight_grid(self) -> tuple[int, int]:
        """onnxruntime's integer range for the weights (QAT mirrors it): uint8 [0, 255];
        int8 symmetric [-127, 127], or [-64, 64] with reduce_range."""
        if self.weight_type == "QUInt8":
            return 0, 255
        return (-64, 64) if self.reduce_range else (-127, 127)

    @property
    def runs_on(self) -> str:
        if self.requires:
            return f"CPUs with {' or '.join(self.requires)} (U8S8, 8-bit weights)"
        if self.weight_type == "QUInt8":
            return "any x86-64 CPU (U8U8: int32 sums)"
        return "any x86-64 CPU (U8S8, 7-bit weights: no int16 saturation)"

    def report(self) -> dict:
        """metrics/quantize.json's keys. For native the CPU is part of the decision, so it
        is named; a portable model's figures hold on every CPU and name none (so that
        another machine's run reproduces the file)."""
        return {
            "target": self.target,
            "activation_type": "QUInt8",
            "weight_type": self.weight_type,
            "reduce_range": self.reduce_range,
            "requires": list(self.requires),
            "runs_on": self.runs_on,
        } | ({"made_on": self.made_on} if self.made_on else {})

    def metadata(self) -> dict[str, str]:
        """The ONNX metadata_props that `warning` reads back."""
        return {"int8_target": self.target, "int8_requires": json.dumps(list(self.requires))}


def choose(target: Literal["portable", "native"], cpu: dict) -> Int8Target:
    """The format for `quantize.target` on the CPU `cpu` (core.cpu.cpu_info)."""
    if target == "portable":
        return Int8Target("portable", "QUInt8", False, ())
    sets = cpu["instruction_sets"]
    exact = tuple(s for s in EXACT_SETS if isinstance(sets, dict) and sets.get(s))
    return Int8Target("native", "QInt8", not exact, exact, describe(cpu))


def warning(metadata: dict[str, str], cpu: dict) -> str | None:
    """Why this CPU may compute the model wrongly, or None: a native INT8 model made for VNNI
    or AMX, run on a CPU with none of them (or whose sets cannot be read)."""
    requires = json.loads(metadata.get("int8_requires", "[]"))
    sets = cpu["instruction_sets"]
    if not requires or (isinstance(sets, dict) and any(sets.get(s) for s in requires)):
        return None
    return (
        f"this INT8 model was quantized with quantize.target native for CPUs with "
        f"{' or '.join(requires)}; this CPU ({describe(cpu)}) has none of them, so onnxruntime's "
        "U8S8 sums can saturate and its outputs may be wrong. Quantize it with quantize.target "
        "portable to run it here."
    )
