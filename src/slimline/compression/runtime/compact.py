"""Shrinking quantized ONNX graphs: small models are mostly graph, not weights.

On the 6k-param pruned student, onnxruntime's QDQ output was 2.3x the INT8 weights: dynamo's
graph and per-node debug metadata, long tensor names repeated in every node, all-zero zero
points, per-channel bias scales, default attributes, shape hints. `compact` removes them
without changing what ONNX Runtime computes; `float_logits` is the one deliberate change.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from slimline.compression.runtime.onnx_io import OnnxError, run_logits, session, strip_debug_info

log = logging.getLogger(__name__)

# ops whose strides / dilations / pads default to ones / ones / zeros per the ONNX spec
WINDOW_OPS = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool")


def compact_file(raw: Path, out: Path, x: np.ndarray) -> Path:
    """Float logits, then `compact`, kept only if ORT's outputs on x are unchanged."""
    import onnx

    proto = onnx.load(str(raw))
    float_logits(proto)
    reference = out.with_suffix(".ref.onnx")
    onnx.save(proto, str(reference))
    onnx.save(compact(proto), str(out))
    expected = run_logits(session(reference), x)
    try:
        same = np.array_equal(run_logits(session(out), x), expected)
    except OnnxError:  # a rewrite ORT cannot load counts as a change, not a crash
        same = False
    if not same:
        log.warning("compacting %s changed ONNX Runtime outputs; keeping the plain file", raw)
        shutil.copyfile(reference, out)
    return out


def float_logits(proto: Any) -> None:
    """Drop a Q->DQ pair right before a graph output: logits stay float (QGemm can emit float
    directly), so they are not rounded to 256 levels, and the file loses two nodes."""
    graph = proto.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = [i for n in graph.node for i in n.input]
    for output in graph.output:
        dq = producer.get(output.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or consumers.count(q.input[0]) != 1:
            continue
        source = producer.get(q.input[0])
        if source is None:
            continue
        source.output[list(source.output).index(q.input[0])] = output.name
        graph.node.remove(q)
        graph.node.remove(dq)


def compact(proto: Any) -> Any:
    """Lossless size reductions (in place; returns proto). Each rewrite keeps ORT's QDQ fusion
    (QLinearConv, QGemm) and its outputs bit-identical; callers verify the latter on data."""
    strip_debug_info(proto)
    _drop_zero_points(proto)
    _fold_conv_bias(proto)
    _drop_default_attributes(proto)
    _dedupe_initializers(proto)
    _shorten_names(proto)
    return proto


def _consumers(graph: Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, set()).add(node.op_type)
    return out


def _drop_zero_points(proto: Any) -> None:
    """Remove all-zero zero points of int32 biases, and of int8 weights feeding only Conv.

    An absent zero point means 0. Gemm keeps its weight zero point: without it ORT no longer
    fuses DQ+Gemm into QGemm (measured).
    """
    from onnx import TensorProto, numpy_helper

    graph, consumers = proto.graph, _consumers(proto.graph)
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3 or node.input[2] not in inits:
            continue
        zp = inits[node.input[2]]
        only_conv = consumers.get(node.output[0]) == {"Conv"}
        droppable = zp.data_type == TensorProto.INT32 or (
            zp.data_type == TensorProto.INT8 and only_conv
        )
        if droppable and not numpy_helper.to_array(zp).any():
            del node.input[2]
    _drop_unused_initializers(graph)


def _fold_conv_bias(proto: Any) -> None:
    """Store a Conv's int32 bias as float (q * scale): saves the per-channel bias scale.

    ORT's QDQ Conv fusion quantizes a float bias with the same scale and gets q back exactly.
    Not for Gemm: a float Gemm bias stops the QGemm fusion (measured).
    """
    from onnx import TensorProto, numpy_helper

    graph, consumers = proto.graph, _consumers(proto.graph)
    inits = {t.name: t for t in graph.initializer}
    for node in list(graph.node):
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        q = inits[node.input[0]]
        if q.data_type != TensorProto.INT32 or consumers.get(node.output[0]) != {"Conv"}:
            continue
        if len(node.input) > 2 or node.input[1] not in inits:
            continue  # a non-zero zero point or a computed scale: leave it alone
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        # float64 product of two float32 values is exact; the cast rounds once, as DQ does
        bias = (numpy_helper.to_array(q).astype(np.float64) * scale).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(bias, node.output[0]))
        graph.node.remove(node)
    _drop_unused_initializers(graph)


def _drop_default_attributes(proto: Any) -> None:
    """Attributes equal to their ONNX default: the schema's, plus the spec's all-ones strides
    and dilations and all-zero pads of convs and pools, and Conv's kernel_shape (from W)."""
    from onnx import defs, helper

    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        schema = defs.get_schema(node.op_type, version)
        keep = [a for a in node.attribute if not _is_default(node.op_type, a, schema, helper)]
        del node.attribute[:]
        node.attribute.extend(keep)


def _is_default(op_type: str, attr: Any, schema: Any, helper: Any) -> bool:
    value = helper.get_attribute_value(attr)
    spec = schema.attributes.get(attr.name)
    if spec is not None and spec.default_value.type:  # type 0: no default in the schema
        return helper.get_attribute_value(spec.default_value) == value
    if op_type not in WINDOW_OPS:
        return False
    return (
        (attr.name in ("strides", "dilations") and all(v == 1 for v in value))
        or (attr.name == "pads" and not any(value))
        or (attr.name == "kernel_shape" and op_type == "Conv")
    )


def _dedupe_initializers(proto: Any) -> None:
    """Point identical initializers (same type, shape, values) at one copy."""
    from onnx import numpy_helper

    graph = proto.graph
    first: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    for t in graph.initializer:
        key = (t.data_type, tuple(t.dims), numpy_helper.to_array(t).tobytes())
        alias[t.name] = first.setdefault(key, t.name)
    for node in graph.node:
        node.input[:] = [alias.get(name, name) for name in node.input]
    _drop_unused_initializers(graph)


def _shorten_names(proto: Any) -> None:
    """Base-36 names for internal tensors, no node names: names are repeated in every node."""
    graph = proto.graph
    keep = {v.name for v in [*graph.input, *graph.output]}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, np.base_repr(len(names), 36).lower())

    for t in graph.initializer:
        t.name = short(t.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]


def _drop_unused_initializers(graph: Any) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
