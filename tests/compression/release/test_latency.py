"""Latency / throughput measurement, the benchmark table and the trade-off plot."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from slimline.compression.release.latency import (
    compare,
    display_name,
    markdown_table,
    measure_many,
    tradeoff_plot,
)

PNG = b"\x89PNG\r\n\x1a\n"
KEYS = {"latency_ms_b1_p50", "latency_ms_b1_p95", "throughput_b64"}


def _mlp_onnx(path, hidden: int) -> None:
    """A small (B, 16) -> (B, 4) MLP straight from onnx.helper: no torch needed here."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(hidden)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, hidden)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((hidden, 4)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    paths = {"small": root / "small.onnx", "large": root / "large.onnx"}
    _mlp_onnx(paths["small"], 8)
    _mlp_onnx(paths["large"], 512)
    return paths


def _x(n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 16)).astype(np.float32)


def test_measure_many_times_every_variant(models):
    result = measure_many(models, _x(1), _x(64), threads=1, warmup=3, runs=30, throughput_runs=10)
    assert list(result) == ["small", "large"]
    assert all(set(r) == KEYS and all(v > 0 for v in r.values()) for r in result.values())
    assert all(r["latency_ms_b1_p95"] >= r["latency_ms_b1_p50"] for r in result.values())
    # 64x the multiply-adds: the large MLP cannot sustain the small one's images/s
    assert result["large"]["throughput_b64"] < result["small"]["throughput_b64"]


VARIANTS = [
    {
        "name": "teacher_fp32",
        "accuracy": 0.99,
        "size_bytes": 4_000_000,
        "latency_ms_b1_p50": 0.30,
        "latency_ms_b1_p95": 0.40,
        "throughput_b64": 4000.0,
    },
    {
        "name": "final_int8",
        "accuracy": 0.985,
        "size_bytes": 20_000,
        "latency_ms_b1_p50": 0.05,
        "latency_ms_b1_p95": 0.06,
        "throughput_b64": 40000.0,
    },
]


def test_markdown_table_has_ratios_to_the_teacher():
    table = markdown_table(VARIANTS)
    lines = table.strip().splitlines()
    assert len(lines) == 4 and lines[1].count("---") == 10
    final = lines[3]
    assert "| size (kB) |" in lines[0]  # decimal kB, as every other size slimline prints
    assert "| final_int8 | 0.9850 | -0.0050 | 20.0 | 200.00x |" in final
    assert "6.00x" in final and "10.00x" in final  # speed-up, throughput ratio
    assert "| teacher_fp32 | 0.9900 | +0.0000 |" in lines[2] and "1.00x" in lines[2]
    with pytest.raises(ValueError, match="'student_fp32' not among"):
        markdown_table(VARIANTS, reference="student_fp32")


def test_tradeoff_plot_is_a_png(tmp_path):
    path = tmp_path / "plots" / "tradeoff.png"
    tradeoff_plot(VARIANTS, path)
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    assert [p.name for p in path.parent.iterdir()] == ["tradeoff.png"]


INT4_VARIANTS = [
    *VARIANTS[:1],
    {**VARIANTS[1], "bits": 4, "size_bytes": 12_000, "accuracy": 0.98},  # deployed INT4 model
    {**VARIANTS[1], "name": "pruned_int8_static"},
]


def test_int4_final_row_is_named_with_its_bits_and_compared_with_int8(tmp_path):
    assert display_name(INT4_VARIANTS[1]) == "final_int8 (4-bit weights)"
    assert display_name(VARIANTS[1]) == "final_int8"
    table = markdown_table(INT4_VARIANTS, reference="pruned_int8_static")
    assert "| final_int8 (4-bit weights) | 0.9800 | -0.0050 | 12.0 | 1.67x |" in table
    versus = compare(INT4_VARIANTS, "final_int8", "pruned_int8_static")
    assert versus["size_ratio"] == pytest.approx(20_000 / 12_000)
    assert versus["accuracy_delta"] == pytest.approx(-0.005)
    assert versus["speedup_b1"] == versus["throughput_ratio"] == 1.0
    tradeoff_plot(INT4_VARIANTS, tmp_path / "tradeoff.png")
    assert (tmp_path / "tradeoff.png").read_bytes()[:8] == PNG


def test_a_text_model_is_also_timed_at_the_shorter_token_lengths_it_takes(tmp_path):
    from tests.support.text import MAX_LEN, exported_transformer, text_splits

    path = exported_transformer(tmp_path)
    test = text_splits()[2]
    result = measure_many({"text": path}, test.x[:1], test.x[:8], threads=1, warmup=2, runs=10,
                          throughput_runs=3, token_lengths=(8, MAX_LEN, 2 * MAX_LEN))  # fmt: skip
    # at MAX_LEN, the model's own length, it is latency_ms_b1_p50; longer is not a text it takes
    assert set(result["text"]) == KEYS | {"latency_ms_b1_p50_8tok"}
    assert result["text"]["latency_ms_b1_p50_8tok"] > 0
