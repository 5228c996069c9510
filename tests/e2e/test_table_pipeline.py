"""The real pipeline through `dvc repro` on a CSV table (scikit-learn's wine data, written here),
then `slimline predict` on the files a user has: the prepared test split and the raw table; then
the same with 4-bit weights (`quantize.bits: 4`)."""

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import yaml

from slimline.compression.runtime.onnx_io import read_metadata
from tests.support.data import wine_frame, write_table
from tests.support.processes import run
from tests.support.project import dvc_repro, make_project
from tests.support.workspace import STAGES

pytestmark = pytest.mark.slow

MLP = {
    "teacher": {"arch": "mlp", "width": 64, "depth": 2, "epochs": 20, "batch_size": 32,
                "lr": 0.01},
    "student": {"arch": "mlp", "width": 16, "depth": 1, "epochs": 20, "batch_size": 32,
                "lr": 0.02},
}  # fmt: skip


def predict(root: Path, file: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "slimline.cli", "predict", "dist/model.onnx", file]
    return run(cmd, root)


def reported_accuracy(stdout: str) -> float:
    line = stdout.strip().splitlines()[-1]
    assert line.startswith("accuracy "), stdout
    return float(line.split()[1])


def test_table_through_the_pipeline_and_predict(tmp_path):
    project = make_project(
        tmp_path / "project",
        data={"source": "table", "path": "data/raw/wine.csv", "target": "target"},
        **MLP,
    )
    (project / "data/raw").mkdir(parents=True, exist_ok=True)
    write_table(wine_frame(), project / "data/raw/wine.csv")
    result = dvc_repro(project)
    assert result.returncode == 0, result.stdout + result.stderr
    meta = read_metadata(project / "dist/model.onnx")
    assert json.loads(meta["feature_names"]) == [c for c in wine_frame().columns if c != "target"]
    assert meta["target"] == "target" and json.loads(meta["class_names"]) == ["0", "1", "2"]
    gates = json.loads((project / "reports/gates.json").read_text())
    validated = next(g["value"] for g in gates["gates"] if g["name"] == "min_accuracy")
    assert validated > 0.8  # a real model on 3 classes
    # the prepared test split: taken as it is, so the validate stage's accuracy comes back
    out = predict(project, "data/prepared/test.npz")
    assert out.returncode == 0, out.stderr
    assert reported_accuracy(out.stdout) == pytest.approx(validated, abs=1e-4)
    # the raw table, every row: read by column name, standardized with the model's statistics
    out = predict(project, "data/raw/wine.csv")
    assert out.returncode == 0, out.stderr
    assert reported_accuracy(out.stdout) > 0.8 and "on 178 labelled samples" in out.stdout
    # 4-bit weights: only quantize and what follows it rerun; the deployed model, its card and
    # the benchmark say so, and predict reads it as any other
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["quantize"]["bits"] = 4
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = dvc_repro(project)
    assert result.returncode == 0, result.stdout + result.stderr
    ran = {s for s in STAGES if f"Running stage '{s}'" in result.stdout}
    assert ran == {"quantize", "export", "validate", "benchmark"}, result.stdout
    assert "MatMulNBits" in {n.op_type for n in onnx.load(project / "dist/model.onnx").graph.node}
    card = (project / "dist/model_card.md").read_text()
    assert "packed to 4 bits" in card and "final: pruned student 4-bit weights" in card
    variants = json.loads((project / "reports/benchmark.json").read_text())["variants"]
    assert {"final_int8", "pruned_int8_static"} <= {v["name"] for v in variants}
    out = predict(project, "data/raw/wine.csv")
    assert out.returncode == 0, out.stderr
    assert reported_accuracy(out.stdout) > 0.8
