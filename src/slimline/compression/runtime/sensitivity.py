"""Which nodes hurt most when quantized: the ranking behind quantize's accuracy fallback.

Static (QDQ) models: onnxruntime's qdq_loss_debug gives, per activation tensor, the SQNR of
the QDQ model's value against the FP32 model's (`xmodel_err`, in dB). That error accumulates
along the graph, so ranking tensors by it always blames the last layers. We turn it into a
per-node figure: noise power out of a node minus the noise power coming in, as an SQNR. The
lowest local SQNR is the most damaging node. (`qdq_err` is unusable here: when a ReLU is
folded into the Q that follows a Conv, it compares pre-ReLU values with post-ReLU ones.)

Dynamic models have no QDQ tensors to compare: nodes are ranked by the SQNR of an INT8
round trip of their weights (symmetric, per tensor: an approximation used only for ordering).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from slimline.compression.runtime.calibration import batch_reader
from slimline.compression.runtime.onnx_io import file_feeds

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
FLOOR = 1e-30  # noise power never below this: keeps log10 finite


def activation_ranking(fp32_path: Path, qdq_path: Path, x: np.ndarray, tmp: Path) -> list[dict]:
    """Quantized nodes of qdq_path, most damaging first: [{node, op, weight, sqnr_db}]."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as dbg
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    acts = {}
    for key, path in (("fp32", fp32_path), ("qdq", qdq_path)):
        debug = tmp / f"debug_{key}.onnx"
        dbg.modify_model_output_intermediate_tensors(str(path), str(debug))
        acts[key] = dbg.collect_activations(str(debug), batch_reader(x, file_feeds(path)))
    matched = dbg.create_activation_matching(acts["qdq"], acts["fp32"])
    matched = {t: m for t, m in matched.items() if "float" in m}
    errors = dbg.compute_activation_error(matched)  # {tensor: {"qdq_err", "xmodel_err"}} dB
    graph = onnx.load(str(qdq_path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    quantizable = set(QDQRegistry) | set(QLinearOpsRegistry)

    def source(tensor: str) -> str:  # the float tensor behind a chain of Q / DQ nodes
        while tensor in producer and producer[tensor].op_type in QDQ_OPS:
            tensor = producer[tensor].input[0]
        return tensor

    def noise_in(tensor: str) -> float:
        node = producer.get(tensor)
        if tensor not in errors:
            return 0.0
        if node is not None and node.op_type in quantizable:
            return _nsr(errors[tensor]["xmodel_err"])  # its own QDQ is charged to its producer
        # a graph input or an unquantized producer: the QDQ on it is charged to this consumer
        return _nsr(
            dbg.compute_signal_to_quantization_noice_ratio(
                matched[tensor]["float"], matched[tensor]["pre_qdq"]
            )
        )

    local: dict[str, tuple[float, Any]] = {}
    for tensor, err in errors.items():
        node = producer.get(source(tensor)) if tensor in producer else None
        if node is None or node.op_type not in quantizable or not node.name:
            continue
        inputs = [noise_in(source(i)) for i in node.input if i]
        added = max(_nsr(err["xmodel_err"]) - max(inputs, default=0.0), FLOOR)
        if added > local.get(node.name, (0.0, None))[0]:
            local[node.name] = (added, node)
    weights = _weight_names(onnx.load(str(fp32_path)).graph)
    rows = [
        {
            "node": name,
            "op": node.op_type,
            "weight": weights.get(name),
            "sqnr_db": round(-10 * math.log10(noise), 3),
        }
        for name, (noise, node) in local.items()
    ]
    return sorted(rows, key=lambda r: (r["sqnr_db"], r["node"]))


def weight_ranking(fp32_path: Path) -> list[dict]:
    """Weighted nodes (Conv, Gemm, MatMul), worst INT8 weight round trip first. The round trip
    is symmetric int8 per tensor whatever quantize.target's format: it only orders the
    dynamic fallback's candidates, and a weight hard to round on one 8-bit grid is hard on
    the others."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(fp32_path)).graph
    inits = {t.name: t for t in graph.initializer}
    rows = []
    for node in graph.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2 or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        scale = max(float(np.abs(w).max()) / 127.0, float(np.finfo(np.float32).tiny))
        noise = float(np.linalg.norm(w - np.clip(np.round(w / scale), -127, 127) * scale))
        sqnr = 20 * math.log10(max(float(np.linalg.norm(w)), FLOOR) / max(noise, FLOOR))
        rows.append(
            {
                "node": node.name,
                "op": node.op_type,
                "weight": node.input[1],
                "sqnr_db": round(sqnr, 3),
            }
        )
    return sorted(rows, key=lambda r: (r["sqnr_db"], r["node"]))


def _weight_names(graph: Any) -> dict[str, str]:
    """node name -> its weight initializer (`c4.0.weight`): dynamo names nodes `node_Conv_32`."""
    inits = {t.name for t in graph.initializer}
    return {
        n.name: n.input[1]
        for n in graph.node
        if n.op_type in WEIGHT_OPS and len(n.input) > 1 and n.input[1] in inits
    }


def _nsr(sqnr_db: float) -> float:
    """Noise-to-signal power ratio from an SQNR in dB (20*log10 of norms)."""
    return math.pow(10.0, -sqnr_db / 10.0)
