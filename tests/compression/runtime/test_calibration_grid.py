"""Calibration ranges on a grid: CPUs whose FP32 kernels differ in the last bits agree."""

from __future__ import annotations

import numpy as np
from onnxruntime.quantization import CalibrationMethod
from onnxruntime.quantization.calibrate import TensorData, TensorsData

from slimline.compression.runtime.calibration import GRID_STEPS, round_ranges


def _ranges(lo: float, hi: float) -> TensorsData:
    data = {"t": TensorData(lowest=np.float32(lo), highest=np.float32(hi))}
    return TensorsData(CalibrationMethod.MinMax, data)


def test_ranges_widen_outward_onto_the_grid_by_less_than_a_step():
    lo, hi = -0.7131, 5.3172
    t = round_ranges(_ranges(lo, hi))["t"]
    step = 8.0 / GRID_STEPS  # 5.3172 is under 2^3
    assert t.lowest <= lo and t.highest >= hi
    assert hi + step > t.highest and lo - step < t.lowest
    assert float(t.highest / step).is_integer() and float(t.lowest / step).is_integer()
    assert t.lowest.dtype == np.float32


def test_last_bit_differences_give_the_same_range():
    a = round_ranges(_ranges(-0.7131, 5.3172))["t"]
    b = round_ranges(_ranges(np.nextafter(np.float32(-0.7131), 0),
                             np.nextafter(np.float32(5.3172), 10)))["t"]  # fmt: skip
    assert (a.lowest, a.highest) == (b.lowest, b.highest)


def test_a_zero_range_stays_zero():
    t = round_ranges(_ranges(0.0, 0.0))["t"]
    assert (t.lowest, t.highest) == (0.0, 0.0)
