"""QAT of the pruned checkpoint, as the quantize stage asks for it (`runtime.quantize.QatFn`)
when post-training quantization cannot keep accuracy.

It fine-tunes the model the quantized file came from the way the prune stage fine-tunes:
KD from the teacher, prune's epochs and lr on the student's batches, on `device`
(`training.setup.finetune_setup`), with fake quantization on the INT8 format's grid
(`training.qat`). Torch, the checkpoint and the teacher load only when QAT runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slimline.compression.data.dataset import Split
from slimline.compression.runtime.int8_target import Int8Target
from slimline.compression.runtime.quantize import QatFn, QatUnavailable
from slimline.core.params.schema import Params

PARITY_SAMPLES = 128  # val rows that must agree between the checkpoint and the quantized source
PARITY_ATOL = 1e-3


def pruned_qat(params: Params, root: Path, train: Split, val: Split, calib_x: np.ndarray) -> QatFn:
    """The QAT step for `runtime.quantize.quantize`: writes the fine-tuned FP32 model to the
    path it is given, for the INT8 format it is given; `QatUnavailable` when the pruned
    checkpoint is not the model in the pruned ONNX file."""

    def finetune(out: Path, fmt: Int8Target) -> dict[str, Any]:
        from slimline.compression.models.checkpoints import load_checkpoint
        from slimline.compression.models.teacher import load_teacher
        from slimline.compression.runtime.onnx_io import ParityError, check_parity
        from slimline.compression.training.device import out_of_memory_hint
        from slimline.compression.training.fit import distill_loss, seed_everything
        from slimline.compression.training.qat import QatTarget, finetune_qat
        from slimline.compression.training.setup import finetune_setup

        paths = params.paths
        seed_everything(params.seed, params.threads, params.reproducible)
        model = load_checkpoint(root / paths.pruned)
        try:  # QAT can only fine-tune the model the quantized file came from
            check_parity(model, root / paths.pruned_onnx, val.x[:PARITY_SAMPLES], PARITY_ATOL)
        except ParityError as e:
            raise QatUnavailable(f"{paths.pruned} is not the model in {e}") from None
        teacher = load_teacher(root / paths.teacher)
        setup = finetune_setup(params, train, val)
        kd = distill_loss(teacher, setup, params.distill)
        target = QatTarget(calib_x, params.quantize.per_channel, fmt.weight_grid,
                           params.export.opset)  # fmt: skip
        with out_of_memory_hint(setup.acc, "student"):
            done = finetune_qat(model, setup, kd, target, out)
        return done | {"source": str(paths.pruned)} | setup.acc.describe()

    return finetune
