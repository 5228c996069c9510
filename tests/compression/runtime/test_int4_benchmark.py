"""The benchmark stage with quantize.bits 4: the INT4 final model beside the INT8 model of the
same pruned network, in the report, the table and the plot; bits 8 as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from slimline.compression.data.store import load_splits
from slimline.compression.runtime.calibration import stratified_sample
from slimline.compression.runtime.onnx_io import export_onnx
from slimline.compression.runtime.quantize import quantize
from slimline.core.params.release import Quantize
from tests.support.data import prepared_digits
from tests.support.params import write_params
from tests.support.processes import run_stage
from tests.support.training import quick_train

FAST = {"warmup": 1, "runs": 5, "throughput_runs": 1, "throughput_batch": 8}


def _project(root: Path, bits: int) -> Path:
    """A project after quantize and export: three FP32 models, their metrics, dist/model.onnx."""
    x, y = prepared_digits(root)
    model = quick_train(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), x, y, 5)
    (root / "metrics").mkdir()
    for role in ("teacher", "student", "pruned"):
        export_onnx(model, (64,), root / f"models/onnx/{role}.onnx")
        (root / f"metrics/{role}.json").write_text(json.dumps({"params": 2410}))
    train, val, test = load_splits(root / "data/prepared")
    calib_x, _ = stratified_sample(train.x, train.y, 256, 42)
    (root / "dist").mkdir()
    quantize(root / "models/onnx/pruned.onnx", root / "dist/model.onnx", calib_x=calib_x,
             val_x=val.x, val_y=val.y, test_x=test.x, test_y=test.y,
             q=Quantize(bits=bits))  # fmt: skip
    # export's record of the variant it shipped (the quantized one, as export.objective size picks)
    shipped = {"variant": f"pruned_int{bits}", "objective": "size"}
    (root / "dist/settings.json").write_text(json.dumps({"variant": shipped}))
    return write_params(root / "params.yaml", teacher={"arch": "mlp"}, student={"arch": "mlp"},
                        quantize={"bits": bits}, benchmark=FAST)  # fmt: skip


@pytest.mark.parametrize("bits", [4, 8])
def test_benchmark_rows_compare_int4_with_int8(tmp_path, bits):
    result = run_stage("benchmark", _project(tmp_path, bits))
    assert result.returncode == 0, result.stderr
    assert f"final INT{bits}" in result.stderr
    report = json.loads((tmp_path / "reports/benchmark.json").read_text())
    rows = {v["name"]: v for v in report["variants"]}
    table = (tmp_path / "reports/benchmark.md").read_text()
    assert (tmp_path / "plots/tradeoff.png").stat().st_size > 1000
    base = ["teacher_fp32", "student_fp32", "pruned_fp32", "final_int8", "pruned_int8_dynamic"]
    if bits == 8:  # as before: no INT4 row, no comparison
        assert list(rows) == base and "bits" not in rows["final_int8"]
        assert "int4_vs_int8" not in report and "4-bit" not in table
        return
    assert list(rows) == [*base, "pruned_int8_static"]
    final, int8 = rows["final_int8"], rows["pruned_int8_static"]
    assert final["bits"] == 4 and "bits" not in int8
    assert final["size_bytes"] < int8["size_bytes"]
    assert abs(final["accuracy"] - int8["accuracy"]) <= 0.02
    for row in (final, int8):
        assert row["latency_ms_b1_p50"] > 0 and row["throughput_b64"] > 0
    versus = report["int4_vs_int8"]
    assert versus["variant"] == "final_int8" and versus["reference"] == "pruned_int8_static"
    assert versus["size_ratio"] == int8["size_bytes"] / final["size_bytes"] > 1
    assert versus["accuracy_delta"] == final["accuracy"] - int8["accuracy"]
    assert "| final_int8 (4-bit weights) |" in table
    head, _, comparison = table.partition("## 4-bit weights against INT8, same pruned network")
    assert "| pruned_int8_static |" in head and "| pruned_int8_static | " in comparison
    assert "| final_int8 (4-bit weights) |" in comparison
