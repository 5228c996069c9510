"""What onnxruntime makes of a quantized graph, and what quantize reports about it."""

from __future__ import annotations

from collections import Counter

import onnx
import onnxruntime as ort

REPORT_KEYS = {
    "target",
    "reduce_range",
    "requires",
    "runs_on",
    "mode",
    "calibration_method",
    "calibration_samples",
    "per_channel",
    "activation_type",
    "weight_type",
    "max_accuracy_drop",
    "fp32_size_bytes",
    "int8_size_bytes",
    "size_ratio",
    "fp32_val_accuracy",
    "int8_val_accuracy",
    "fp32_accuracy",
    "int8_accuracy",
    "agreement",
    "excluded_nodes",
    "fallback_rounds",
    "rounds",
    "sensitivity",
    "within_bound",
}


def fused_ops(path, tmp_path) -> Counter:
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
