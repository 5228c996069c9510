"""Structured pruning: sizes fall by about the ratio, shapes and accuracy hold, checkpoints load."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from slimline.compression.models.checkpoints import load_checkpoint, save_checkpoint
from slimline.compression.models.families import build_model, count_params, model_config
from slimline.compression.training.fit import (
    CsvCurve,
    fit,
    make_kd_loss,
    predict_logits,
    seed_everything,
)
from slimline.compression.training.pruning import prune_and_finetune
from slimline.compression.training.setup import Setup
from slimline.core.params.models import Distill, ModelSpec, Prune
from tests.support.data import make_signal_split, make_split

SHAPE = (1, 8, 8)
pytestmark = pytest.mark.usefixtures("restore_torch_state")
KD = Distill(temperature=4.0, alpha=0.7)


TRAIN, VAL = make_split(240, seed=1), make_split(120, seed=2)


def trained(arch: str, width: int = 16, shape=SHAPE) -> tuple[torch.nn.Module, np.ndarray]:
    """A small trained model and its own train logits, standing in for the teacher's."""
    train = TRAIN if shape == SHAPE else make_split(240, shape, seed=1)
    val = VAL if shape == SHAPE else make_split(120, shape, seed=2)
    seed_everything(0, 1)
    spec = ModelSpec(arch=arch, width=width, depth=2, epochs=4, lr=0.01, batch_size=32)
    model = build_model(spec, shape, 3)
    fit(model, Setup.of(spec, train, val, seed=0))
    return model, predict_logits(model, train.x)


@pytest.fixture(scope="module")
def cnn():
    return trained("cnn")


@pytest.fixture(scope="module")
def resnet():
    return trained("resnet", width=8)


def run(model, logits, ratio=0.5, steps=2, importance="magnitude", callbacks=(), **data):
    prune = Prune(ratio=ratio, steps=steps, importance=importance, round_to=2)
    # each step's fine-tune: 2 epochs at lr 0.005
    setup = Setup(data.get("train", TRAIN), data.get("val", VAL), epochs=2, lr=0.005,
                  batch_size=32, weight_decay=1e-4, seed=0)  # fmt: skip
    kd = make_kd_loss(logits, KD.temperature, KD.alpha)
    return prune_and_finetune(model, setup, kd, prune, callbacks)


@pytest.mark.parametrize("family", ["cnn", "resnet"])
def test_params_fall_about_quadratically_and_accuracy_holds(family, request):
    model, logits = request.getfixturevalue(family)
    pruned, report = run(model, logits)
    assert 0.15 <= report["params_ratio"] <= 0.35  # channel ratio 0.5 -> about 0.5^2 of params
    assert report["macs_ratio"] < 0.45
    assert report["params_after"] == count_params(pruned) < report["params_before"]
    assert report["params_before"] == count_params(model)  # the input model is left alone
    assert [s["step"] for s in report["steps"]] == [1, 2]
    assert report["steps"][0]["params"] > report["steps"][1]["params"] == report["params_after"]
    assert report["val_accuracy"] >= 0.9
    assert report["val_accuracy"] >= report["val_accuracy_before"] - 0.08
    assert pruned(torch.randn(5, *SHAPE)).shape == (5, 3)
    assert pruned.fc.out_features == 3 and not pruned.training


def test_pruned_model_reads_back_its_new_widths(resnet):
    model, logits = resnet
    pruned, _ = run(model, logits)
    before, after = model_config(model), model_config(pruned)
    assert after["stem"] < before["stem"]
    pairs = zip(
        [b for stage in before["stages"] for b in stage],
        [b for stage in after["stages"] for b in stage],
        strict=True,
    )
    assert all(0 < a["mid"] < b["mid"] and 0 < a["out"] < b["out"] for b, a in pairs)
    # residual-coupled channels stay equal within each stage
    assert all(len({b["out"] for b in stage}) == 1 for stage in after["stages"])
    assert after["stages"][0][0]["out"] == after["stem"]


@pytest.mark.parametrize("family", ["cnn", "resnet"])
def test_pruned_checkpoint_reloads_to_identical_logits(tmp_path, family, request):
    model, logits = request.getfixturevalue(family)
    pruned, _ = run(model, logits, steps=1)
    save_checkpoint(tmp_path / "pruned.pt", pruned)
    loaded = load_checkpoint(tmp_path / "pruned.pt")  # weights_only=True inside
    x = torch.from_numpy(VAL.x)
    assert torch.equal(loaded(x), pruned(x))
    assert model_config(loaded) == model_config(pruned)


SIGNAL = (2, 64)
SIGNAL_TRAIN, SIGNAL_VAL = make_signal_split(240, seed=1), make_signal_split(120, seed=2)


@pytest.fixture(scope="module")
def signal_models():
    """1-D cnn and resnet trained on (N, 2, 64) sine waves, with their own train logits."""
    out = {}
    for arch, width in (("cnn", 16), ("resnet", 8)):
        seed_everything(0, 1)
        spec = ModelSpec(arch=arch, width=width, depth=2, epochs=4, lr=0.01, batch_size=32)
        model = build_model(spec, SIGNAL, 3)
        fit(model, Setup.of(spec, SIGNAL_TRAIN, SIGNAL_VAL, seed=0))
        out[arch] = model, predict_logits(model, SIGNAL_TRAIN.x)
    return out


@pytest.mark.parametrize("family", ["cnn", "resnet"])
def test_1d_signal_models_prune_and_keep_accuracy(tmp_path, family, signal_models):
    model, logits = signal_models[family]
    pruned, report = run(model, logits, train=SIGNAL_TRAIN, val=SIGNAL_VAL)
    assert 0.15 <= report["params_ratio"] <= 0.4  # channel ratio 0.5 on every 1-D conv
    assert report["params_after"] == count_params(pruned) < report["params_before"]
    assert report["val_accuracy_before"] >= 0.8  # chance is 1/3
    assert report["val_accuracy"] >= report["val_accuracy_before"] - 0.08
    x = torch.from_numpy(SIGNAL_VAL.x)
    assert pruned(x).shape == (len(x), 3) and pruned.fc.out_features == 3  # classifier kept
    assert all(not isinstance(m, torch.nn.Conv2d) for m in pruned.modules())
    save_checkpoint(tmp_path / "pruned.pt", pruned)  # model_config reads the 1-D widths back
    loaded = load_checkpoint(tmp_path / "pruned.pt")
    assert torch.equal(loaded(x), pruned(x)) and model_config(loaded) == model_config(pruned)


def test_1d_resnet_prunes_residual_coupled_channels_together(signal_models):
    model, logits = signal_models["resnet"]
    pruned, _ = run(model, logits, steps=1, train=SIGNAL_TRAIN, val=SIGNAL_VAL)
    before, after = model_config(model), model_config(pruned)
    assert after["stem"] < before["stem"]
    assert all(len({b["out"] for b in stage}) == 1 for stage in after["stages"])
    assert after["stages"][0][0]["out"] == after["stem"]  # stem and identity blocks coupled
    assert [b["mid"] for stage in after["stages"] for b in stage] == [
        b["mid"] // 2 for stage in before["stages"] for b in stage
    ]


def test_mlp_on_tabular_data_prunes_too():
    shape = (12,)
    model, logits = trained("mlp", width=32, shape=shape)
    train, val = make_split(240, shape, seed=1), make_split(120, shape, seed=2)
    pruned, report = run(model, logits, steps=1, train=train, val=val)
    assert model_config(pruned)["hidden"] == [16, 16]
    assert report["params_ratio"] < 0.6  # the input layer shrinks linearly, the rest quadratically
    assert report["val_accuracy"] >= 0.85


def test_taylor_importance(cnn):
    model, logits = cnn
    pruned, report = run(model, logits, importance="taylor")
    assert report["importance"] == "taylor"
    assert 0.15 <= report["params_ratio"] <= 0.35
    assert report["val_accuracy"] >= 0.85


def test_ratio_zero_returns_the_model_unchanged(cnn):
    model, logits = cnn
    pruned, report = run(model, logits, ratio=0.0)
    assert pruned is not model
    x = torch.from_numpy(VAL.x)
    assert torch.equal(pruned(x), model.eval()(x))
    assert report["steps"] == [] and report["params_ratio"] == report["macs_ratio"] == 1.0
    assert report["val_accuracy"] == report["val_accuracy_before"]


def test_curve_counts_epochs_across_steps(tmp_path, cnn):
    model, logits = cnn
    curve = CsvCurve(tmp_path / "pruned_curve.csv")
    run(model, logits, steps=2, callbacks=[curve])
    with (tmp_path / "pruned_curve.csv").open() as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]


def test_pruning_is_deterministic(cnn):
    model, logits = cnn
    seed_everything(0, 1)
    a, ra = run(model, logits, steps=1)
    seed_everything(0, 1)
    b, rb = run(model, logits, steps=1)
    assert ra == rb
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
