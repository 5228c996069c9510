"""Block-wise INT4 weight-only quantization with onnxruntime's MatMulNBits and
GatherBlockQuantized: an MLP, and a text model's linear layers and embedding tables.

as_matmul (Gemm -> MatMul + Add) -> MatMulNBitsQuantizer, one block size per node -> compact
MatMul weights are packed (4 bits, a float scale and a 4-bit zero point per block of K), and
so is each embedding table a Gather reads by token ids (blocks along the embedding width,
GatherBlockQuantized): in a text model the table is most of the file. Activations stay float
(docs/quantization.md, "4-bit weights": why nothing else is quantized).
`quantize.quantize` drives the rounds and the accuracy-aware fallback (nodes kept in FP32)
with the builder here, as it does for INT8.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from slimline.compression.runtime import onnx_io
from slimline.compression.runtime.compact import compact_file
from slimline.core.errors import InputError

# Blocks run along K (a weight's input features) and are padded to whole blocks: a 128 block
# on a 64-input layer packed 64 zeros per column, and the file came out larger than INT8. So
# each node gets the largest power of two <= K in [16, 128] (ORT 1.32's MlasQuantizeBlockwise
# refused blocks of 8 and 24). Asymmetric (a zero point per block) kept a digits mlp's test
# accuracy where symmetric lost 0.3-0.6 points, for ~5% more bytes.
MIN_BLOCK, MAX_BLOCK = 16, 128
SYMMETRIC = False
# accuracy_level unset (0): float compute. Level 4 (int8 activations inside the kernel) was
# 8x slower at batch 64 and no faster at batch 1 on these small layers (AVX-512 VNNI EPYC).
ACCURACY_LEVEL = 0
WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# which axis of each packed op's weight the blocks run along: MatMul's K, a table's width
QUANT_AXES = (("MatMul", 0), ("Gather", 1))
QUANTIZER_LOG = "onnxruntime.quantization.matmul_nbits_quantizer"


def settings(block_sizes: dict[str, int], max_accuracy_drop: float) -> dict[str, Any]:
    """Every setting that made an INT4 file, in metrics/quantize.json's shape."""
    return {
        "bits": 4,
        "mode": "weight_only",
        "calibration_method": "none",
        "calibration_samples": 0,
        "per_channel": False,  # block-wise along K instead
        "block_sizes": block_sizes,
        "symmetric": SYMMETRIC,
        "accuracy_level": ACCURACY_LEVEL,
        "activation_type": "float32",
        "weight_type": "QInt4" if SYMMETRIC else "QUInt4",
        "max_accuracy_drop": max_accuracy_drop,
    }


def block_size(k: int) -> int:
    """The largest power of two <= k within [MIN_BLOCK, MAX_BLOCK]."""
    return min(MAX_BLOCK, max(MIN_BLOCK, 2 ** int(math.log2(max(k, 1)))))


def as_matmul(proto: Any, source: str | Path) -> dict[str, tuple[str, np.ndarray]]:
    """Rewrite each Gemm (transA 0, alpha 1, constant 2-D B) as MatMul(A, B as (K, N)) + Add(C),
    in place: MatMulNBits packs MatMul weights only, and torch exports nn.Linear as Gemm with
    transB=1. The MatMul keeps the Gemm's name. Returns {node: (weight name, (K, N) array)};
    raises InputError naming `source` when a weighted node would stay unpacked (conv, odd Gemm)."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    nodes, weights, unpacked = [], {}, Counter[str]()
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w = inits.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type == "Gemm" and w is not None and _plain_gemm(attrs, w, node, inits):
            b = numpy_helper.to_array(w)
            b = np.ascontiguousarray(b.T if attrs.get("transB", 0) else b)  # (K, N)
            name = f"{node.input[1]}_kn"
            graph.initializer.append(numpy_helper.from_array(b, name))
            bias = len(node.input) > 2 and node.input[2]
            out = f"{node.output[0]}_mm" if bias else node.output[0]
            nodes.append(helper.make_node("MatMul", [node.input[0], name], [out], name=node.name))
            if bias:
                nodes.append(helper.make_node("Add", [out, node.input[2]], [node.output[0]],
                                              name=f"{node.name}_bias"))  # fmt: skip
            weights[node.name] = (node.input[1], b)
        elif node.op_type == "MatMul" and w is not None and len(w.dims) == 2:
            nodes.append(node)
            weights[node.name] = (node.input[1], numpy_helper.to_array(w))
        elif node.op_type == "Gather" and _table(node, attrs, inits):
            nodes.append(node)  # blocks along the width: as a (K=width, N=rows) weight
            weights[node.name] = (node.input[0], numpy_helper.to_array(inits[node.input[0]]).T)
        else:
            if node.op_type in WEIGHT_OPS and (w is not None or node.op_type.startswith("Conv")):
                unpacked[node.op_type] += 1
            nodes.append(node)
    if unpacked or not weights:
        found = ", ".join(f"{op} x{n}" for op, n in sorted(unpacked.items())) or "none"
        raise InputError(
            f"{source}: quantize.bits 4 packs MatMul weights (MatMulNBits) and Gemm ones "
            f"rewritten as MatMul (transA 0, alpha 1, beta 1, constant 2-D B); these weighted "
            f"nodes would stay unpacked: {found} (MatMul/Gemm packed: {len(weights)}). "
            "Use quantize.bits: 8"
        )
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return weights


def _table(node: Any, attrs: dict, inits: dict) -> bool:
    """An embedding: a constant 2-D table read by row (axis 0) at indices computed in the
    graph (a width that is not a whole number of blocks is padded, as K is for MatMul)."""
    table = inits.get(node.input[0])
    return (
        table is not None and len(table.dims) == 2 and attrs.get("axis", 0) == 0
        and node.input[1] not in inits
    )  # fmt: skip


def _plain_gemm(attrs: dict, w: Any, node: Any, inits: dict) -> bool:
    bias_ok = len(node.input) < 3 or not node.input[2] or node.input[2] in inits
    return (
        len(w.dims) == 2 and bias_ok and attrs.get("transA", 0) == 0
        and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
    )  # fmt: skip


def round_trip_sqnr(w: np.ndarray, block: int) -> float:
    """SQNR (dB) of a (K, N) weight through asymmetric 4-bit blocks of `block` rows."""
    k, n = w.shape
    pad = -k % block
    x = np.concatenate([w, np.zeros((pad, n))]).astype(np.float64).reshape(-1, block, n)
    lo, hi = np.minimum(x.min(1, keepdims=True), 0), np.maximum(x.max(1, keepdims=True), 0)
    scale = np.maximum((hi - lo) / 15.0, np.finfo(np.float32).tiny)
    zero = np.clip(np.round(-lo / scale), 0, 15)
    back = (np.clip(np.round(x / scale) + zero, 0, 15) - zero) * scale
    noise = max(float(np.linalg.norm(back - x)), 1e-30)
    return 20 * math.log10(max(float(np.linalg.norm(x)), 1e-30) / noise)


class Int4Builder:
    """The builder `quantize._search` drives: one INT4 file per round, nodes kept in FP32."""

    def __init__(self, fp32_path: Path, tmp: Path, check_x: np.ndarray) -> None:
        self.tmp, self.check_x = tmp, check_x
        self.proto = onnx_io.load(fp32_path)
        self.ops = {n.name: n.op_type for n in self.proto.graph.node}
        self.weights = as_matmul(self.proto, fp32_path)
        self.blocks = {name: block_size(w.shape[0]) for name, (_, w) in self.weights.items()}
        weighted = [n.name for n in self.proto.graph.node if n.op_type in ("MatMul", "Gather")]
        self.untracked = [name for name in weighted if name not in self.blocks]

    def block_sizes(self, excluded: list[str]) -> dict[str, int]:
        return {n: b for n, b in self.blocks.items() if n not in excluded}

    def build(self, excluded: list[str], round_: int) -> Path:
        """Pack every MatMul not in `excluded`: one quantizer pass per block size (a pass
        takes one size), the other nodes excluded from it."""
        import onnx
        from onnxruntime.quantization import QuantFormat
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        logging.getLogger(QUANTIZER_LOG).setLevel(logging.WARNING)  # INFO per node otherwise
        model = onnx.ModelProto()
        model.CopyFrom(self.proto)
        for size in sorted(set(self.block_sizes(excluded).values())):
            config = DefaultWeightOnlyQuantConfig(
                block_size=size, is_symmetric=SYMMETRIC, accuracy_level=ACCURACY_LEVEL,
                quant_format=QuantFormat.QOperator, op_types_to_quantize=("MatMul", "Gather"),
                quant_axes=QUANT_AXES, bits=4,
            )  # fmt: skip
            # the quantizer packs every MatMul and Gather it may: those of another block size,
            # and any it may but `as_matmul` did not take, stay out of this pass
            others = [n for n, b in self.blocks.items() if b != size] + self.untracked
            quantizer = MatMulNBitsQuantizer(
                model, nodes_to_exclude=sorted(set(excluded) | set(others)), algo_config=config
            )
            quantizer.process()
            model = quantizer.model.model
        raw = self.tmp / f"int4_raw{round_}.onnx"
        onnx.save(model, str(raw))
        return compact_file(raw, self.tmp / f"int4_{round_}.onnx", self.check_x)

    def ranking(self, x: np.ndarray) -> list[dict]:
        """Packed nodes, worst 4-bit weight round trip first (x unused: weight-only)."""
        rows = [
            {"node": name, "op": self.ops[name], "weight": weight,
             "sqnr_db": round(round_trip_sqnr(w, self.blocks[name]), 3)}
            for name, (weight, w) in self.weights.items()
        ]  # fmt: skip
        return sorted(rows, key=lambda r: (r["sqnr_db"], r["node"]))
