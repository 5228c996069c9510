"""Model families, the factory, configs and checkpoints that refuse anything but weights."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from slimline.compression.models.checkpoints import (
    FORMAT,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from slimline.compression.models.families import (
    build_from_config,
    build_model,
    count_macs,
    count_params,
    model_config,
)
from slimline.core.errors import InputError
from slimline.core.params.loading import load_params
from slimline.core.params.models import ModelSpec
from tests.support.data import make_signal_split
from tests.support.hostile import Payload
from tests.support.paths import ROOT

IMAGE, WIDE_IMAGE, TABULAR, SIGNAL = (1, 8, 8), (3, 12, 10), (20,), (2, 64)
CASES = [
    ("mlp", TABULAR),
    ("mlp", IMAGE),
    ("cnn", IMAGE),
    ("cnn", WIDE_IMAGE),
    ("resnet", IMAGE),
    ("resnet", WIDE_IMAGE),
    ("mlp", SIGNAL),
    ("cnn", SIGNAL),
    ("resnet", SIGNAL),
]


@pytest.fixture(autouse=True)
def _torch_state():
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def spec(arch: str, width: int = 4, depth: int = 2) -> ModelSpec:
    return ModelSpec(arch=arch, width=width, depth=depth, epochs=1, lr=0.01, batch_size=8)


def warmed(arch: str, shape: tuple[int, ...]) -> nn.Module:
    """A model whose BatchNorm statistics are no longer the defaults, so a roundtrip that
    dropped buffers would show in the logits."""
    model = build_model(spec(arch), shape, 5)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *shape) * 3 + 1)
    return model.eval()


def test_default_teacher_and_student_sizes():
    params = load_params(ROOT / "params.yaml")
    teacher = build_model(params.teacher, IMAGE, 10, "teacher")
    student = build_model(params.student, IMAGE, 10, "student")
    assert count_params(teacher) >= 1_000_000
    assert count_params(student) <= count_params(teacher) / 10
    assert count_macs(student, IMAGE) < count_macs(teacher, IMAGE) / 10


@pytest.mark.parametrize(("arch", "shape"), CASES)
def test_forward_shape(arch, shape):
    model = build_model(spec(arch, depth=3), shape, 7).eval()
    assert model(torch.randn(4, *shape)).shape == (4, 7)
    assert isinstance(model.fc, nn.Linear) and model.fc.out_features == 7


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_conv_family_on_tabular_input_is_a_clear_error(arch):
    with pytest.raises(InputError, match=rf"teacher\.arch: mlp for tabular .*got '{arch}'"):
        build_model(spec(arch), TABULAR, 3, "teacher")


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_signal_input_builds_1d_conv_families(arch):
    model = build_model(spec(arch, depth=3), SIGNAL, 4)
    kinds = {type(m) for m in model.modules()}
    assert {nn.Conv1d, nn.BatchNorm1d} <= kinds
    assert not kinds & {nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d}  # no 2-D layer anywhere
    assert model_config(model)["input_shape"] == [2, 64]
    assert count_macs(model, SIGNAL) > 0
    # global average pooling over L: any length works, the class count stays
    assert model.eval()(torch.randn(3, 2, 40)).shape == (3, 4)


def test_cnn_on_signals_pools_while_the_length_allows():
    config = model_config(build_model(spec("cnn", depth=4), (1, 6), 3))
    assert config["pool"] == [True, False, False, False]  # 6 -> 3, then no further
    model = build_model(spec("cnn", depth=3), SIGNAL, 3)
    assert sum(isinstance(m, nn.MaxPool1d) for m in model.modules()) == 2


@pytest.mark.parametrize(("arch", "width"), [("cnn", 8), ("resnet", 4)])
def test_signal_models_train_well_above_chance(arch, width, restore_torch_state):
    from slimline.compression.training.fit import fit, loss_and_accuracy, seed_everything
    from slimline.compression.training.setup import Setup

    train, val = make_signal_split(240, seed=1), make_signal_split(120, seed=2)
    seed_everything(0, 1)
    model = build_model(spec(arch, width=width), SIGNAL, 3)
    fit(model, Setup(train, val, epochs=4, lr=0.01, batch_size=32, weight_decay=1e-4, seed=0))
    assert loss_and_accuracy(model, val)[1] >= 0.8  # chance is 1/3


def test_resnet_layout():
    model = build_model(spec("resnet", width=8, depth=2), IMAGE, 10)
    config = model_config(model)
    assert config["stem"] == 8
    assert [[b["out"] for b in stage] for stage in config["stages"]] == [[8, 8], [16, 16], [32, 32]]
    assert [stage[0]["stride"] for stage in config["stages"]] == [1, 2, 2]
    assert [stage[0]["shortcut"] for stage in config["stages"]] == [False, True, True]


def test_cnn_pools_only_while_the_image_allows():
    config = model_config(build_model(spec("cnn", depth=4), IMAGE, 10))
    assert config["channels"] == [4, 8, 16, 32]
    assert config["pool"] == [True, True, False, False]  # 8 -> 4 -> 2, then no further


@pytest.mark.parametrize(("arch", "shape"), CASES)
def test_config_is_json_and_rebuilds_the_same_modules(arch, shape):
    model = build_model(spec(arch), shape, 5)
    config = json.loads(json.dumps(model_config(model)))
    rebuilt = build_from_config(config)
    assert model_config(rebuilt) == config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def test_unknown_family_in_config():
    with pytest.raises(ValueError, match="family: one of mlp, cnn, resnet"):
        build_from_config({"family": "vit", "input_shape": [1, 8, 8], "num_classes": 2})


def test_count_macs_leaves_batchnorm_statistics_alone():
    model = build_model(spec("cnn"), IMAGE, 3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert count_macs(model, IMAGE) > 0
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert count_params(model) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("arch", "shape"), CASES)
def test_checkpoint_roundtrip_gives_identical_logits(tmp_path, arch, shape):
    model = warmed(arch, shape)
    save_checkpoint(tmp_path / "m.pt", model)
    loaded = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(6, *shape)
    assert not loaded.training
    assert torch.equal(loaded(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind


def test_checkpoint_is_plain_data(tmp_path):
    save_checkpoint(tmp_path / "m.pt", warmed("cnn", IMAGE))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload["format"] == FORMAT
    assert json.loads(payload["config"])["family"] == "cnn"
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())


def test_same_weights_give_the_same_checkpoint_bytes_whatever_the_file_name(tmp_path):
    model = warmed("cnn", IMAGE)
    save_checkpoint(tmp_path / "a.pt", model)
    save_checkpoint(tmp_path / "b" / "other.pt", model)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b" / "other.pt").read_bytes()


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_corrupt_checkpoint(tmp_path, damage):
    save_checkpoint(tmp_path / "m.pt", warmed("cnn", IMAGE))
    data = (tmp_path / "m.pt").read_bytes()
    damaged = {"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"\x00junk" * 99}
    (tmp_path / "m.pt").write_bytes(damaged[damage])
    with pytest.raises(CheckpointError, match=r"m\.pt: unreadable checkpoint"):
        load_checkpoint(tmp_path / "m.pt")


def test_pickled_module_is_refused(tmp_path):
    torch.save(warmed("cnn", IMAGE), tmp_path / "module.pt")  # the unsafe way to save a model
    with pytest.raises(CheckpointError, match=r"module\.pt: unsafe checkpoint refused"):
        load_checkpoint(tmp_path / "module.pt")


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path, writer):
    # the payload is live: plain unpickling would run it
    pickle.loads(pickle.dumps(Payload(tmp_path / "proof"))).close()
    assert (tmp_path / "proof").exists()
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    payload = {"format": FORMAT, "config": "{}", "state_dict": Payload(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match=r"evil\.pt: unsafe checkpoint refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_wrong_format_key(tmp_path):
    torch.save({"format": "other/2", "state_dict": {}}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"m\.pt: wrong checkpoint format 'other/2'"):
        load_checkpoint(tmp_path / "m.pt")
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="wrong checkpoint format 'Tensor'"):
        load_checkpoint(tmp_path / "t.pt")


def test_state_dict_that_does_not_match_the_config(tmp_path):
    model = warmed("cnn", IMAGE)
    other = build_model(spec("cnn", width=6), IMAGE, 5)
    payload = {
        "format": FORMAT,
        "config": json.dumps(model_config(model)),
        "state_dict": other.state_dict(),
    }
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"m\.pt: config and weights do not match"):
        load_checkpoint(tmp_path / "m.pt")


def test_config_that_cannot_be_built(tmp_path):
    payload = {"format": FORMAT, "config": '{"family": "cnn"}', "state_dict": {}}
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="config and weights do not match"):
        load_checkpoint(tmp_path / "m.pt")


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, warmed("mlp", TABULAR))
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(path, nn.Linear(2, 2))  # not a slimline model
    assert path.read_bytes() == before
    assert np.array_equal(sorted(p.name for p in tmp_path.iterdir()), ["m.pt"])
