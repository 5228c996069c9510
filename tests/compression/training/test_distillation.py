"""The distill modes: each one's loss on a known case, worked out by hand.

Known case: 3 classes, T=1, alpha=0.5; a network whose logits are constant, c = (ln 3, 0, 0),
so softmax(c) = (3/5, 1/5, 1/5); a student whose last layer is zero, so its logits are 0 and
its softmax uniform. Trained with lr 1e-12, the networks do not move within an epoch, so
the first epoch's mean train loss is the loss at those logits.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from slimline.compression.models.families import build_model
from slimline.compression.training import distillation
from slimline.compression.training.augment import Augment
from slimline.compression.training.distillation import MutualPair, mutual_loss
from slimline.compression.training.fit import EpochRecord, History, seed_everything
from slimline.compression.training.setup import Setup
from slimline.core.params.models import Distill, ModelSpec
from tests.support.data import make_split

pytestmark = pytest.mark.usefixtures("restore_torch_state")
SHAPE, K = (1, 8, 8), 3
C = (math.log(3), 0.0, 0.0)
P_C = (3 / 5, 1 / 5, 1 / 5)  # softmax(C)
UNIFORM = (1 / 3, 1 / 3, 1 / 3)
KD = Distill(temperature=1.0, alpha=0.5, generations=2)
STILL = ModelSpec(arch="mlp", width=8, depth=1, epochs=1, lr=1e-12, batch_size=32)


def kl(p, q) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))


def constant_net(logits=C) -> nn.Module:
    """A trainable mlp whose logits are `logits` whatever the input: zero weights, bias set."""
    model = build_model(STILL, SHAPE, K)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor(logits))
    return model


def schedule(augment: Augment | None = None) -> Setup:
    # 64 samples, batch 32: two full batches, so the epoch mean covers every sample
    setup = Setup.of(STILL, make_split(64, seed=1), make_split(30, seed=2), seed=0)
    return dataclasses.replace(setup, augment=augment)


def first_loss(history: History) -> float:
    return history.records[0].train_loss


@pytest.mark.parametrize(
    ("augment", "logits"), [(None, "cached"), (Augment(pad=1, flip=False), "per_batch")]
)
def test_offline_loss_on_a_known_case(augment, logits):
    # the frozen teacher says C; the student says 0: alpha * KL(P_C || U) + (1 - alpha) * ln 3,
    # whether the teacher's logits are cached or computed on each augmented batch
    sched = schedule(augment)
    result = distillation.offline(constant_net(), lambda: constant_net((0, 0, 0)), sched, KD)
    assert first_loss(result.history) == pytest.approx(
        0.5 * kl(P_C, UNIFORM) + 0.5 * math.log(3), abs=1e-6
    )
    assert result.teacher_logits == logits


def test_online_loss_on_a_known_case():
    # student 0, peer C, learning from each other: the student's kd_loss toward P_C plus the
    # peer's toward uniform, whose cross-entropy is -ln 3/5 for label 0 and -ln 1/5 otherwise
    sched = schedule()
    result = distillation.online(lambda: constant_net((0, 0, 0)), constant_net, sched, KD)
    zeros = float((sched.train.y == 0).mean())
    peer_ce = zeros * -math.log(3 / 5) + (1 - zeros) * -math.log(1 / 5)
    student = 0.5 * kl(P_C, UNIFORM) + 0.5 * math.log(3)
    peer = 0.5 * kl(UNIFORM, P_C) + 0.5 * peer_ce
    assert first_loss(result.history) == pytest.approx(student + peer, abs=1e-6)
    assert result.teacher_logits == "per_batch"
    assert torch.allclose(result.teacher.fc.bias, torch.tensor(C))  # the peer, trained along


def test_self_loss_on_a_known_case():
    # generation 0 says C; generation 1 (0 at first) learns from it; generation 2 learns
    # from generation 1, which still says 0: its KD term is KL(U || U) = 0
    sched = schedule()
    history0 = History([EpochRecord(1, 0.0, 0.0, 0.0, 0.0)], 1)
    gen0 = constant_net()
    result = distillation.born_again(gen0, history0, lambda: constant_net((0, 0, 0)), sched, KD)
    losses = [first_loss(h) for _, h in result.generations[1:]]
    assert losses == pytest.approx(
        [0.5 * kl(P_C, UNIFORM) + 0.5 * math.log(3), 0.5 * math.log(3)], abs=1e-6
    )
    assert len(result.generations) == 3 and result.generations[0][0] is gen0
    assert result.teacher is result.generations[1][0]
    assert result.student is result.generations[2][0]


def test_mutual_loss_on_a_known_case_and_each_network_learns_only_its_own_term():
    temperature, alpha = 2.0, 0.25
    s = torch.zeros(1, 2, requires_grad=True)
    p = torch.tensor([[math.log(3), 0.0]], requires_grad=True)
    y = torch.tensor([0])
    loss = mutual_loss(temperature, alpha)(torch.cat([s, p], 1), y, torch.arange(1), s)
    u, q = (0.5, 0.5), (math.sqrt(3) / (1 + math.sqrt(3)), 1 / (1 + math.sqrt(3)))  # p / T
    t2 = temperature**2
    student = alpha * t2 * kl(q, u) + (1 - alpha) * math.log(2)
    peer = alpha * t2 * kl(u, q) + (1 - alpha) * -math.log(3 / 4)
    assert loss.item() == pytest.approx(student + peer, rel=1e-6)
    loss.backward()
    # d kd_loss / d logits = alpha * T * (softmax(z / T) - target) + (1 - alpha) * (softmax(z)
    # - onehot): each network's gradient has its own term only (the other is a constant)
    grad_s = [alpha * temperature * (a - b) + (1 - alpha) * (a - h)
              for a, b, h in zip(u, q, (1, 0), strict=True)]  # fmt: skip
    p_soft = (3 / 4, 1 / 4)
    grad_p = [alpha * temperature * (a - b) + (1 - alpha) * (c - h)
              for a, b, c, h in zip(q, u, p_soft, (1, 0), strict=True)]  # fmt: skip
    assert s.grad[0].tolist() == pytest.approx(grad_s, rel=1e-6)
    assert p.grad[0].tolist() == pytest.approx(grad_p, rel=1e-6)


def test_mutual_pair_shows_the_student_alone_in_eval_mode():
    seed_everything(0, 1)
    student, peer = build_model(STILL, SHAPE, K), build_model(STILL, SHAPE, K)
    pair, x = MutualPair(student, peer), torch.randn(4, *SHAPE)
    assert pair.train()(x).shape == (4, 2 * K)
    assert torch.equal(pair.eval()(x), student(x))


def test_online_trains_both_networks_from_scratch():
    seed_everything(0, 1)
    spec = ModelSpec(arch="mlp", width=16, depth=1, epochs=4, lr=0.01, batch_size=32)
    sched = Setup.of(spec, make_split(240, seed=1), make_split(120, seed=2), seed=0)
    peer = constant_net((0, 0, 0))  # starts at zero weights in its last layer
    result = distillation.online(
        lambda: build_model(spec, SHAPE, K), lambda: peer, sched, Distill()
    )
    assert result.history.best.val_accuracy >= 0.9  # the student's
    assert result.teacher is peer and bool(peer.fc.weight.abs().sum() > 0)


def test_the_labels_only_student_ships_when_it_is_better_on_val():
    assert distillation.choose_student(distilled_val=0.9826, labels_val=0.9861) == (
        "labels",
        "val 0.9861 (labels) > 0.9826 (distilled)",
    )


def test_the_distilled_student_ships_when_it_is_better_on_val():
    assert distillation.choose_student(distilled_val=0.9861, labels_val=0.9826) == (
        "distilled",
        "val 0.9861 (distilled) > 0.9826 (labels)",
    )


def test_a_tie_on_val_keeps_the_distilled_student():
    assert distillation.choose_student(distilled_val=0.75, labels_val=0.75) == (
        "distilled",
        "val 0.7500 (distilled) = 0.7500 (labels): a tie keeps the distilled student",
    )


def test_the_reason_tells_apart_scores_that_round_alike():
    # 1 sample of 30,000 apart: 4 decimals would print both as 0.9000
    shipped, why = distillation.choose_student(distilled_val=0.9, labels_val=0.9 + 1 / 30_000)
    assert shipped == "labels" and why == "val 0.90003 (labels) > 0.90000 (distilled)"
