"""Structured channel pruning through torch-pruning, each step followed by a KD fine-tune.

Recipe per step: 1. importance (L2 magnitude, or Taylor from fresh gradients), 2. one
`pruner.step()` removing an equal share of every prunable layer's channels (residual-coupled
channels go together), 3. fine-tune with the KD loss the caller gives (the teacher's cached
train logits, or its logits of each augmented batch) through the same `fit` as every other
training, as the caller's `Setup` says (the stage's: `setup.finetune_setup`, prune's epochs and
lr on the student's batches), step k shuffled by the setup's seed + k. The classifier `fc` is
never pruned, so the class count stays; its inputs shrink with the last layer. The pruned
model keeps its class (MLP, CNN, ResNet) with narrower modules, so `model_config` reads the
new widths back for the checkpoint.

`prune.ratio == 0` means "no pruning": the model is returned unchanged (a copy) without any
fine-tuning, so a pipeline run with pruning off carries the student through bit for bit; the
report then has no steps and ratios of 1.0.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from slimline.compression.data.dataset import Split
from slimline.compression.models.families import count_macs, count_params, example_batch
from slimline.compression.models.text_families import SelfAttention
from slimline.compression.training.fit import Callback, LossFn, fit, loss_and_accuracy
from slimline.compression.training.loader import Batches
from slimline.compression.training.setup import Setup
from slimline.core.params.models import Prune

TAYLOR_BATCHES = 4  # batches of gradient that Taylor importance averages before each step


def _make_pruner(model: nn.Module, input_shape: tuple[int, ...], prune: Prune):
    import torch_pruning as tp

    if prune.importance == "taylor":
        importance = tp.importance.TaylorImportance()
    else:
        importance = tp.importance.MagnitudeImportance(p=2)
    # tracing runs a forward: in eval mode it leaves BatchNorm statistics alone
    model.eval()
    # attention loses whole heads (each head's q, k, v rows together), never a head's
    # dimensions: `SelfAttention.heads` is then set from what is left (`_recount_heads`)
    heads = {
        proj: a.heads for a in _attentions(model) for proj in (a.q, a.k, a.v)
    }  # fmt: skip
    return tp.pruner.BasePruner(
        model,
        example_batch(model, input_shape),
        importance=importance,
        pruning_ratio=prune.ratio,
        iterative_steps=prune.steps,
        round_to=prune.round_to,
        ignored_layers=[model.fc],
        num_heads=heads,
        prune_num_heads=bool(heads),
        prune_head_dims=False,
        head_pruning_ratio=prune.ratio if heads else 0.0,
    )


def _attentions(model: nn.Module) -> list[SelfAttention]:
    return [m for m in model.modules() if isinstance(m, SelfAttention)]


def _recount_heads(model: nn.Module) -> None:
    """torch-pruning removes heads' projections but cannot know the module's head count; an
    attention left with the old count would split its rows wrong and silently score lower."""
    for a in _attentions(model):
        a.heads = a.q.out_features // a.head_dim


def _accumulate_gradients(
    model: nn.Module, train: Split, loss_fn: LossFn, batch_size: int, seed: int
) -> None:
    """Taylor importance is |weight * grad|: it needs gradients of the training loss (on the
    CPU and un-augmented: a few batches only rank the channels)."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train.y), generator=gen)
    model.eval()  # gradients without moving BatchNorm statistics
    model.zero_grad(set_to_none=True)
    for idx in order.split(batch_size)[:TAYLOR_BATCHES]:
        x, y = Batches().make(train, idx, gen)
        loss_fn(model(x), y, idx, x).backward()


def _size(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    return {"params": count_params(model), "macs": count_macs(model, input_shape)}


def prune_and_finetune(
    model: nn.Module,
    setup: Setup,
    loss_fn: LossFn,
    prune: Prune,
    callbacks: Sequence[Callback] = (),
) -> tuple[nn.Module, dict]:
    """Prune a copy of `model` in `prune.steps` steps, fine-tuning each as `setup` says with
    `loss_fn` (KD from the teacher, cached or online); returns it and the metrics report."""
    model = copy.deepcopy(model)  # the caller's model stays the unpruned reference
    val, shape = setup.val, setup.train.input_shape
    before = _size(model, shape)
    acc_before = loss_and_accuracy(model, val)[1]
    steps = []
    if prune.ratio > 0:
        steps = _run_steps(model, setup, loss_fn, prune, callbacks)
    after = _size(model, shape)
    report = {
        "ratio": prune.ratio,
        "importance": prune.importance,
        "params_before": before["params"],
        "params_after": after["params"],
        "macs_before": before["macs"],
        "macs_after": after["macs"],
        "params_ratio": after["params"] / before["params"],
        "macs_ratio": after["macs"] / before["macs"],
        "val_accuracy_before": acc_before,
        "val_accuracy": loss_and_accuracy(model, val)[1],
        "steps": steps,
    }
    return model.eval(), report


def _run_steps(
    model: nn.Module,
    setup: Setup,
    loss_fn: LossFn,
    prune: Prune,
    callbacks: Sequence[Callback],
) -> list[dict]:
    train, val = setup.train, setup.val
    pruner = _make_pruner(model, train.input_shape, prune)
    steps = []
    for step in range(1, prune.steps + 1):
        # a different shuffle per step, still fixed by the seed
        step_setup = dataclasses.replace(setup, seed=setup.seed + step)
        if prune.importance == "taylor":
            _accumulate_gradients(model, train, loss_fn, setup.batch_size, step_setup.seed)
        pruner.step()
        _recount_heads(model)
        model.zero_grad(set_to_none=True)  # stale (pre-pruning) gradient shapes must not linger
        pruned_acc = loss_and_accuracy(model, val)[1]
        fit(
            model,
            step_setup,
            loss_fn=loss_fn,
            callbacks=callbacks,
            desc=f"prune {step}/{prune.steps}",
        )
        steps.append(
            {"step": step}
            | _size(model, train.input_shape)
            | {
                "accuracy_before_finetune": pruned_acc,
                "accuracy_after_finetune": loss_and_accuracy(model, val)[1],
            }
        )
    return steps
