"""Pin the CPU kernels that torch trains with, so that another x86-64 machine gets the same bits.

Torch picks its CPU kernels by the instruction sets it finds: ATen's vectorized loops (AVX2
or AVX-512), oneDNN's JIT convolutions and MKL's BLAS branch all follow the CPU, and each
sums floats in its own order. A teacher trained on an AVX2-only machine therefore differed
from one trained on an AVX-512 machine (0.9972 vs 0.9889 test accuracy, best epoch 8 vs 13).
`params.reproducible` pins all three to their AVX2 level, which every x86-64 CPU slimline
supports has:

- ATEN_CPU_CAPABILITY=avx2: ATen's vectorized kernels;
- MKL_CBWR=AVX2,STRICT: MKL's conditional numerical reproducibility, the AVX2 code branch, and
  (STRICT) GEMM results that do not depend on the thread count or on memory alignment;
- ONEDNN_MAX_CPU_ISA=AVX2, and oneDNN is not used for training at all
  (`training.fit.seed_everything`): its convolutions pick kernels and blocking by the
  CPU (ISA, caches, threads: on one AVX2 machine the AVX and AVX2 caps, and 1 and 2 threads,
  each trained different bits); without it torch's convolutions run as im2col + MKL GEMM,
  which CBWR pins, and the weights came out identical at 1 and 2 threads.

What it costs: a digits ResNet teacher epoch took 2.2 s with oneDNN and 4.4-7.8 s without
(one thread, AVX2 EPYC, a busy machine); docs/architecture.md, "The same verdict on every
CPU", has the pipeline's figure.

The variables are read when torch runs its first kernel, not when it is imported, so the stage
shell sets them after its imports and before any work (`tests/core/test_kernels.py` proves
no stage module runs a kernel on import). A variable the user has set is left alone.
"""

from __future__ import annotations

import os
import platform

from slimline.core.cpu import cpu_info

PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def pinnable() -> bool:
    """x86-64 with AVX2: the only CPUs these pins name a valid level for."""
    sets = cpu_info()["instruction_sets"]
    return platform.machine().lower() in ("x86_64", "amd64") and (
        isinstance(sets, dict) and sets.get("AVX2", False)
    )


def pin_cpu_kernels(reproducible: bool) -> None:
    """Set the pins (reproducible and pinnable) before torch's first kernel."""
    if reproducible and pinnable():
        for key, value in PINS.items():
            os.environ.setdefault(key, value)
