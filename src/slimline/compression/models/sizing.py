"""How big the teacher and the student will be, known before anything trains.

`layer_config` is the layer plan `families.build_model` builds a fresh model from, and
`config_params` counts a plan's parameters by arithmetic (a test holds it equal to torch's
count for every family). Neither imports torch: `slimline run` checks the sizes before Prefect
starts, where importing torch would add over a second to every run, even a no-op.

`check_sizes` refuses (exit 2) a student that is not smaller than its teacher, naming both
counts; `slimline run` calls it with the shape read cheaply from the data source
(`source_shape`), and the distill stage again with the prepared splits' real shape, so that
`dvc repro` alone refuses it too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from slimline.compression.data.dataset import Vocab
from slimline.core.errors import InputError
from slimline.core.params.inputs import Data
from slimline.core.params.layouts import layout_problem, npz_x_shape, resolve, resolve_layout
from slimline.core.params.models import TEXT_ARCHS, ModelSpec
from slimline.core.params.schema import Params

# (input shape, class count): scikit-learn's 8x8 grey digits, 10 classes
DIGITS = ((1, 8, 8), 10)
# image folders: the upper bound of channels (the prepare stage keeps one for all-grey images)
IMAGE_CHANNELS = 3


class SizeError(InputError):
    """A student that is not smaller than its teacher; the message names both counts."""


def layer_config(
    spec: ModelSpec, input_shape: tuple[int, ...], role: str, vocab: Vocab | None = None
) -> dict[str, Any]:
    """Layer plan of a fresh model: widths double per conv layer / per resnet stage; a null
    width or depth is the family's default for `role` (core.params.MODEL_SIZES). The text
    families need the tokenizer's `vocab`."""
    width, depth = spec.size(role)
    if spec.arch in TEXT_ARCHS:
        if vocab is None:
            raise ValueError(f"{role}.arch: {spec.arch} needs the tokenizer's vocabulary")
        return _text_layers(spec.arch, width, depth, vocab)
    if spec.arch == "mlp":
        return {"hidden": [width] * depth}
    if spec.arch == "cnn":
        channels, pool, size = [], [], min(input_shape[1:])
        for i in range(depth):
            channels.append(width * 2**i)
            # pool while at least 2 (2x2) stays for the next layer; never after the last conv
            pool.append(i < depth - 1 and size >= 4)
            size = size // 2 if pool[-1] else size
        return {"channels": channels, "pool": pool}
    stages, c_in = [], width
    for s in range(3):
        out, stride = width * 2**s, 1 if s == 0 else 2
        first = {"mid": out, "out": out, "stride": stride, "shortcut": stride != 1 or c_in != out}
        rest = {"mid": out, "out": out, "stride": 1, "shortcut": False}
        stages.append([first] + [dict(rest) for _ in range(depth - 1)])
        c_in = out
    return {"stem": width, "stages": stages}


def _text_layers(arch: str, width: int, depth: int, vocab: Vocab) -> dict[str, Any]:
    base = {"vocab_size": vocab.size, "dim": width, "pad_id": vocab.pad_id}
    if arch == "boe":
        return base | {"hidden": width}
    if arch == "textcnn":
        return base | {"kernels": list(range(3, 3 + depth)), "channels": [width] * depth}
    heads = 4 if width >= 64 and width % 4 == 0 else 2 if width % 2 == 0 else 1
    layer = {"heads": heads, "head_dim": width // heads, "ffn": 4 * width}
    return base | {"layers": [dict(layer) for _ in range(depth)], "pooling": "cls"}


def config_params(config: dict[str, Any]) -> int:
    """Parameters of the model a full config (`families.model_config`'s form) describes."""
    shape, classes = tuple(config["input_shape"]), int(config["num_classes"])
    if config["family"] == "mlp":
        c_in, total = math.prod(shape), 0
        for c in config["hidden"]:
            total, c_in = total + c_in * c + c, c  # Linear: weight and bias
        return total + c_in * classes + classes
    if config["family"] in TEXT_ARCHS:
        return _text_params(config, shape[0], classes)
    kernel = 3 ** (len(shape) - 1)  # 3 (signals) or 3x3 (images)

    def conv_bn(a: int, b: int, k: int = kernel) -> int:
        return a * b * k + 2 * b  # a conv without bias, then BatchNorm's weight and bias

    if config["family"] == "cnn":
        c_in, total = shape[0], 0
        for c in config["channels"]:
            total, c_in = total + conv_bn(c_in, c), c
        return total + c_in * classes + classes
    c_in = config["stem"]
    total = conv_bn(shape[0], c_in)
    for blocks in config["stages"]:
        for b in blocks:
            total += conv_bn(c_in, b["mid"]) + conv_bn(b["mid"], b["out"])
            total += conv_bn(c_in, b["out"], 1) if b["shortcut"] else 0
            c_in = b["out"]
    return total + c_in * classes + classes


def _text_params(config: dict[str, Any], length: int, classes: int) -> int:
    """Parameters of a text family's config (`text_families`): embeddings count in full."""
    dim, family = config["dim"], config["family"]
    total = config["vocab_size"] * dim
    if family == "boe":
        hidden = config["hidden"]
        return total + dim * hidden + hidden + hidden * classes + classes
    if family == "textcnn":
        channels = config["channels"]
        convs = sum(dim * c * k + c for k, c in zip(config["kernels"], channels, strict=True))
        return total + convs + sum(channels) * classes + classes
    total += length * dim + 2 * dim  # positions, the final LayerNorm
    for layer in config["layers"]:
        inner, ffn = layer["heads"] * layer["head_dim"], layer["ffn"]
        attention = 3 * (dim * inner + inner) + inner * dim + dim  # q, k, v, out
        total += 4 * dim + attention + dim * ffn + ffn + ffn * dim + dim  # 2 LayerNorms, FFN
    return total + dim * classes + classes


def spec_params(
    spec: ModelSpec,
    input_shape: tuple[int, ...],
    num_classes: int,
    role: str,
    vocab: Vocab | None = None,
) -> int:
    """Parameters of `build_model(spec, input_shape, num_classes, role, vocab)`, without
    building it."""
    config = {"family": spec.arch, "input_shape": list(input_shape), "num_classes": num_classes}
    return config_params(config | layer_config(spec, tuple(input_shape), role, vocab))


def check_sizes(
    params: Params,
    input_shape: tuple[int, ...],
    num_classes: int,
    teacher_params: int | None = None,
    vocab: Vocab | None = None,
    teacher_vocab: Vocab | None = None,
) -> tuple[int, int] | None:
    """(teacher, student) parameter counts for data of `input_shape` and `num_classes`;
    `SizeError` when the student is not smaller than the teacher. None when a conv family
    meets tabular input: that mismatch has its own message (params, `build_model`). An ONNX
    teacher (`teacher.source: onnx`) counts as `teacher_params`, its weights; None when that
    is unknown or 0 (a tree ensemble keeps its model in attributes, not weights). Text
    families count their tokenizer's vocabulary: the student's `vocab`, the teacher's
    `teacher_vocab` (None: the same); before prepare has made them, the most each can hold."""
    input_shape = tuple(int(d) for d in input_shape)
    data = params.data
    if vocab is None and data.source == "text":
        own = data.student_vocab == "own"
        teacher_vocab = Vocab(data.vocab_size, 0)
        vocab = Vocab(min(data.student_vocab_size, data.vocab_size), 0) if own else teacher_vocab
    imported = params.teacher.source == "onnx"
    specs = {"student": params.student} | ({} if imported else {"teacher": params.teacher})
    text = [s.arch in TEXT_ARCHS for s in specs.values()]
    if any(text) != (params.data.source == "text") or any(text) != all(text):
        return None  # a family that cannot take the data: its own message (params)
    if not any(text) and any(s.arch != "mlp" and len(input_shape) not in (2, 3)
                             for s in specs.values()):  # fmt: skip
        return None
    student = spec_params(params.student, input_shape, num_classes, "student", vocab)
    if imported:
        teacher, described = teacher_params or 0, f"ONNX, {params.teacher.path}"
    else:
        teacher = spec_params(params.teacher, input_shape, num_classes, "teacher",
                              teacher_vocab or vocab)  # fmt: skip
        described = _describe(params.teacher, "teacher")
    if not teacher:
        return None
    if student >= teacher:
        raise SizeError(
            f"student: {student:,} parameters ({_describe(params.student, 'student')}) is not "
            f"smaller than the teacher's {teacher:,} ({described}) "
            f"for input {input_shape} and {num_classes} classes (student.width, "
            "student.depth; the student should be at most a tenth of the teacher)"
        )
    return teacher, student


def source_shape(data: Data, base: Path) -> tuple[tuple[int, ...], int] | None:
    """(input shape, class count) of the source as the prepare stage will make them, read
    cheaply: an npz's header and labels, a table's header and target column, a folder's class
    folders (and, for images, the upper bound of 3 channels); None when unreadable here."""
    try:
        if data.source == "digits":
            return DIGITS
        path = resolve(data.path or "", base)
        if data.source == "npz":
            return _npz_shape(path, data.layout)
        if data.source == "table":
            return _table_shape(path, data.target or "")
        if data.source == "text":
            return (data.max_len,), _text_classes(path, data.target)
        classes = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
        size = data.image_size
        return ((IMAGE_CHANNELS, size, size), len(classes)) if classes else None
    except Exception:  # missing or corrupt data is the prepare stage's error, with its message
        return None


def _npz_shape(path: Path, layout: str) -> tuple[tuple[int, ...], int] | None:
    import numpy as np

    shape = npz_x_shape(path)
    if shape is None or layout_problem(layout, shape, str(path)):
        return None
    sample = tuple(int(d) for d in shape[1:])
    if (resolve_layout(layout, len(shape)), len(shape)) in (("image", 3), ("signal", 2)):
        sample = (1, *sample)  # (N, H, W) -> (1, H, W); (N, L) -> (1, L)
    with np.load(path, allow_pickle=False) as z:  # reads only the arrays asked for
        classes = len(z["class_names"]) if "class_names" in z.files else int(z["y"].max()) + 1
    return sample, classes


def _table_shape(path: Path, target: str) -> tuple[tuple[int, ...], int] | None:
    import pandas as pd

    if path.suffix.lower() == ".csv":
        columns = list(pd.read_csv(path, nrows=0).columns)
        labels = pd.read_csv(path, usecols=[target])[target]
    else:
        labels = pd.read_parquet(path, columns=[target])[target]
        import pyarrow.parquet as pq

        columns = list(pq.read_schema(path).names)
    features = len([c for c in map(str, columns) if c != target and not c.startswith("__index")])
    return ((features,), int(labels.nunique())) if features else None


def _text_classes(path: Path, target: str | None) -> int:
    if path.is_dir():
        return len([p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")])
    import pandas as pd

    column = target or ""
    if path.suffix.lower() == ".csv":
        return int(pd.read_csv(path, usecols=[column])[column].nunique())
    return int(pd.read_parquet(path, columns=[column])[column].nunique())


def _describe(spec: ModelSpec, role: str) -> str:
    width, depth = spec.size(role)
    return f"{spec.arch}, width {width}, depth {depth}"
