"""onnxruntime's INT8 kernels on the CPU that runs the suite, against exact integer arithmetic.

quantize.target rests on one claim per weight format (docs/quantization.md, the kernel table):
uint8 weights (portable) and 7-bit int8 weights (native without VNNI) sum exactly on every
x86-64 CPU, and 8-bit int8 weights only where VNNI or AMX sums u8 x s8 products in int32.
These tests check the claim on whichever machine runs them, AVX2-only or VNNI, with the
weight grids `choose` gives each format and the two ops a quantized student runs: the
QGEMM behind MatMul / Gemm (exact int32 outputs), and QLinearConv (requantized: a random
check at a coarse resolution, and a zero-point probe that sees a single saturated sum).
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

from slimline.compression.runtime.int8_target import EXACT_SETS, choose
from slimline.compression.runtime.onnx_io import session as onnx_session
from slimline.core.cpu import cpu_info, describe

CPU = cpu_info()
SETS = CPU["instruction_sets"]
PORTABLE = choose("portable", CPU)
SEVEN_BIT = choose("native", {"model": "AVX2 only", "instruction_sets": {"AVX2": True}})
EIGHT_BIT = choose("native", {"model": "VNNI", "instruction_sets": {"AVX-512 VNNI": True}})
# QLinearConv's requantization multiplier (x_scale * w_scale / y_scale): a power of two, so
# that acc * multiplier is exact in float32 and onnxruntime's round-half-even is np.rint's;
# 2**-17 keeps every sum of the random check in uint8, at a resolution of 2**17
MULTIPLIER, OUT_ZERO = 2.0**-17, 128


def weights(grid: tuple[int, int], shape: tuple[int, ...], rng) -> np.ndarray:
    """Random weights on a format's grid whose first output row sits at the grid's top, so
    that a pair of 255 x top products (64,770 for int8's 127) meets an int16 step if any."""
    low, high = grid
    dtype = np.uint8 if low == 0 else np.int8
    w = rng.integers(low, high + 1, shape)
    w[0] = high
    return w.astype(dtype)


def activations(shape: tuple[int, ...], rng) -> np.ndarray:
    x = rng.integers(0, 256, shape)
    x[0] = 255
    return x.astype(np.uint8)


def session(nodes, inputs, outputs, initializers):
    """One op in a model, run as slimline runs every model (one thread, sequential)."""
    graph = helper.make_graph(nodes, "kernel", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx_session(model.SerializeToString(), name=f"{nodes[0].op_type} kernel check")


def matmul_integer(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """onnxruntime's int32 sums of uint8 `a` [M, K] times `w` [K, N] (MLAS QGEMM)."""
    s = session(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])],
        [helper.make_tensor_value_info("a", TensorProto.UINT8, a.shape)],
        [helper.make_tensor_value_info("y", TensorProto.INT32, (len(a), w.shape[1]))],
        [numpy_helper.from_array(w, "w")],
    )
    return s.run(None, {"a": a})[0]


def qlinear_conv(x: np.ndarray, w: np.ndarray, x_zero: int, multiplier: float) -> np.ndarray:
    """onnxruntime's QLinearConv (3x3, no padding): unit input scales, weight zero point 0."""
    constants = {"one": np.array(1.0, np.float32), "x_zero": np.array(x_zero, np.uint8),
                 "w_zero": np.array(0, w.dtype), "y_scale": np.array(1 / multiplier, np.float32),
                 "y_zero": np.array(OUT_ZERO, np.uint8), "w": w}  # fmt: skip
    feeds = ["x", "one", "x_zero", "w", "one", "w_zero", "y_scale", "y_zero"]
    s = session(
        [helper.make_node("QLinearConv", feeds, ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, conv_shape(x, w))],
        [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    return s.run(None, {"x": x})[0]


def conv_shape(x: np.ndarray, w: np.ndarray) -> tuple[int, ...]:
    return (len(x), len(w), x.shape[2] - w.shape[2] + 1, x.shape[3] - w.shape[3] + 1)


def exact_conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """What QLinearConv computes with int64 sums: the reference every CPU should meet."""
    patches = sliding_window_view(x.astype(np.int64), w.shape[2:], axis=(2, 3))
    acc = np.einsum("ncyxij,ocij->noyx", patches, w.astype(np.int64))
    return np.clip(np.rint(acc * MULTIPLIER) + OUT_ZERO, 0, 255).astype(np.uint8)


def probe_conv_is_exact(grid: tuple[int, int]) -> bool:
    """QLinearConv at a resolution of one: inputs of 255 with zero point 255 sum to exactly 0,
    while the kernel still multiplies the raw 255s by the weights (the zero point is a
    correction term) and meets the same int16 pair sums as a real input would. So with a
    multiplier of 1 every output is the output zero point, unless a pair sum saturated."""
    x = np.full((1, 16, 6, 6), 255, np.uint8)
    dtype = np.uint8 if grid[0] == 0 else np.int8
    return all(
        (qlinear_conv(x, np.full((4, 16, 3, 3), edge, dtype), 255, 1.0) == OUT_ZERO).all()
        for edge in grid
    )


def exact_everywhere(grid: tuple[int, int]) -> None:
    """Both ops equal the exact integers on this CPU, for weights on `grid`."""
    assert not exact_ops_differ(grid), f"{describe(CPU)}: weights on {grid} not summed exactly"


def exact_ops_differ(grid: tuple[int, int]) -> list[str]:
    """The ops (and batch sizes) whose result on this CPU is not the exact one."""
    rng = np.random.default_rng(0)
    differ = []
    for m in (1, 16):  # batch 1 is the latency path
        a, w = activations((m, 96), rng), weights(grid, (8, 96), rng).T.copy()
        if not np.array_equal(matmul_integer(a, w), a.astype(np.int64) @ w.astype(np.int64)):
            differ.append(f"MatMulInteger M={m}")
    x, w = activations((2, 16, 6, 6), rng), weights(grid, (8, 16, 3, 3), rng)
    if not np.array_equal(qlinear_conv(x, w, 0, MULTIPLIER), exact_conv(x, w)):
        differ.append("QLinearConv")
    if not probe_conv_is_exact(grid):
        differ.append("QLinearConv probe")
    return differ


def test_the_grids_are_the_formats_quantize_writes():
    # the grids below are the formats' own, so the kernel checks follow any change to them
    assert (PORTABLE.weight_grid, SEVEN_BIT.weight_grid, EIGHT_BIT.weight_grid) == (
        (0, 255), (-64, 64), (-127, 127))  # fmt: skip
    assert EIGHT_BIT.requires and not PORTABLE.requires and not SEVEN_BIT.requires


def test_portable_uint8_weights_sum_exactly_on_this_cpu():
    exact_everywhere(PORTABLE.weight_grid)


def test_seven_bit_int8_weights_sum_exactly_on_this_cpu():
    # 255 x 64 x 2 = 32,640 fits the int16 pair sum of CPUs without VNNI
    exact_everywhere(SEVEN_BIT.weight_grid)


def test_eight_bit_int8_weights_are_exact_only_where_the_cpu_sums_in_int32():
    if not isinstance(SETS, dict) or not SETS.get("AVX2"):
        pytest.skip(f"{describe(CPU)}: the claim is about x86-64 CPUs with AVX2")
    exact_cpu = any(SETS.get(s) for s in EXACT_SETS)
    differ = exact_ops_differ(EIGHT_BIT.weight_grid)
    # one step past the 7-bit grid: 255 x 65 x 2 = 33,150 no longer fits an int16
    past_seven_bits = exact_ops_differ((-65, 65))
    if exact_cpu:  # VNNI or AMX: a native model made for this CPU is right here
        assert not differ and not past_seven_bits, (
            f"{describe(CPU)} has one of {EXACT_SETS}, yet {differ} / {past_seven_bits} saturated"
        )
    else:  # the int16 pair sums saturate: why native needs VNNI and portable is the default
        every = ["MatMulInteger M=1", "MatMulInteger M=16", "QLinearConv", "QLinearConv probe"]
        assert differ == every, f"{describe(CPU)} lacks {EXACT_SETS}; wrong were only {differ}"
        # at 65 the random QLinearConv check is too coarse (resolution 2**17) to see it
        assert set(past_seven_bits) >= set(every) - {"QLinearConv"}, past_seven_bits
