"""The training loop: KD loss, learning, best-epoch restore, curves, determinism."""

from __future__ import annotations

import csv
import math
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slimline.compression.data.dataset import Split
from slimline.compression.models.families import build_from_config, build_model
from slimline.compression.training.augment import Augment
from slimline.compression.training.fit import (
    CURVE_COLUMNS,
    CsvCurve,
    _progress,
    fit,
    kd_loss,
    make_kd_loss,
    make_per_batch_kd_loss,
    predict_logits,
    seed_everything,
)
from slimline.compression.training.setup import Setup
from slimline.core.params.models import ModelSpec
from tests.support.data import make_split

SHAPE = (1, 8, 8)
pytestmark = pytest.mark.usefixtures("restore_torch_state")


def train_small(arch="cnn", seed=0, epochs=4, callbacks=(), loss_fn=None, n=240):
    seed_everything(seed, 1)
    spec = ModelSpec(arch=arch, width=8, depth=2, epochs=epochs, lr=0.01, batch_size=32)
    model = build_model(spec, SHAPE, 3)
    train, val = make_split(n, seed=1), make_split(120, seed=2)
    setup = Setup(train, val, epochs=epochs, lr=0.01, batch_size=32, weight_decay=1e-4, seed=seed)
    history = fit(model, setup, loss_fn=loss_fn, callbacks=callbacks)
    return model, history, val


def test_kd_loss_matches_a_hand_computation():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
    t = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    y = torch.tensor([0, 2])
    temperature, alpha = 2.0, 0.25

    def softmax(v):
        e = [math.exp(a) for a in v]
        return [a / sum(e) for a in e]

    kl = ce = 0.0
    for i in range(2):
        p_t = softmax([v / temperature for v in t[i].tolist()])
        p_s = softmax([v / temperature for v in s[i].tolist()])
        kl += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
        ce -= math.log(softmax(s[i].tolist())[y[i]])
    expected = alpha * temperature**2 * kl / 2 + (1 - alpha) * ce / 2
    assert kd_loss(s, t, y, temperature, alpha).item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_alpha_zero_is_exactly_cross_entropy():
    s, t = torch.randn(16, 5), torch.randn(16, 5) * 100  # extreme teacher must not leak in
    y = torch.randint(0, 5, (16,))
    assert torch.equal(kd_loss(s, t, y, 4.0, 0.0), F.cross_entropy(s, y))


def test_kd_loss_is_zero_kl_when_student_equals_teacher():
    s = torch.randn(8, 4)
    assert kd_loss(s, s.clone(), torch.zeros(8, dtype=torch.long), 3.0, 1.0).item() < 1e-6


def test_make_kd_loss_looks_up_the_batch_samples():
    teacher = torch.randn(10, 3)
    idx, y = torch.tensor([7, 2]), torch.tensor([1, 0])
    s = torch.randn(2, 3)
    loss = make_kd_loss(teacher.numpy(), 2.0, 0.5)(s, y, idx, torch.zeros(2, 4))
    assert torch.equal(loss, kd_loss(s, teacher[idx], y, 2.0, 0.5))


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet"])
def test_fit_learns_an_easy_problem(arch):
    model, history, val = train_small(arch, epochs=5)
    losses = [r.train_loss for r in history.records]
    assert losses[-1] < 0.6 * losses[0]
    assert history.best.val_accuracy >= 0.9
    # the model holds the best epoch's weights, in eval mode
    logits = predict_logits(model, val.x)
    assert not model.training
    assert (logits.argmax(1) == val.y).mean() == pytest.approx(history.best.val_accuracy)


def test_fit_with_kd_learns_from_the_teacher():
    teacher, _, _ = train_small("cnn", epochs=4)
    cached = predict_logits(teacher, make_split(240, seed=1).x)  # (N, K) for the train split
    _, history, _ = train_small("mlp", loss_fn=make_kd_loss(cached, 4.0, 0.7))
    assert history.best.val_accuracy >= 0.9


def test_records_and_schedule():
    _, history, _ = train_small("mlp", epochs=4)
    assert [r.epoch for r in history.records] == [1, 2, 3, 4]
    lrs = [r.lr for r in history.records]
    assert max(lrs) <= 0.01 + 1e-12 and lrs[-1] < lrs[1]  # warm-up, then anneal
    best = history.best
    assert all(
        (r.val_accuracy, -r.val_loss) <= (best.val_accuracy, -best.val_loss)
        for r in history.records
    )


def test_same_seed_same_weights_other_seed_other_weights():
    a, ha, _ = train_small("cnn", seed=3, epochs=2)
    b, hb, _ = train_small("cnn", seed=3, epochs=2)
    c, _, _ = train_small("cnn", seed=4, epochs=2)
    assert ha.records == hb.records
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_bit_identical_across_fresh_processes():
    script = textwrap.dedent(
        """
        import hashlib, sys
        sys.path.insert(0, sys.argv[1])
        from test_fit import train_small
        model, history, _ = train_small("resnet", seed=5, epochs=2)
        h = hashlib.sha256(repr(history.records).encode())
        for v in model.state_dict().values():
            h.update(v.numpy().tobytes())
        print(h.hexdigest())
        """
    )
    here = str(Path(__file__).parent)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, here], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    digests = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(digests[0]) == 64 and digests[0] == digests[1]


def test_setup_of_takes_the_hyperparameters_of_a_params_section():
    spec = ModelSpec(arch="mlp", width=8, depth=1, epochs=2, lr=0.02, batch_size=16)
    setup = Setup.of(spec, make_split(64, seed=1), make_split(32, seed=2), seed=0)
    assert (setup.epochs, setup.lr, setup.batch_size, setup.weight_decay) == (2, 0.02, 16, 1e-4)
    assert setup.augment is None and setup.loader_workers == 0 and not setup.acc.cuda
    seed_everything(0, 1)
    history = fit(build_model(spec, SHAPE, 3), setup)
    assert len(history.records) == 2 and max(r.lr for r in history.records) <= 0.02


def test_last_batch_of_one_sample_is_dropped_not_a_crash():
    # 33 samples, batch 32: a BatchNorm layer cannot train on the one left over
    _, history, _ = train_small("cnn", epochs=1, n=33)
    assert math.isfinite(history.records[0].train_loss)


def test_csv_curve_counts_epochs_across_fits(tmp_path):
    curve = CsvCurve(tmp_path / "plots" / "curve.csv")
    curve.flush()
    assert (tmp_path / "plots" / "curve.csv").read_text() == ",".join(CURVE_COLUMNS) + "\n"
    train_small("mlp", epochs=2, callbacks=[curve])
    train_small("mlp", epochs=3, callbacks=[curve])
    with (tmp_path / "plots" / "curve.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "val_accuracy", "lr"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert all(0 <= float(r["val_accuracy"]) <= 1 for r in rows)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["curve.csv"]


def test_predict_logits_keeps_the_mode_and_batches():
    model = build_model(
        ModelSpec(arch="cnn", width=4, depth=2, epochs=1, lr=0.1, batch_size=4), SHAPE, 3
    ).train()
    x = np.random.default_rng(0).normal(size=(7, *SHAPE)).astype(np.float32)
    out = predict_logits(model, x, batch_size=3)
    assert out.shape == (7, 3) and out.dtype == np.float32 and model.training
    model.eval()
    assert np.allclose(out, model(torch.from_numpy(x)).detach().numpy(), atol=1e-6)


def test_progress_bar_is_quiet_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "1")
    with _progress(3, "x") as bar:
        assert bar.disable
    monkeypatch.delenv("CI")
    with _progress(3, "x") as bar:  # pytest captures stderr: not a TTY either
        assert bar.disable


def test_seed_everything_pins_threads_and_determinism():
    seed_everything(1, 1)
    assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    first = (torch.rand(3), np.random.rand(3), random.random())
    seed_everything(1, 1)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2]


def test_per_batch_kd_asks_the_teacher_about_the_batch_the_student_sees():
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return x.flatten(1)[:, :3] * 10  # (B, 3) logits that depend on the view

    x = torch.randn(4, 1, 8, 8)
    student, y, idx = torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.arange(4)
    loss = make_per_batch_kd_loss(Recorder(), 2.0, 0.7)(student, y, idx, x)
    assert len(seen) == 1 and torch.equal(seen[0], x)
    assert torch.equal(loss, kd_loss(student, x.flatten(1)[:, :3] * 10, y, 2.0, 0.7))


def test_augmented_training_is_seeded_and_differs_from_plain():
    def weights(augment):
        seed_everything(0, 1)
        spec = ModelSpec(arch="cnn", width=4, depth=1, epochs=2, lr=0.01, batch_size=32)
        model = build_model(spec, SHAPE, 3)
        fit(model, Setup(make_split(96, seed=1), make_split(30, seed=2), epochs=2, lr=0.01,
                         batch_size=32, weight_decay=0, seed=0, augment=augment))  # fmt: skip
        return torch.cat([p.flatten() for p in model.parameters()])

    crop = Augment(pad=2, flip=True)
    assert torch.equal(weights(crop), weights(crop))  # the same views on a rerun
    assert not torch.equal(weights(crop), weights(None))  # ...which are not the plain images


def test_per_batch_kd_with_augmentation_learns_from_the_teacher():
    teacher, _, _ = train_small("cnn", epochs=4)
    seed_everything(0, 1)
    spec = ModelSpec(arch="cnn", width=4, depth=2, epochs=6, lr=0.01, batch_size=32)
    student = build_model(spec, SHAPE, 3)  # a conv student: shifted views keep their class
    setup = Setup(
        make_split(240, seed=1), make_split(120, seed=2), epochs=6, lr=0.01, batch_size=32,
        weight_decay=1e-4, seed=0, augment=Augment(pad=1, flip=False),
    )  # fmt: skip
    history = fit(student, setup, loss_fn=make_per_batch_kd_loss(teacher, 4.0, 0.7))
    # shifted views of random-noise prototypes are a hard task; chance is 1/3
    assert history.best.val_accuracy >= 0.6


def test_fit_trains_a_text_model_on_int32_token_ids():
    # prepared text splits store int32 ids: they must reach nn.Embedding as int64, never floats
    seed_everything(0, 1)

    def split(n: int, seed: int) -> Split:
        r = np.random.default_rng(seed)
        y = r.integers(0, 3, n)
        ids = r.integers(10, 60, (n, 12)).astype(np.int32)
        ids[:, 0] = 2
        ids[np.arange(n), 1 + r.integers(0, 8, n)] = 4 + y  # one token gives the class away
        ids[:, 9:] = 0  # padding
        return Split(ids, y.astype(np.int64), ["a", "b", "c"], np.zeros(1), np.ones(1), 1.0)

    train, val = split(300, 1), split(90, 2)
    assert train.layout == "text"
    model = build_from_config({"family": "boe", "input_shape": [12], "num_classes": 3,
                               "vocab_size": 64, "dim": 16, "hidden": 16})  # fmt: skip
    setup = Setup(train, val, epochs=6, lr=0.05, batch_size=32, weight_decay=0.0, seed=0)
    history = fit(model, setup)
    assert history.best.val_accuracy >= 0.9
    logits = predict_logits(model, val.x)
    assert (logits.argmax(1) == val.y).mean() == pytest.approx(history.best.val_accuracy)
