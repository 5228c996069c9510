"""What every training call of a stage shares: the data, the schedule, the seed and where it runs.

`fit.fit` takes one `Setup`, and so do what trains through it: the distill modes, the prune
steps' fine-tunes (`pruning.prune_and_finetune`) and QAT (`qat.finetune_qat`). What differs
from one call to the next stays an argument of the call: the loss (cross-entropy, KD from a
teacher, mutual), the callbacks (the curve CSV sees the stage's own model only) and the
progress bar's label. A stage builds its setup from params once: `stage_setup` for the teacher
or the student section, `finetune_setup` for the prune and QAT fine-tunes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from slimline.compression.data.dataset import Split
from slimline.compression.training.augment import from_mode
from slimline.compression.training.device import CPU, Accelerator, accelerator
from slimline.compression.training.loader import Views
from slimline.core.params.models import ModelSpec
from slimline.core.params.schema import Params


@dataclass(frozen=True)
class Setup:
    train: Split
    val: Split  # scored after every epoch: the best val epoch's weights are kept
    epochs: int
    lr: float  # OneCycle's peak learning rate
    batch_size: int
    weight_decay: float  # AdamW's, on weights only (not biases and norm scales)
    seed: int  # the batch order; seed + 1 draws the augmented views
    acc: Accelerator = CPU  # where the model and the batches run (fp32 or bf16 autocast)
    augment: Views | None = None  # training batches' views (`augment.Augment`), or as read
    loader_workers: int = 0  # processes that read the batches; the weights do not depend on it

    @classmethod
    def of(cls, spec: ModelSpec, train: Split, val: Split, seed: int) -> Setup:
        """A params section's epochs, lr, batch size and weight decay, on the CPU, batches as
        read; `dataclasses.replace` sets the rest."""
        return cls(train, val, spec.epochs, spec.lr, spec.batch_size, spec.weight_decay, seed)


def stage_setup(params: Params, spec: ModelSpec, train: Split, val: Split) -> Setup:
    """How a stage trains the model of `spec` (params.teacher or params.student): its section's
    hyper-parameters with params' seed, device, precision, augmentation and loader workers."""
    return dataclasses.replace(
        Setup.of(spec, train, val, params.seed),
        acc=accelerator(params.device, params.precision),
        augment=from_mode(params.data.augment),
        loader_workers=params.loader_workers,
    )


def finetune_setup(params: Params, train: Split, val: Split) -> Setup:
    """The prune steps' and QAT's fine-tunes: prune's epochs and lr on the student's batches
    (batch size, weight decay) and the stage's device and views."""
    student = stage_setup(params, params.student, train, val)
    return dataclasses.replace(student, epochs=params.prune.finetune_epochs, lr=params.prune.lr)
