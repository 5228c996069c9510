"""INT8 for text: dynamic by default (weights and the embedding table), static limited to the
linear layers and the embedding, both within a point of FP32 on a learnable task."""

from __future__ import annotations

import onnx
import pytest

from slimline.compression.runtime.onnx_io import run_logits, session
from slimline.compression.runtime.quantize import TEXT_STATIC_OPS, quantize
from slimline.compression.scores import accuracy
from slimline.core.params.release import Quantize
from tests.support.text import exported_transformer, text_splits


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    return exported_transformer(tmp_path_factory.mktemp("text-int8"))


def _quantize(fp32, out, **q):
    train, val, test, _ = text_splits()
    return quantize(fp32, out, calib_x=train.x[:64], val_x=val.x, val_y=val.y, test_x=test.x,
                    test_y=test.y, q=Quantize(**q))  # fmt: skip


def test_auto_is_dynamic_for_text_and_quantizes_the_embedding_table(fp32, tmp_path):
    report = _quantize(fp32, tmp_path / "int8.onnx")
    assert report["mode"] == "dynamic"
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    embed = [i for i in graph.initializer if i.data_type == onnx.TensorProto.UINT8
             and len(i.dims) == 2 and i.dims[0] == text_splits()[0].vocab.size]  # fmt: skip
    assert embed, "the embedding table stayed FP32"
    assert report["int8_size_bytes"] < 0.4 * report["fp32_size_bytes"]
    assert report["int8_accuracy"] >= report["fp32_accuracy"] - 0.02


def test_static_text_quantizes_only_linear_layers_and_the_embedding(fp32, tmp_path):
    report = _quantize(fp32, tmp_path / "int8.onnx", mode="static", max_excluded_nodes=0)
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    readers = {n.op_type for n in graph.node if dequantized & set(n.input)}
    # MatMul / Gemm / Gather read quantized tensors (their outputs are re-quantized for the
    # next op); the attention mask's large negative (Where, then Softmax) keeps its float range
    assert set(TEXT_STATIC_OPS) & readers and not {"Where", "Softmax"} & readers
    quantized = {n.op_type for n in graph.node if dequantized & set(n.input[:2])
                 and n.op_type in ("MatMul", "Gemm")}  # fmt: skip
    assert quantized
    assert report["int8_accuracy"] >= report["fp32_accuracy"] - 0.05
    test = text_splits()[2]
    assert (
        accuracy(run_logits(session(tmp_path / "int8.onnx"), test.x), test.y)
        == (report["int8_accuracy"])
    )


def test_bits_4_packs_the_linear_layers_and_the_embedding_tables(fp32, tmp_path):
    # a bound of 3 val samples: one or two flipped answers of 60 must not unpack a node here
    report = _quantize(fp32, tmp_path / "int4.onnx", bits=4, max_accuracy_drop=0.05)
    assert report["excluded_nodes"] == []
    graph = onnx.load(str(tmp_path / "int4.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert "MatMulNBits" in ops and "GatherBlockQuantized" in ops  # weights and the tables
    floats = [
        i
        for i in graph.initializer
        if i.data_type == onnx.TensorProto.FLOAT
        and len(i.dims) == 2
        and i.dims[0] == text_splits()[0].vocab.size
        and i.dims[1] > 1
    ]  # fmt: skip (the tables' per-block scales stay float)
    assert not floats, "the embedding table stayed FP32"
    int8 = _quantize(fp32, tmp_path / "int8.onnx")
    assert report["int8_size_bytes"] < int8["int8_size_bytes"] < report["fp32_size_bytes"]
    assert report["int8_accuracy"] >= report["fp32_accuracy"] - 0.02
