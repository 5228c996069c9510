"""The distill stage's two students and which of them ships.

The same student (seed, initialization, `Setup`: epochs, batches, augmented views) trains from
labels alone (`labels_only`) and in `distill.mode` (`by_mode`: offline from the frozen teacher,
online with a peer, self after the labels-only student as generation 0; `distillation` says
how), so every run records whether distillation helped (kd_gain, on test). Whichever scores
higher on val ships (`ship`, through `distillation.choose_student`; a tie keeps the distilled
one); the curve is the distilled student's either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from slimline.compression.data.dataset import Split
from slimline.compression.models.families import build_model
from slimline.compression.models.sizing import check_sizes
from slimline.compression.models.teacher import OnnxTeacher, load_teacher
from slimline.compression.scores import accuracy, agreement
from slimline.compression.training.device import Accelerator
from slimline.compression.training.distillation import (
    Distilled,
    NewModel,
    Shipped,
    born_again,
    choose_student,
    offline,
    on_cpu,
    online,
)
from slimline.compression.training.fit import (
    Callback,
    History,
    as_read_by,
    fit,
    predict_logits,
    seed_everything,
)
from slimline.compression.training.setup import Setup
from slimline.core.params.models import Distill
from slimline.core.params.schema import Params


@dataclass(frozen=True)
class Networks:
    """Fresh networks of one distill run. `student()` seeds before it builds, so every student
    (the labels-only one, the distilled one, each self generation) starts from the same
    weights; `peer()` is online mode's network of the teacher's architecture."""

    student: NewModel
    peer: NewModel


def networks(params: Params, train: Split) -> Networks:
    shape, classes, vocab = train.input_shape, train.num_classes, train.vocab

    def new_student() -> nn.Module:
        seed_everything(params.seed, params.threads, params.reproducible)
        return build_model(params.student, shape, classes, "student", vocab)

    peer = partial(build_model, params.teacher, shape, classes, "teacher", vocab)
    return Networks(new_student, peer)


def offline_teacher(params: Params, path: Path, train: Split) -> nn.Module | None:
    """The frozen teacher at `path` for offline mode (None for online and self, which never
    read it), after the size check: `SizeError` (exit 2) before anything trains when the
    student is not smaller than the teacher (an imported teacher's size is known once loaded)."""
    shape, classes = train.input_shape, train.num_classes
    check_sizes(params, shape, classes, vocab=train.vocab, teacher_vocab=train.teacher_vocab)
    if params.distill.mode != "offline":
        return None
    teacher = load_teacher(path)
    if isinstance(teacher, OnnxTeacher):
        check_sizes(params, shape, classes, teacher.param_count, train.vocab)
    return teacher


@dataclass
class Trained:
    model: nn.Module
    history: History
    logits: np.ndarray  # (N, K) on the test split, scored on the CPU right after its fit


def labels_only(nets: Networks, setup: Setup, test: Split) -> Trained:
    """The baseline: the student trained from labels alone."""
    baseline = nets.student()
    history = fit(baseline, setup, desc="student (labels)")
    # now, on the CPU: self mode then teaches with it on the setup's device
    return Trained(baseline, history, predict_logits(baseline, test.x))


def by_mode(
    distill: Distill, teacher: nn.Module | None, nets: Networks, baseline: Trained, setup: Setup,
    callbacks: Sequence[Callback] = (),
) -> Distilled:  # fmt: skip
    """The student of `distill.mode`; `callbacks` see the distilled student's fit only."""
    if distill.mode == "offline":
        assert teacher is not None, "offline mode learns from a teacher (offline_teacher)"
        return offline(teacher, nets.student, setup, distill, callbacks)
    if distill.mode == "online":
        return online(nets.student, nets.peer, setup, distill, callbacks)
    return born_again(baseline.model, baseline.history, nets.student, setup, distill, callbacks)


@dataclass
class Shipment:
    shipped: Shipped
    why: str
    student: Trained  # the model on the CPU, for export
    figures: dict[str, Any]  # the choice and both students' scores, for the metrics


def ship(result: Distilled, baseline: Trained, test: Split) -> Shipment:
    """The student with the higher best val accuracy (`choose_student`), and the figures: the
    shipped one's val accuracy and best epoch, both students' test and val accuracies, and
    kd_gain on test (a report, not the choice)."""
    distilled = Trained(result.student, result.history, predict_logits(result.student, test.x))
    distilled_accuracy = accuracy(distilled.logits, test.y)
    base_accuracy = accuracy(baseline.logits, test.y)
    shipped, why = choose_student(
        distilled.history.best.val_accuracy, baseline.history.best.val_accuracy
    )
    student = baseline if shipped == "labels" else distilled
    on_cpu(student.model)
    figures = {
        # accuracy, loss, val_accuracy, best_epoch: the shipped student's
        "val_accuracy": student.history.best.val_accuracy,
        "best_epoch": student.history.best_epoch,
        "shipped": shipped,
        "shipped_reason": why,
        "distilled_accuracy": distilled_accuracy,
        "distilled_val_accuracy": distilled.history.best.val_accuracy,
        "baseline_accuracy": base_accuracy,
        "baseline_val_accuracy": baseline.history.best.val_accuracy,
        "kd_gain": distilled_accuracy - base_accuracy,
    }
    return Shipment(shipped, why, student, figures)


def taught_figures(
    result: Distilled, shipment: Shipment, test: Split, acc: Accelerator
) -> dict[str, Any]:
    """Of what taught the distilled student (the teacher, the online peer, generation n-1):
    its test accuracy and the shipped student's agreement with it; and the mode's own figures.
    Call it after the student is exported: scoring moves the networks onto `acc`."""
    teacher = result.teacher
    taught = predict_logits(acc.prepare(teacher), as_read_by(teacher, test).x, acc=acc)
    return {
        "teacher_accuracy": accuracy(taught, test.y),
        "teacher_agreement": agreement(shipment.student.logits, taught),
        "teacher_logits": result.teacher_logits,
    } | result.figures(test, acc)
