"""One training loop for the teacher, the distilled student and pruning fine-tunes.

`fit` owns the optimizer (AdamW, no decay on biases and norms), the OneCycle learning-rate
schedule, seeded shuffling, the batch stream and best-epoch selection; what differs between
uses is the loss (`LossFn`: cross-entropy; KD against cached teacher logits looked up by sample
index; or KD against the teacher's logits of the very batch the student sees, computed per
batch; `distillation` builds the distill stage's modes from these) and the callbacks
(curve CSV, anything a caller wants). What stays the same across a stage's calls is one
`setup.Setup`: the splits, epochs, lr, batch size, weight decay, seed, where it runs
(`device.Accelerator`: CPU or CUDA, fp32 or bf16 autocast) and whether training batches are
augmented (`Views`, e.g. `augment.Augment`); the model comes back on the CPU either way.
Nothing here logs to a tracker.

Batches come from `loader` (a torch DataLoader over the seeded order); the weights do not
depend on its worker count.
"""

from __future__ import annotations

import dataclasses
import os
import random
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimline.compression.data.dataset import Split
from slimline.compression.training.device import CPU, Accelerator
from slimline.compression.training.loader import Batches, EpochOrder, as_input, steps_per_epoch
from slimline.compression.training.setup import Setup
from slimline.core.atomic import write_text
from slimline.core.kernels import pinnable
from slimline.core.params.models import Distill

# (logits (B, K), labels (B,), sample indices into the train split (B,), the input batch as the
# model saw it, augmented and on its device (B, ...)) -> scalar loss
LossFn = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy", "lr")


def seed_everything(seed: int, threads: int, reproducible: bool = False) -> None:
    """Seed every RNG and pin the thread count: both decide the bits of the weights.
    reproducible (`params.reproducible`, with the stage shell's `core.kernels` pins): oneDNN
    and NNPACK off, so convolutions run as im2col + MKL GEMM, the same bits on every AVX2 CPU
    and thread count."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    if reproducible and pinnable():
        torch.backends.mkldnn.set_flags(False)
        torch.backends.nnpack.set_flags(False)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based within one fit
    train_loss: float  # mean of the training loss over the epoch's samples
    val_loss: float  # cross-entropy on val, whatever the training loss (comparable across uses)
    val_accuracy: float
    lr: float  # learning rate of the epoch's last step


@dataclass
class History:
    records: list[EpochRecord]
    best_epoch: int  # the weights `fit` leaves in the model are this epoch's

    @property
    def best(self) -> EpochRecord:
        return self.records[self.best_epoch - 1]


class Callback(Protocol):
    def on_epoch_end(self, record: EpochRecord) -> None: ...


class CsvCurve:
    """Writes the curve CSV after every epoch (atomically); epochs count on across fits, so
    one instance passed to several fits (the prune steps) gives one continuous curve."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[tuple] = []

    def on_epoch_end(self, record: EpochRecord) -> None:
        values = dataclasses.astuple(record)[1:]
        self.rows.append((len(self.rows) + 1, *values))
        self.flush()

    def flush(self) -> None:
        """Write what there is (just the header before any epoch), so the file always exists."""
        lines = [",".join(CURVE_COLUMNS)]
        lines += [",".join([str(r[0])] + [f"{v:.6g}" for v in r[1:]]) for r in self.rows]
        write_text(self.path, "\n".join(lines) + "\n")


def cross_entropy(logits: Tensor, y: Tensor, idx: Tensor, x: Tensor) -> Tensor:
    return F.cross_entropy(logits, y)


def kd_loss(
    student: Tensor, teacher: Tensor, y: Tensor, temperature: float, alpha: float
) -> Tensor:
    """alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, y).

    T^2 keeps the soft-target gradients on the scale of the hard-label ones (Hinton et al.).
    """
    ce = F.cross_entropy(student, y)
    if alpha == 0:  # exactly cross-entropy, even if the teacher logits are extreme
        return ce
    kl = F.kl_div(
        F.log_softmax(student / temperature, dim=1),  # (B, K)
        F.log_softmax(teacher / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    soft = alpha * temperature**2 * kl
    return soft if alpha == 1 else soft + (1 - alpha) * ce


def make_kd_loss(teacher_logits: np.ndarray | Tensor, temperature: float, alpha: float) -> LossFn:
    """KD against teacher logits computed once for the whole train split (N, K)."""
    cached = torch.as_tensor(teacher_logits, dtype=torch.float32)

    def loss(logits: Tensor, y: Tensor, idx: Tensor, x: Tensor) -> Tensor:
        return kd_loss(logits, cached[idx].to(logits.device), y, temperature, alpha)

    return loss


def make_per_batch_kd_loss(
    teacher: nn.Module, temperature: float, alpha: float, acc: Accelerator = CPU
) -> LossFn:
    """KD against the teacher's logits of each batch as the student sees it (augmented views:
    a cache of clean-view logits would describe other images). The teacher runs in eval mode,
    without gradients, on the batch's device."""
    teacher = acc.prepare(teacher).eval()

    def loss(logits: Tensor, y: Tensor, idx: Tensor, x: Tensor) -> Tensor:
        with torch.no_grad(), acc.autocast():
            soft = teacher(x).float()
        return kd_loss(logits, soft, y, temperature, alpha)

    return loss


def distill_loss(teacher: nn.Module, setup: Setup, distill: Distill) -> LossFn:
    """KD from the frozen `teacher` (on the setup's device): its train logits computed once and
    looked up by index ("cached"), or, when the setup augments batches, its logits of each
    augmented view ("per_batch")."""
    train, acc = setup.train, setup.acc
    if setup.augment is not None:
        return make_per_batch_kd_loss(teacher, distill.temperature, distill.alpha, acc)
    # on disk (an unlinked temp file, mapped; the mapping outlives the closed file), not in
    # memory: (N, K) logits grow with the data
    with tempfile.TemporaryFile() as f:
        cache = np.memmap(f, np.float32, "w+", shape=(len(train.y), train.num_classes))
    predict_logits(acc.prepare(teacher), as_read_by(teacher, train).x, acc=acc, out=cache)
    return make_kd_loss(cache, distill.temperature, distill.alpha)


def as_read_by(teacher: nn.Module, split: Split) -> Split:
    """The split as `teacher` reads it: the teacher checkpoint (`load_teacher`, trained here or
    imported) its own tokenizer's ids where they differ from the student's; an online peer or
    a student generation teaching the next, the student's."""
    return split.for_teacher() if getattr(teacher, "reads_teacher_ids", False) else split


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    x: np.ndarray | Tensor,
    batch_size: int = 512,
    acc: Accelerator = CPU,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Eval-mode fp32 logits (N, K) as numpy, computed on the model's device (`acc`) batch by
    batch, so x may be read lazily; written into `out` when given (e.g. a memmap). The
    model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    parts = []
    for i in range(0, len(x), batch_size):
        batch = x[i : i + batch_size] if isinstance(x, Tensor) else as_input(x[i : i + batch_size])
        logits = model(acc.batch(batch)).float().cpu().numpy()
        if out is None:
            parts.append(logits)
        else:
            out[i : i + len(logits)] = logits
    model.train(was_training)
    if out is not None:
        return out
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def loss_and_accuracy(
    model: nn.Module, split: Split, acc: Accelerator = CPU
) -> tuple[float, float]:
    logits = torch.from_numpy(predict_logits(model, split.x, acc=acc))  # (N, K)
    y = torch.as_tensor(split.y, dtype=torch.long)
    loss = F.cross_entropy(logits, y).item()
    # count / n in float64, as compression.scores does for ONNX outputs: the same model
    # must score the same accuracy whichever runtime produced the logits
    return loss, int((logits.argmax(1) == y).sum()) / len(y)


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    # decaying biases and norm scales only fights the normalization: decay weights only
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0}]
    return torch.optim.AdamW(groups, lr=lr)


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    quiet = bool(os.environ.get("CI")) or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="epoch", disable=quiet, leave=False)


def _better(new: EpochRecord, best: EpochRecord) -> bool:
    # Accuracy on a small val split ties often (digits: 270 samples, one error is 0.4 %);
    # the lower val loss then breaks the tie, and a full tie keeps the earlier epoch.
    return (new.val_accuracy, -new.val_loss) > (best.val_accuracy, -best.val_loss)


def _train_epoch(model, loader, make, loss_fn, opt, sched, gen) -> tuple[float, float]:
    """One pass over `loader`; returns (mean loss per sample, lr of the last step)."""
    model.train()
    total, seen, step_lr = 0.0, 0, opt.param_groups[0]["lr"]
    for batch in loader:
        x, y, idx = make.finish(batch, gen)  # x: (B, *input_shape) on the device
        with make.acc.autocast():
            logits = model(x)
        loss = loss_fn(logits.float(), y, idx, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        step_lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        total += loss.item() * len(idx)
        seen += len(idx)
    return total / seen, step_lr


def fit(
    model: nn.Module,
    setup: Setup,
    *,
    loss_fn: LossFn | None = None,
    callbacks: Sequence[Callback] = (),
    desc: str = "train",
) -> History:
    """Train in place as `setup` says; the model ends on the CPU with the weights of the best
    val-accuracy epoch.

    `loss_fn` defaults to cross-entropy on the labels; pass `make_kd_loss(...)` (cached teacher
    logits) or `make_per_batch_kd_loss(...)` (with the setup's `augment`) to distill.
    """
    s, loss_fn = setup, loss_fn or cross_entropy
    make = Batches(s.acc, s.augment, s.loader_workers)
    model = s.acc.prepare(model)
    n = len(s.train.y)
    gen = torch.Generator().manual_seed(s.seed)
    views = torch.Generator().manual_seed(s.seed + 1)  # the augmented views, apart from the order
    opt = _optimizer(model, s.lr, s.weight_decay)
    total_steps = s.epochs * steps_per_epoch(n, s.batch_size)
    # OneCycle: warm-up then anneal, which suits short budgets and pruned-model fine-tunes alike
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=total_steps)
    records: list[EpochRecord] = []
    best_epoch, best_state = 0, None
    order = EpochOrder(n, s.batch_size, gen)
    with make.stream(s.train, order) as loader, _progress(s.epochs, desc) as bar:
        for epoch in range(1, s.epochs + 1):
            order.draw()
            train_loss, step_lr = _train_epoch(model, loader, make, loss_fn, opt, sched, views)
            val_loss, val_acc = loss_and_accuracy(model, s.val, s.acc)
            records.append(EpochRecord(epoch, train_loss, val_loss, val_acc, step_lr))
            if best_state is None or _better(records[-1], records[best_epoch - 1]):
                best_epoch = epoch
                best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }
            for cb in callbacks:
                cb.on_epoch_end(records[-1])
            bar.set_postfix(loss=f"{records[-1].train_loss:.4f}", val_acc=f"{val_acc:.4f}")
            bar.update()
    assert best_state is not None  # epochs >= 1: the first epoch always sets it
    # in place, so the caller's module: on the CPU, in the usual layout, for export
    model.to("cpu", memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    model.load_state_dict(best_state)
    model.eval()
    return History(records, best_epoch)
