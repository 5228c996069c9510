"""Pruning a transformer: whole heads go (their q, k, v rows together), the module's head
count follows, FFN and width shrink, and the pruned model still reads its own config back."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from slimline.compression.models.checkpoints import load_checkpoint, save_checkpoint
from slimline.compression.models.families import count_params, model_config
from slimline.compression.training.fit import cross_entropy, loss_and_accuracy, predict_logits
from slimline.compression.training.pruning import prune_and_finetune
from slimline.compression.training.setup import Setup
from slimline.core.params.models import Prune
from tests.support.text import text_splits, trained_transformer

pytestmark = pytest.mark.usefixtures("restore_torch_state")


@pytest.fixture(scope="module")
def pruned():
    train, val, _, _ = text_splits()
    model = trained_transformer()
    setup = Setup(train, val, epochs=2, lr=0.003, batch_size=32, weight_decay=1e-4, seed=0)
    prune = Prune(ratio=0.5, steps=1, round_to=1, finetune_epochs=2)
    return model, *prune_and_finetune(copy.deepcopy(model), setup, cross_entropy, prune)


def test_heads_ffn_and_width_shrink_and_the_head_count_follows(pruned):
    before, after, report = pruned
    config = model_config(after)
    layer = config["layers"][0]
    assert (layer["heads"], layer["head_dim"]) == (2, 8)  # 4 heads of 8 -> 2 heads of 8
    attention = after.blocks[0].attention
    assert attention.q.out_features == attention.heads * attention.head_dim == 16
    assert layer["ffn"] < 64 and config["dim"] < 32
    assert report["params_after"] == count_params(after) < 0.6 * count_params(before)


def test_the_pruned_transformer_still_classifies_and_reloads(pruned, tmp_path):
    before, after, report = pruned
    _, val, test, _ = text_splits()
    assert loss_and_accuracy(before, val)[1] >= 0.9  # the task is learnable
    assert report["val_accuracy"] >= 0.8
    save_checkpoint(tmp_path / "pruned.pt", after)
    again = load_checkpoint(tmp_path / "pruned.pt")
    np.testing.assert_array_equal(predict_logits(again, test.x), predict_logits(after, test.x))
