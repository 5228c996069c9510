"""Model families (mlp, cnn, resnet, and the text families of `text_families`), one factory,
and checkpoints that load without pickle.

The conv families follow the input: (C, L) signals get Conv1d / BatchNorm1d / MaxPool1d and
(C, H, W) images their 2-D forms, with global average pooling over L or H, W either way; the
config needs no flag, the input shape says which.

Every model is built from a JSON-able config holding each layer's channel count, not from
width/depth: structured pruning leaves widths that no formula reproduces, so the config is read
back from the modules themselves (`model_config`)."""

from __future__ import annotations

import math
from typing import Any, Protocol, cast

import torch
from torch import nn

from slimline.compression.data.dataset import Vocab
from slimline.compression.models.sizing import layer_config
from slimline.compression.models.text_families import TEXT_CLASSES
from slimline.compression.runtime.onnx_io import is_text
from slimline.core.errors import InputError
from slimline.core.params.models import TEXT_ARCHS, ModelSpec

FAMILIES = ("mlp", "cnn", "resnet", *TEXT_CLASSES)

CONVS: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d}

NORMS: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}

POOLS: dict[int, type[nn.Module]] = {1: nn.MaxPool1d, 2: nn.MaxPool2d}


def _dims(input_shape: tuple[int, ...]) -> int:
    """Spatial dimensions of a conv family's input: 1 for (C, L) signals, 2 for (C, H, W)."""
    dims = len(input_shape) - 1
    if dims not in CONVS:
        raise ValueError(f"input_shape: (C, L) or (C, H, W) for a conv family (got {input_shape})")
    return dims


def _conv_bn(c_in: int, c_out: int, k: int = 3, stride: int = 1, dims: int = 2) -> list[nn.Module]:
    conv = CONVS[dims](c_in, c_out, k, stride, padding=k // 2, bias=False)
    return [conv, NORMS[dims](c_out)]


def _spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """Global average pool over L (signals) or H, W (images): (B, C, ...) -> (B, C)."""
    return x.mean(dim=tuple(range(2, x.ndim)))


class MLP(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: list[int]):
        super().__init__()
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        layers: list[nn.Module] = [nn.Flatten()]
        c_in = math.prod(input_shape)  # images are flattened: C*H*W
        for c in hidden:
            layers += [nn.Linear(c_in, c), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, *input_shape) -> (B, K)
        return self.fc(self.features(x))

    def layer_config(self) -> dict[str, Any]:
        return {"hidden": [m.out_features for m in self.features if isinstance(m, nn.Linear)]}


class CNN(nn.Module):
    """conv3x3-bn-relu layers, a 2x2 max pool after a layer where `pool` says so, GAP, fc
    (conv3-bn-relu and a pool of 2 on signals)."""

    def __init__(self, input_shape, num_classes: int, channels: list[int], pool: list[bool]):
        super().__init__()
        if len(channels) != len(pool):
            raise ValueError(f"cnn: one pool flag per conv layer (got {channels}, {pool})")
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        layers: list[nn.Module] = []
        c_in, dims = input_shape[0], _dims(self.input_shape)
        for c, p in zip(channels, pool, strict=True):
            layers += [*_conv_bn(c_in, c, dims=dims), nn.ReLU(inplace=True)]
            layers += [POOLS[dims](2)] if p else []
            c_in = c
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, [H,] W) -> (B, K)
        x = _spatial_mean(self.features(x))  # global average pool: (B, C_last)
        return self.fc(x)

    def layer_config(self) -> dict[str, Any]:
        mods = list(self.features)
        convs = [i for i, m in enumerate(mods) if isinstance(m, nn.Conv1d | nn.Conv2d)]
        ends = [*convs[1:], len(mods)]  # each conv's layers run up to the next conv
        pool = [
            any(isinstance(m, nn.MaxPool1d | nn.MaxPool2d) for m in mods[a:b])
            for a, b in zip(convs, ends, strict=True)
        ]
        return {"channels": [mods[i].out_channels for i in convs], "pool": pool}


class BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn plus shortcut; `mid` is free to differ from `out` after pruning."""

    def __init__(self, c_in: int, mid: int, out: int, stride: int, shortcut: bool, dims: int = 2):
        super().__init__()
        if not shortcut and (stride != 1 or c_in != out):
            raise ValueError(f"resnet block {c_in}->{out} stride {stride} needs a 1x1 shortcut")
        self.body = nn.Sequential(
            *_conv_bn(c_in, mid, stride=stride, dims=dims),
            nn.ReLU(inplace=True),
            *_conv_bn(mid, out, dims=dims),
        )
        self.shortcut = (
            nn.Sequential(*_conv_bn(c_in, out, 1, stride, dims=dims)) if shortcut else None
        )
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return torch.relu(self.body(x) + identity)

    def layer_config(self) -> dict[str, Any]:
        return {
            "mid": self.body[0].out_channels,
            "out": self.body[3].out_channels,
            "stride": self.stride,
            "shortcut": self.shortcut is not None,
        }


class ResNet(nn.Module):
    def __init__(self, input_shape, num_classes: int, stem: int, stages: list[list[dict]]):
        super().__init__()
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        dims = _dims(self.input_shape)
        self.stem = nn.Sequential(*_conv_bn(input_shape[0], stem, dims=dims), nn.ReLU(inplace=True))
        c_in, built = stem, []
        for blocks in stages:
            stage = []
            for b in blocks:
                args = (b["mid"], b["out"], b["stride"], b["shortcut"])
                stage.append(BasicBlock(c_in, *args, dims=dims))
                c_in = b["out"]
            built.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*built)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, [H,] W) -> (B, K)
        x = _spatial_mean(self.stages(self.stem(x)))  # (B, C_last)
        return self.fc(x)

    def layer_config(self) -> dict[str, Any]:
        return {
            "stem": self.stem[0].out_channels,
            "stages": [
                [b.layer_config() for b in stage.children() if isinstance(b, BasicBlock)]
                for stage in self.stages.children()
            ],
        }


_CLASSES: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN, "resnet": ResNet, **TEXT_CLASSES}


def build_model(
    spec: ModelSpec,
    input_shape: tuple[int, ...],
    num_classes: int,
    field: str = "model",
    vocab: Vocab | None = None,
) -> nn.Module:
    """A fresh model of `spec`'s family; `field` ("teacher", "student") names it in errors
    and picks the role's default for a null width or depth (`sizing.layer_config`). A text
    family takes (max_len,) token ids of the tokenizer's `vocab`."""
    input_shape = tuple(int(d) for d in input_shape)
    if (spec.arch in TEXT_ARCHS) != (vocab is not None):
        raise InputError(
            f"{field}.arch: {', '.join(TEXT_ARCHS)} for text (token ids) data, and only for it "
            f"(got {spec.arch!r} for {'token ids' if vocab else f'input of shape {input_shape}'})"
        )
    if spec.arch not in TEXT_ARCHS and spec.arch != "mlp" and len(input_shape) not in (2, 3):
        raise InputError(
            f"{field}.arch: mlp for tabular input of shape {input_shape}; {spec.arch!r} needs "
            f"(C, L) signals or (C, H, W) images (got {spec.arch!r})"
        )
    config = {"family": spec.arch, "input_shape": list(input_shape), "num_classes": num_classes}
    return build_from_config(config | layer_config(spec, input_shape, field, vocab))


class _Family(Protocol):
    """What every family's module holds."""

    input_shape: tuple[int, ...]
    fc: nn.Linear  # the classifier

    def layer_config(self) -> dict[str, Any]: ...


def model_config(model: nn.Module) -> dict[str, Any]:
    """JSON-able description read from the modules (so it stays true after pruning)."""
    family = next((k for k, cls in _CLASSES.items() if type(model) is cls), None)
    if family is None:
        raise TypeError(f"not a slimline model: {type(model).__name__}")
    m = cast(_Family, model)
    base = {"family": family, "input_shape": list(m.input_shape)}
    return base | {"num_classes": m.fc.out_features} | m.layer_config()


def build_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild the modules `model_config` described (weights are fresh)."""
    kwargs = dict(config)
    family = kwargs.pop("family", None)
    if family not in _CLASSES:
        raise ValueError(f"family: one of {', '.join(FAMILIES)} (got {family!r})")
    return _CLASSES[family](**kwargs)


def example_batch(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """A batch of one zero sample as `model` takes it: token ids (int64; all padding) for a
    text family, floats for the rest. What tracing (MACs, pruning's graph) runs the model on."""
    return torch.zeros(1, *input_shape, dtype=torch.long if is_text(model) else torch.float32)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    import torch_pruning as tp

    # eval + no_grad: a train-mode forward would move BatchNorm running statistics
    was_training = model.training
    model.eval()
    with torch.no_grad():
        macs, _ = tp.utils.count_ops_and_params(model, example_batch(model, input_shape))
    model.train(was_training)
    return int(macs)
