"""Training batches streamed by a DataLoader: the same batches, hence the same weights, whatever
the worker count; a read that fails in a worker is one clear error, and no worker outlives a fit."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from slimline.compression.data.dataset import DataError, Dataset, Split
from slimline.compression.data.store import load_split, save_split
from slimline.compression.models.families import build_model
from slimline.compression.training.augment import Augment
from slimline.compression.training.fit import EpochRecord, fit, make_kd_loss, seed_everything
from slimline.compression.training.loader import Batches, EpochOrder
from slimline.compression.training.setup import Setup
from slimline.core.params.models import ModelSpec
from tests.support.data import make_split

SHAPE = (1, 8, 8)
pytestmark = pytest.mark.usefixtures("restore_torch_state")


def stored(split: Split, folder: Path) -> Split:
    """`split` written as a prepared train split and read back lazily (`StoredRows`)."""
    ds = Dataset(split.x, split.y, split.class_names, split.scale)
    save_split(folder / "train.npz", split.x, split.y, ds, split.mean, split.std)
    lazy = load_split(folder, "train", lazy=True)
    assert not isinstance(lazy.x, np.ndarray)  # read row by row from the file
    return lazy


@contextlib.contextmanager
def within(seconds: int):
    """Fail instead of hanging: a SIGALRM after `seconds` raises in the test."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the loader hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def trained(train: Split, workers: int, callbacks=()):
    """A small cnn fitted with KD (looked up by sample index) on augmented views: everything
    that could go wrong if a batch's rows, labels, indices or views depended on the loader."""
    seed_everything(0, 1)
    model = build_model(ModelSpec(arch="cnn", width=8, depth=2, epochs=3, lr=0.01,
                                  batch_size=32), SHAPE, 3)  # fmt: skip
    teacher = np.random.default_rng(3).normal(size=(len(train.y), 3)).astype(np.float32)
    setup = Setup(
        train, make_split(60, seed=2), epochs=3, lr=0.01, batch_size=32, weight_decay=1e-4,
        seed=7, augment=Augment(pad=1, flip=True), loader_workers=workers,
    )  # fmt: skip
    history = fit(model, setup, loss_fn=make_kd_loss(teacher, 4.0, 0.7), callbacks=callbacks)
    return model.state_dict(), history


def test_weights_and_history_do_not_depend_on_the_worker_count(tmp_path):
    split = make_split(161, seed=1)  # 161 = 5 x 32 + 1: the last batch of one is dropped
    lazy = stored(split, tmp_path)
    with within(120):
        runs = [trained(split, 0), trained(lazy, 0), trained(lazy, 2)]
    reference_state, reference_history = runs[0]
    for state, history in runs[1:]:
        assert history.records == reference_history.records
        assert history.best_epoch == reference_history.best_epoch
        assert state.keys() == reference_state.keys()
        assert all(torch.equal(state[k], v) for k, v in reference_state.items())
    assert multiprocessing.active_children() == []  # the persistent workers ended with the fit


def test_workers_stream_the_batches_in_the_drawn_order(tmp_path):
    lazy = stored(make_split(100, seed=1), tmp_path)
    streams = {}
    for workers in (0, 2):
        order = EpochOrder(100, 16, torch.Generator().manual_seed(5))
        epochs = []
        with Batches(workers=workers).stream(lazy, order) as loader:
            for _ in range(3):  # persistent workers: one pass per epoch, each a new order
                order.draw()
                epochs.append([tuple(t.clone() for t in batch) for batch in loader])
            assert len(multiprocessing.active_children()) == workers  # alive between passes
        assert multiprocessing.active_children() == []
        streams[workers] = epochs
    gen = torch.Generator().manual_seed(5)
    for e, epoch in enumerate(streams[0]):
        drawn = torch.randperm(100, generator=gen).split(16)[:7]  # 100 % 16 == 4: all 7 batches
        assert [idx.tolist() for _, _, idx in epoch] == [d.tolist() for d in drawn]
        for (x, y, idx), (x2, y2, idx2) in zip(epoch, streams[2][e], strict=True):
            assert torch.equal(idx, idx2) and torch.equal(x, x2) and torch.equal(y, y2)
            np.testing.assert_array_equal(x.numpy(), np.asarray(lazy.x)[idx.numpy()])
            np.testing.assert_array_equal(y.numpy(), lazy.y[idx.numpy()])


class Vanish:
    """A callback that deletes the training file after the first epoch, as a disk clean-up or
    a concurrent `prepare` might."""

    def __init__(self, path: Path):
        self.path = path

    def on_epoch_end(self, record: EpochRecord) -> None:
        self.path.unlink(missing_ok=True)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_file_that_vanishes_while_training_is_one_clear_error(tmp_path, workers):
    lazy = stored(make_split(96, seed=1), tmp_path)
    with within(120), pytest.raises(DataError) as e:
        trained(lazy, workers, callbacks=[Vanish(tmp_path / "train.npz")])
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'train.npz'}: cannot read the train split's rows")
    assert "FileNotFoundError" in message and "Rerun prepare" in message
    assert "Traceback" not in message  # not a worker's traceback: one message for the user
    assert multiprocessing.active_children() == []


def test_workers_and_training_threads_beyond_the_cores_are_warned_about(caplog):
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(1)  # the training process's `threads`
    order = EpochOrder(10, 4, torch.Generator().manual_seed(0))
    with caplog.at_level(logging.WARNING, logger="slimline.compression.training.fit"):
        with Batches(workers=cores - 1).stream(make_split(10), order):  # + 1 thread: fits
            assert caplog.text == ""
        with Batches(workers=cores).stream(make_split(10), order):  # no pass: no worker started
            pass
    assert f"loader_workers: {cores} workers + 1 training threads on {cores} cores" in caplog.text
