"""ONNX export, validation, inference sessions, parity against torch, metadata.

Every model slimline ships has one output `logits` and its weights inside the file. Its inputs:
one float `input` with a dynamic batch axis, or, for a text model, int64 `input_ids` and
`attention_mask` with dynamic batch and sequence axes (up to the model's max_len). Text splits
hold the ids alone, padded: `feeds` makes the mask from them (`ids != pad_id`, the pad id in the
file's metadata). Files are written through `atomic_path`, and checked with `onnx.checker`
before they replace the previous version.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from slimline.core.atomic import atomic_path
from slimline.core.errors import InputError

INPUT, OUTPUT = "input", "logits"
TEXT_INPUTS = ("input_ids", "attention_mask")
PAD_KEY = "pad_id"  # metadata of a text model: the id its padding holds


class OnnxError(InputError):
    """A missing, corrupt or unloadable ONNX file; the message names the file."""


class ParityError(ValueError):
    """ONNX Runtime logits differ from torch by more than the tolerance."""


def export_onnx(
    model: Any, input_shape: tuple[int, ...], path: str | Path, opset: int = 20
) -> None:
    """Export a torch classifier (B, ...) -> (B, K) with the dynamo exporter, one file, checked."""
    import onnx
    import torch

    # the exporter warns once per process that torchvision (which we do not use) is absent
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    was_training = model.training
    model.eval()
    # torch.export keys dynamic_shapes by the forward argument's name, not by input_names.
    args = list(inspect.signature(model.forward).parameters)
    batch = torch.export.Dim("batch")
    names: list[str]
    if is_text(model):
        # sequences from 2 tokens up to the positions the model has; batch 2, length max_len:
        # a size of 1 would be specialized
        seq = torch.export.Dim("sequence", min=2, max=input_shape[0])
        ids = torch.full((2, *input_shape), model.pad_id + 1, dtype=torch.int64)
        example: tuple = (ids, torch.ones_like(ids))
        names, shapes = list(TEXT_INPUTS), {a: {0: batch, 1: seq} for a in args[:2]}
    else:
        example = (torch.zeros((2, *input_shape), dtype=torch.float32),)
        names, shapes = [INPUT], {args[0]: {0: batch}}
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings():
            # torch 2.13's exporter trips its own pytree deprecation (LeafSpec): not ours to fix
            warnings.filterwarnings("ignore", "`isinstance\\(treespec, LeafSpec\\)`", FutureWarning)
            # ids and mask share their axes: the exporter says it names each axis once
            warnings.filterwarnings("ignore", "# The axis name: ", UserWarning)
            torch.onnx.export(
                model,
                example,
                str(tmp),
                dynamo=True,
                external_data=False,
                input_names=names,
                output_names=[OUTPUT],
                opset_version=opset,
                dynamic_shapes=shapes,
                verbose=False,
            )
            proto = onnx.load(str(tmp))
            strip_debug_info(proto, keep_value_info=True)
            if is_text(model):
                entry = proto.metadata_props.add()
                entry.key, entry.value = PAD_KEY, str(model.pad_id)
            onnx.save(proto, str(tmp))
            onnx.checker.check_model(str(tmp), full_check=True)
    finally:
        model.train(was_training)


def is_text(model: Any) -> bool:
    """A model over token ids (the text families carry the id of their padding)."""
    return isinstance(getattr(model, "pad_id", None), int)


def strip_debug_info(proto: Any, keep_value_info: bool = False) -> None:
    """Drop doc strings and the exporter's graph / node metadata (in place).

    The dynamo exporter stores a stack trace, fx node and module path on every node: they hold
    absolute paths of the checkout and the venv, so the same model exported from two clones
    would hash differently (and leak local paths into artifacts). With torch.export's graph
    signature that was 12.4 KB of the pruned student's 39.8 KB FP32 file.
    """
    graph = proto.graph
    proto.doc_string = graph.doc_string = ""
    del graph.metadata_props[:]  # torch.export's graph signature: 1.5 KB on a small CNN
    for node in graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.doc_string = ""
        del value.metadata_props[:]
    if not keep_value_info:
        del graph.value_info[:]  # shape-inference hints; ORT infers them again at load
    used = {node.domain for node in graph.node} | {"", "ai.onnx"}
    opsets = [o for o in proto.opset_import if o.domain in used]
    del proto.opset_import[:]
    proto.opset_import.extend(opsets)


def check_parity(
    model: Any, onnx_path: str | Path, x: np.ndarray, atol: float, threads: int = 1
) -> float:
    """Max abs difference between torch and ORT logits on x; ParityError above atol. A text
    model is compared at a quarter, half and all of x's length too: its file must answer every
    length its dynamic sequence axis takes, not only the one it was exported at."""
    import torch

    text = is_text(model)
    width = x.shape[1] if text and x.ndim == 2 else 0
    cuts = sorted({max(2, width // 4), max(2, width // 2), width}) if width else [None]
    sess = session(onnx_path, threads)
    was_training = model.training
    model.eval()
    diff = 0.0
    try:
        for cut in cuts:
            part = np.ascontiguousarray(x if cut is None else np.asarray(x)[:, :cut])
            with torch.inference_mode():
                dtype = np.int64 if text else np.float32
                expected = model(torch.from_numpy(part.astype(dtype))).numpy()
            try:
                got = run_logits(sess, part)
            except Exception as e:  # onnxruntime's own error types: a length it cannot take
                if cut is None or cut == width:
                    raise  # the file fails on the data itself: not a parity question
                first = str(e).strip().splitlines()[0][:200]
                raise ParityError(
                    f"{onnx_path}: ONNX Runtime cannot run it at {cut} tokens ({first})"
                ) from None
            diff = max(diff, float(np.max(np.abs(expected - got))) if expected.size else 0.0)
            if not diff <= atol:  # also catches NaN
                at = "" if cut is None else f" at {cut} tokens"
                raise ParityError(
                    f"{onnx_path}: ONNX Runtime logits differ from torch by {diff:.3g} (max "
                    f"abs){at}, above the tolerance {atol:g}"
                )
    finally:
        model.train(was_training)
    return diff


def parity_bound(diff: float) -> float:
    """A parity difference as the metrics record it: rounded up to a power of two. The exact
    figure depends on onnxruntime's FP32 kernels, which differ in the last bits from one CPU
    to another (AVX2 / AVX-512 paths); the bound is the same on both unless the two straddle
    a power of two, so the metrics file, and dvc.lock, reproduce on another machine."""
    return 0.0 if diff == 0.0 else float(2.0 ** np.ceil(np.log2(diff)))


def session(model: str | Path | bytes, threads: int = 1, name: str = "") -> Any:
    """A CPU InferenceSession on a validated model, a file or serialized bytes (`name` then
    says whose, in errors): intra-op `threads`, inter-op 1, sequential."""
    import onnx
    import onnxruntime as ort

    source: str | bytes
    if isinstance(model, bytes):
        where, source = name or "ONNX model in memory", model
    else:
        path = Path(model)
        if not path.is_file():
            raise OnnxError(f"{path}: ONNX file not found")
        where, source = str(path), str(path)
    try:
        onnx.checker.check_model(source)
    except Exception as e:  # DecodeError, ValidationError, ...: all mean "not a usable model"
        raise OnnxError(f"{where}: not a valid ONNX model ({type(e).__name__}: {e})") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: stage logs stay readable
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise OnnxError(f"{where}: ONNX Runtime cannot load it ({e})") from None


def run_logits(sess: Any, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits (N, K) for x (N, ...), in batches so large splits fit in memory: x may be read
    lazily (`StoredRows`), each batch is read and converted on its own."""
    feed = feeds(sess)
    outs = [sess.run(None, feed(x[i : i + batch_size]))[0] for i in range(0, len(x), batch_size)]
    if not outs:
        return np.zeros((0, sess.get_outputs()[0].shape[-1]), np.float32)
    return np.concatenate(outs)


def feeds(sess: Any) -> Any:
    """The function that turns a batch of x into the session's inputs: float32 features, or
    int64 token ids with their attention mask (`ids != pad_id`)."""
    names = [i.name for i in sess.get_inputs()]
    return _feed(names, sess.get_modelmeta().custom_metadata_map)


def is_text_file(path: str | Path) -> bool:
    """Whether the ONNX file at `path` takes token ids (`TEXT_INPUTS`)."""
    return tuple(_input_names(_header(path))) == TEXT_INPUTS


def _header(path: str | Path) -> Any:
    return load(path, external_data=False)


def _input_names(model: Any) -> list[str]:
    initializers = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def file_feeds(path: str | Path) -> Any:
    """`feeds` for the model in the ONNX file at `path`, without a session (the readers of
    onnxruntime's calibration and debugging tools run their own)."""
    model = _header(path)
    return _feed(_input_names(model), {p.key: p.value for p in model.metadata_props})


def _feed(names: list[str], meta: dict[str, str]) -> Any:
    if tuple(names) != TEXT_INPUTS:
        return lambda x: {names[0]: np.ascontiguousarray(x, dtype=np.float32)}
    if PAD_KEY not in meta:  # a guess would silently mask the wrong tokens
        raise OnnxError(f"a text model without {PAD_KEY!r} in its metadata (export_onnx sets it)")
    pad = int(meta[PAD_KEY])

    def tokens(x: np.ndarray) -> dict[str, np.ndarray]:
        ids = np.ascontiguousarray(x, dtype=np.int64)
        return {"input_ids": ids, "attention_mask": (ids != pad).astype(np.int64)}

    return tokens


def add_metadata(src: str | Path, dst: str | Path, props: dict[str, str]) -> None:
    """Copy src to dst with metadata_props added (a key already present gets the new value)."""
    import onnx

    bad = [k for k, v in props.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise TypeError(f"metadata keys and values must be str (bad keys: {bad})")
    proto = load(src)
    # Not onnx.helper.set_model_props: it replaces every entry, including ORT's own.
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in props.items():
        entry = existing.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(dst) as tmp:
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp))


def read_metadata(path: str | Path) -> dict[str, str]:
    return {p.key: p.value for p in load(path).metadata_props}


def load(path: str | Path, external_data: bool = True) -> Any:
    """onnx.load with OnnxError naming the file (`external_data`: False reads the graph and
    metadata alone)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise OnnxError(f"{path}: ONNX file not found")
    try:
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as e:
        raise OnnxError(f"{path}: not a valid ONNX model ({type(e).__name__}: {e})") from None
