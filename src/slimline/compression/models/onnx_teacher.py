"""A pretrained teacher from any framework: an ONNX classifier, checked, then run by onnxruntime.

Distillation needs only the teacher's logits, so a classifier exported from PyTorch, TensorFlow
or scikit-learn teaches as well as one trained here. `inspect_teacher` checks the file against
the data before anything trains and finds how to call it (`TeacherInterface`): its input and
output, the per-sample shape it takes (the data's, or the same values flattened), whether it
reads the prepared (standardized) values or the raw ones (`teacher.input`), whether it returns
probabilities (turned into log-probabilities, which softmax maps back to the same distribution)
and whether its batch axis is fixed (then it is fed padded batches of exactly that size).
A text teacher (a BERT-like export) takes int64 `input_ids`, and may take `attention_mask`
(made from the ids: `ids != pad`) and `token_type_ids` (fed zeros); it reads the ids of its own
tokenizer (`teacher.tokenizer`, `Split.for_teacher`), and every id of that vocabulary must fit
its embedding.

Nothing here imports torch, so `slimline run` checks an ONNX teacher before Prefect starts
without paying for it; `models.teacher` makes the file a torch module.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from slimline.compression.data.dataset import Split, Vocab
from slimline.compression.runtime.onnx_io import OnnxError, run_logits, session

FLOAT_TYPES = {1: "float32", 11: "float64"}  # onnx TensorProto element types we can feed
INT_TYPES = {7: "int64", 6: "int32"}  # ... and for token ids
# a text teacher's inputs besides the ids, by what their names hold (Hugging Face's names)
MASK_NAMES, TYPE_NAMES = ("attention_mask", "mask"), ("token_type_ids", "segment")
PROBABILITY_TOLERANCE = 1e-3  # rows within this of summing to 1 are probabilities
LOG_FLOOR = 1e-7  # log(0) would be -inf: a probability of 0 becomes log(1e-7)


class TeacherError(OnnxError):
    """An ONNX teacher slimline cannot use; the message names the file and what was expected."""


@dataclass(frozen=True)
class TeacherInterface:
    """How to call one ONNX teacher on prepared samples (all JSON-able)."""

    input_name: str  # the samples, or a text teacher's token ids
    input_dtype: str  # float32 | float64 | int64 | int32 (token ids)
    sample_shape: tuple[int, ...]  # what one sample is reshaped to (the data's, or flat)
    fixed_batch: int | None  # the batch size the file insists on; None: any
    output_name: str
    output: Literal["logits", "probabilities"]
    input_mode: Literal["prepared", "raw"]
    params: int  # elements of the file's initializers (its weights)
    mask_name: str | None = None  # text: the attention mask input, if it has one
    type_ids_name: str | None = None  # text: the token type (segment) input, fed zeros
    pad_id: int | None = None  # text: the id that pads its tokenizer's sequences

    @property
    def text(self) -> bool:
        return self.input_dtype in INT_TYPES.values()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"sample_shape": list(self.sample_shape)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TeacherInterface:
        return cls(**raw | {"sample_shape": tuple(raw["sample_shape"])})

    def notes(self) -> list[str]:
        """What was accepted but is not the norm, said once to the user."""
        notes = []
        if self.output == "probabilities":
            notes.append(
                f"output {self.output_name!r} holds probabilities, not logits: "
                "distilling from their logarithm (the same distribution after softmax)"
            )
        if self.fixed_batch is not None:
            notes.append(
                f"input {self.input_name!r} has no dynamic batch axis: run in batches of "
                f"exactly {self.fixed_batch}"
                + (" (one sample per call)" if self.fixed_batch == 1 else ", the last padded")
            )
        return notes


@dataclass(frozen=True)
class TeacherFeed:
    """A teacher's interface bound to the prepared data's statistics: prepared x in, logits out."""

    interface: TeacherInterface
    mean: np.ndarray  # per channel or feature, as in the prepared split
    std: np.ndarray
    scale: float

    def batches(
        self, x: np.ndarray, batch_size: int = 512
    ) -> list[tuple[dict[str, np.ndarray], int]]:
        """(the file's inputs, rows of them that are real samples) for prepared x (N, ...)."""
        it = self.interface
        if it.input_mode == "raw" and not it.text:  # undo prepare's `(raw / scale - mean) / std`
            shape = (1, -1) + (1,) * (x.ndim - 2)
            x = (x * self.std.reshape(shape) + self.mean.reshape(shape)) * self.scale
        if not it.text:  # token ids stay (N, length): a shorter sequence is still text
            x = x.reshape(len(x), *it.sample_shape)
        x = np.ascontiguousarray(x, dtype=it.input_dtype)
        step = it.fixed_batch or batch_size
        filler = it.pad_id or 0
        out = []
        for i in range(0, len(x), step):
            chunk = x[i : i + step]
            n = len(chunk)
            if it.fixed_batch and n < step:
                pad = np.full((step - n, *chunk.shape[1:]), filler, dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            out.append((self._inputs(chunk), n))
        return out

    def _inputs(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        it = self.interface
        feeds = {it.input_name: chunk}
        if it.mask_name:
            feeds[it.mask_name] = (chunk != it.pad_id).astype(chunk.dtype)
        if it.type_ids_name:
            feeds[it.type_ids_name] = np.zeros_like(chunk)
        return feeds

    def logits(self, sess: Any, x: np.ndarray) -> np.ndarray:
        """Logits (N, K) of prepared x (N, ...) from the teacher's session."""
        it = self.interface
        outs = [
            np.asarray(sess.run([it.output_name], feeds)[0])[:n] for feeds, n in self.batches(x)
        ]
        raw = np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, 0), np.float32)
        return to_logits(raw) if it.output == "probabilities" else raw


def feed_logits(feed: TeacherFeed, sess: Any, x: np.ndarray) -> np.ndarray:
    """An imported teacher's logits for x (which may be read lazily), x read 8 of the feed's
    own batches at a time: the session sees the same batches as with x whole."""
    rows = (feed.interface.fixed_batch or 512) * 8
    parts = [feed.logits(sess, x[i : i + rows]) for i in range(0, len(x), rows)]
    return np.concatenate(parts) if parts else feed.logits(sess, x[:0])


def teacher_logits(path: Path, metrics: dict[str, Any], split: Split) -> np.ndarray:
    """The teacher FP32 ONNX file's logits for a prepared split (as the teacher reads it:
    `Split.for_teacher`), called as `teacher_feed` says."""
    split = split.for_teacher()
    feed = teacher_feed(metrics, split.mean, split.std, split.scale)
    if feed is None:
        return run_logits(session(path), split.x)
    return feed_logits(feed, session(path), split.x)


def teacher_feed(
    metrics: dict[str, Any], mean: np.ndarray, std: np.ndarray, scale: float
) -> TeacherFeed | None:
    """How the teacher FP32 ONNX file is called: None for one trained here (`input` ->
    `logits`, as every slimline model); for an imported one (metrics/teacher.json `source:
    onnx`) its own interface (raw values, its shape, a fixed batch) bound to the split's
    statistics."""
    if metrics.get("source") != "onnx":
        return None
    return TeacherFeed(TeacherInterface.from_dict(metrics["interface"]), mean, std, scale)


def to_logits(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probabilities, LOG_FLOOR, None)).astype(np.float32)


def looks_like_probabilities(out: np.ndarray) -> bool:
    return bool(
        out.size
        and np.all(out >= 0)
        and np.all(out <= 1)
        and np.allclose(out.sum(axis=1), 1.0, atol=PROBABILITY_TOLERANCE)
    )


def inspect_teacher(
    path: Path,
    probe: np.ndarray,
    num_classes: int,
    input_mode: Literal["prepared", "raw"],
    stats: tuple[np.ndarray, np.ndarray, float],
    vocab: Vocab | None = None,
) -> tuple[TeacherInterface, bytes]:
    """Check `path` against prepared samples `probe` (n, ...) of `num_classes` classes (for
    text: token ids of the teacher's tokenizer, whose `vocab` they are); how to call it and
    the model as one self-contained file (weights an exporter kept in external data files
    inlined). `TeacherError` (exit 2) names the file and what was expected."""
    proto = load_checked(path)
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    extra: dict[str, Any] = {}  # a text teacher's mask, token types and pad id
    if vocab is None:
        given = _sample_input(path, inputs)
        dtype = FLOAT_TYPES[given.type.tensor_type.elem_type]
    else:
        given, extra = _text_inputs(path, inputs)
        dtype = INT_TYPES[given.type.tensor_type.elem_type]
        extra["pad_id"] = vocab.pad_id
        _check_embedding(path, graph, given.name, vocab)
        # one more row holding the vocabulary's last id: every id the tokenizer makes must run
        last = np.full((1, *probe.shape[1:]), vocab.pad_id, probe.dtype)
        last[0, : min(2, last.shape[1])] = vocab.size - 1
        probe = np.concatenate([probe, last])
    dims = [
        d.dim_value if d.HasField("dim_value") else None for d in given.type.tensor_type.shape.dim
    ]
    data_shape = tuple(int(d) for d in probe.shape[1:])
    sample_shape = _sample_shape(path, given.name, dims, data_shape)
    fixed = dims[0] if dims and dims[0] else None
    params = weight_count(proto)
    interface = TeacherInterface(
        input_name=given.name, input_dtype=dtype, sample_shape=sample_shape,
        fixed_batch=fixed, output_name=_output_name(path, graph), output="logits",
        input_mode=input_mode, params=params, **extra,
    )  # fmt: skip
    out = _run_probe(path, proto, TeacherFeed(interface, *stats), probe)
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise TeacherError(
            f"{path}: output {interface.output_name!r} must be (batch, {num_classes}), one score "
            f"per class of the data, in the order of its class names (got shape "
            f"{tuple(out.shape)})"
        )
    if not np.all(np.isfinite(out)):
        raise TeacherError(f"{path}: output {interface.output_name!r} holds NaN or infinity")
    if looks_like_probabilities(out):
        interface = dataclasses.replace(interface, output="probabilities")
    return interface, proto.SerializeToString()


def _sample_input(path: Path, inputs: list[Any]) -> Any:
    """The one float input of a classifier over samples."""
    ids = [i.name for i in inputs if _kind(i) in INT_TYPES.values()]
    if ids:
        raise TeacherError(
            f"{path}: input {ids[0]!r} takes integers (token ids: a text teacher, for "
            "data.source text with teacher.tokenizer); this data's samples are float tensors"
        )
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs) or "none"
        raise TeacherError(
            f"{path}: a classifier with one input (a batch of samples) expected; it has "
            f"{len(inputs)} ({names})"
        )
    (given,) = inputs
    kind = _kind(given)
    if kind not in FLOAT_TYPES.values():
        raise TeacherError(
            f"{path}: input {given.name!r} must be a float32 or float64 tensor (got {kind})"
        )
    return given


def _text_inputs(path: Path, inputs: list[Any]) -> tuple[Any, dict[str, Any]]:
    """A text teacher's ids input, and the names of its mask and token type inputs."""
    roles: dict[str, Any] = {}
    for given in inputs:
        name = given.name.lower()
        role = (
            "mask_name" if any(k in name for k in MASK_NAMES)
            else "type_ids_name" if any(k in name for k in TYPE_NAMES)
            else "ids"
        )  # fmt: skip
        if role in roles:
            names = ", ".join(repr(i.name) for i in inputs)
            raise TeacherError(
                f"{path}: a text classifier takes input_ids, and optionally attention_mask and "
                f"token_type_ids; its inputs ({names}) hold two of one kind"
            )
        if _kind(given) not in INT_TYPES.values():
            raise TeacherError(
                f"{path}: input {given.name!r} must be an int64 or int32 tensor of token ids "
                f"for text data (got {_kind(given)})"
            )
        roles[role] = given
    if "ids" not in roles:
        names = ", ".join(repr(i.name) for i in inputs) or "none"
        raise TeacherError(f"{path}: no input_ids input among its inputs ({names})")
    ids = roles.pop("ids")
    return ids, {role: given.name for role, given in roles.items()}


def _kind(given: Any) -> str:
    import onnx

    if not given.type.HasField("tensor_type"):
        return "not a tensor"
    elem = given.type.tensor_type.elem_type
    return FLOAT_TYPES.get(elem) or INT_TYPES.get(elem) or onnx.TensorProto.DataType.Name(elem)


def _check_embedding(path: Path, graph: Any, ids: str, vocab: Vocab) -> None:
    """Every id of the tokenizer must have a row in the embedding the ids index (a Gather of
    an initializer by the ids, maybe after a Cast), where the graph shows it."""
    sources = {ids}
    sources |= {n.output[0] for n in graph.node if n.op_type == "Cast" and n.input[0] == ids}
    tables = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Gather" and node.input[1] in sources and node.input[0] in tables:
            rows = int(tables[node.input[0]].dims[0])
            if vocab.size > rows:
                raise TeacherError(
                    f"{path}: its embedding {node.input[0]!r} has {rows} rows, but "
                    f"teacher.tokenizer has {vocab.size} tokens: not the tokenizer this model "
                    "was trained with"
                )


def weight_count(proto: Any) -> int:
    """Elements of the model's initializers: its parameters, for most families."""
    return int(sum(math.prod(t.dims) for t in proto.graph.initializer))


def load_checked(path: Path) -> Any:
    """The ONNX model at `path` with any external data inlined, having passed onnx's checker;
    `TeacherError` otherwise."""
    import onnx
    from onnx.external_data_helper import convert_model_from_external_data

    if not path.is_file():
        raise TeacherError(f"{path}: teacher.path: ONNX file not found")
    try:
        # reads external data files beside it into the model; checked just below
        proto = onnx.load_model(str(path))
        convert_model_from_external_data(proto)
    except Exception as e:  # protobuf DecodeError, a missing data file: not a usable file
        raise TeacherError(
            f"{path}: not an ONNX file (onnx.load: {type(e).__name__}: {str(e)[:200]}); "
            "teacher.path must name a model exported to ONNX"
        ) from None
    try:
        onnx.checker.check_model(proto)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise TeacherError(f"{path}: fails the ONNX checker ({first})") from None
    return proto


def _sample_shape(
    path: Path, name: str, dims: list[int | None], data_shape: tuple[int, ...]
) -> tuple[int, ...]:
    """The data's per-sample shape, or its flat form, whichever the input's dims accept."""
    size = math.prod(data_shape)
    per_sample = dims[1:]

    def fits(shape: tuple[int, ...]) -> bool:
        return len(per_sample) == len(shape) and all(
            d is None or d == s for d, s in zip(per_sample, shape, strict=True)
        )

    for shape in (data_shape, (size,)):
        if fits(shape):
            return shape
    got = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    raise TeacherError(
        f"{path}: input {name!r} has shape {got}, which the data's samples {data_shape} do not "
        f"fit: expected [batch, {', '.join(map(str, data_shape))}]"
        + (f" or [batch, {size}]" if len(data_shape) > 1 else "")
    )


def _output_name(path: Path, graph: Any) -> str:
    """The first float tensor output: the scores (scikit-learn's converters put the label
    first and the probabilities second)."""
    for out in graph.output:
        if out.type.HasField("tensor_type") and out.type.tensor_type.elem_type in FLOAT_TYPES:
            return str(out.name)
    names = ", ".join(repr(o.name) for o in graph.output)
    hint = (
        "; a scikit-learn model converted with skl2onnx needs options={'zipmap': False}"
        if any(o.type.HasField("sequence_type") for o in graph.output)
        else ""
    )
    raise TeacherError(
        f"{path}: no float tensor output with one score per class (outputs: {names}){hint}"
    )


def _run_probe(path: Path, proto: Any, feed: TeacherFeed, probe: np.ndarray) -> np.ndarray:
    """The raw output (no probability conversion) on `probe`; TeacherError when ORT fails."""
    try:
        sess = session(proto.SerializeToString(), name=str(path))
        raw = dataclasses.replace(feed.interface, output="logits")
        return dataclasses.replace(feed, interface=raw).logits(sess, probe)
    except Exception as e:  # ORT's errors are many kinds; each means "cannot run on this data"
        first = str(e).strip().splitlines()[0][:300]
        raise TeacherError(
            f"{path}: ONNX Runtime cannot run it on the data's samples "
            f"{tuple(probe.shape[1:])} ({first})"
        ) from None
