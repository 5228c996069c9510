"""Training batches: the seeded order of each epoch, read through a torch `DataLoader`.

Each epoch's order is drawn before the epoch from the seeded generator (`EpochOrder`, batches
of indices), `workers` processes read those rows (sorted reads, so a lazily read split streams
forward) while the model trains, and the augmentation runs in the training process with its
own generator. The weights therefore do not depend on the worker count: 0 workers (reading in
the training process) and any other number give the same bits on the CPU. On CUDA the read
batches are pinned and copied asynchronously.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from slimline.compression.data.dataset import DataError, Split
from slimline.compression.training.device import CPU, Accelerator

# (a batch (B, ...) on the CPU, the views' seeded generator) -> its augmented views: an
# `augment.Augment`, or any other seeded transform (bench/kd.py warps digits)
Views = Callable[[Tensor, torch.Generator], Tensor]
# batches each loader worker reads ahead: enough to hide a read behind a training step, few
# enough that workers x PREFETCH batches fit in memory whatever the batch size
PREFETCH = 2
log = logging.getLogger(__name__)


def as_input(x: np.ndarray) -> Tensor:
    """Rows of a split as the model takes them: token ids as int64 (what `nn.Embedding` and the
    ONNX `input_ids` take), everything else as float32."""
    x = np.asarray(x)
    return torch.from_numpy(x.astype(np.int64 if x.dtype.kind in "iu" else np.float32, copy=False))


def epoch_batches(n: int, batch_size: int, gen: torch.Generator) -> list[Tensor]:
    # The order is drawn here, in the training process, from the seeded generator, never by
    # the loader: it is what reproducibility rests on, and the indices are exactly what KD
    # needs to look up cached teacher logits.
    order = torch.randperm(n, generator=gen).split(batch_size)
    return list(order)[: steps_per_epoch(n, batch_size)]


def steps_per_epoch(n: int, batch_size: int) -> int:
    steps = -(-n // batch_size)
    # BatchNorm cannot train on a last batch of one sample (its variance is undefined): drop it
    return steps - 1 if steps > 1 and n % batch_size == 1 else steps


class EpochOrder(Sampler[np.ndarray]):
    """The loader's batch sampler: one epoch's batches of sample indices, drawn from the seeded
    generator by `draw` before each epoch. A pass over it only replays them: the loader starts
    its first pass twice with workers, which must not draw (and shift) an order."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator):
        self.n, self.batch_size, self.gen = n, batch_size, gen
        self.batches: list[np.ndarray] = []

    def draw(self) -> None:
        # numpy index arrays: they travel to the workers as plain pickles, not shared memory
        self.batches = [idx.numpy() for idx in epoch_batches(self.n, self.batch_size, self.gen)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


@dataclass(frozen=True)
class _Unreadable:
    """What a read that failed returns instead of a batch: the training process raises it as
    one `DataError` (an exception raised in a worker would come back wrapped in its traceback)."""

    message: str


class _TrainRows(Dataset):
    """The train split as the loader reads it: a batch of indices (B,) in, (x, y, idx) out on
    the CPU; x is read in ascending row order, so a lazily read split streams forward."""

    def __init__(self, train: Split):
        self.train = train

    def __getitem__(self, idx: np.ndarray) -> tuple[Tensor, Tensor, Tensor] | _Unreadable:
        rows = np.sort(idx)
        order = torch.from_numpy(np.argsort(np.argsort(idx)))  # back to the sampler's order
        try:
            x = as_input(self.train.x[rows])[order]
        except (OSError, ValueError) as e:  # the file vanished, or shrank, while training
            where = getattr(self.train.x, "path", "the train split")
            return _Unreadable(
                f"{where}: cannot read the train split's rows ({type(e).__name__}: "
                f"{getattr(e, 'strerror', None) or e}); was it moved or rewritten while "
                "training? Rerun prepare, then this stage"
            )
        y = torch.as_tensor(self.train.y[idx], dtype=torch.long)
        return x, y, torch.from_numpy(idx)  # (B, ...), (B,), (B,)


def _as_is(batch):
    return batch  # `_TrainRows` makes whole batches: nothing to collate


def _one_thread(worker_id: int) -> None:
    # a worker only reads: torch threads in every worker would oversubscribe the cores that
    # the training process's `threads` already use
    torch.set_num_threads(1)


@dataclass(frozen=True)
class Batches:
    """How training batches are made: read from the split (by `workers` loader processes, or
    here when 0), augmented here, put on the device."""

    acc: Accelerator = CPU
    augment: Views | None = None
    workers: int = 0

    @contextlib.contextmanager
    def stream(self, train: Split, order: EpochOrder) -> Iterator[DataLoader]:
        """The batch stream of `fit`, one pass per epoch; its workers persist across epochs
        and end when the block does, also after an error."""
        _check_cores(self.workers)
        loader = DataLoader(
            _TrainRows(train),
            sampler=order,
            batch_size=None,  # the sampler yields whole batches of indices: one read each
            collate_fn=_as_is,
            num_workers=self.workers,
            pin_memory=self.acc.pin_memory,  # page-locked: the copies to the GPU run async
            persistent_workers=self.workers > 0,
            prefetch_factor=PREFETCH if self.workers else None,
            worker_init_fn=_one_thread if self.workers else None,
            # seeds the workers' RNGs (unused: they only read); without it the loader would
            # draw from the global generator and shift everything seeded after the fit
            generator=torch.Generator().manual_seed(0),
        )
        try:
            yield loader
        finally:
            _shut_down(loader)

    def finish(self, batch, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """A read batch augmented (in this process, with `gen`: the views do not depend on
        the worker count) and on the device: (x (B, ...), y (B,), idx (B,) on the CPU)."""
        if isinstance(batch, _Unreadable):
            raise DataError(batch.message)
        x, y, idx = batch
        if self.augment is not None:
            x = self.augment(x, gen)
        return self.acc.batch(x), self.acc.batch(y), idx

    def make(self, train: Split, idx: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """One batch of the samples `idx`, read here, without a loader."""
        x, y, _ = self.finish(_TrainRows(train)[idx.numpy()], gen)
        return x, y


def _check_cores(workers: int) -> None:
    """Warn when the loader workers and the training threads want more cores than there are:
    they would then slow each other down rather than overlap."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = torch.get_num_threads()
    if workers and workers + threads > (cores or 1):
        log.warning(
            "loader_workers: %d workers + %d training threads on %d cores; lower "
            "loader_workers or threads", workers, threads, cores,
        )  # fmt: skip


def _shut_down(loader: DataLoader) -> None:
    # Persistent workers live as long as the loader's iterator: end them now rather than when
    # it is collected (a traceback that holds the loader would keep them alive). Private API,
    # present since torch 1.7, and a no-op when called twice.
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
