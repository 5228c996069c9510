"""The real pipeline through `dvc repro`, on small trained params, in a temp copy of the project:
the session's run (`pipeline_once`), copied once for this module.

Determinism (a forced cold rerun gives byte-identical metrics, curves and models) is proven in
tests/reliability/test_determinism.py."""

import json
import os
import shutil
import sys
from pathlib import Path

import onnx
import pytest
import torch

from slimline.compression.data.store import load_split
from slimline.compression.models.checkpoints import load_checkpoint
from slimline.compression.runtime.onnx_io import read_metadata
from tests.support.processes import check, run
from tests.support.project import dvc_repro

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_run(pipeline_once, tmp_path_factory) -> Path:
    """This module's copy of the session's complete run: a test here edits params.yaml."""
    dest = tmp_path_factory.mktemp("e2e") / "project"
    return Path(shutil.copytree(pipeline_once, dest, symlinks=True))


def test_every_output_is_written_and_loads(first_run):
    root = first_run
    for role in ("teacher", "student", "pruned"):
        model = load_checkpoint(root / f"models/{role}.pt")
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
        onnx.checker.check_model(str(root / f"models/onnx/{role}.onnx"), full_check=True)
    student = json.loads((root / "metrics/student.json").read_text())
    assert {"baseline_accuracy", "kd_gain", "teacher_agreement"} <= student.keys()
    pruned = json.loads((root / "metrics/pruned.json").read_text())
    assert pruned["params_after"] < pruned["params_before"]
    meta = read_metadata(root / "dist/model.onnx")
    assert json.loads(meta["class_names"]) == [str(i) for i in range(10)]
    assert json.loads(meta["input_shape"]) == [1, 8, 8]
    assert {"normalization", "params_sha256", "git_commit"} <= meta.keys()
    assert "## Limits" in (root / "dist/model_card.md").read_text()
    settings = json.loads((root / "dist/settings.json").read_text())
    assert settings["params"]["prune"]["ratio"] == 0.5
    gates = json.loads((root / "reports/gates.json").read_text())
    assert set(gates) == {"passed", "gates", "judged"} and gates["passed"] is True
    # the variant judged (export.objective size, the default: the quantized model) and why
    assert gates["judged"]["variant"] == settings["variant"]["variant"] == "pruned_int8"
    assert [g["name"] for g in gates["gates"]] == [
        "min_accuracy", "max_accuracy_drop", "min_agreement", "max_size_bytes", "min_compression"
    ]  # fmt: skip
    bench = json.loads((root / "reports/benchmark.json").read_text())
    names = [v["name"] for v in bench["variants"]]
    assert names[:4] == ["teacher_fp32", "student_fp32", "pruned_fp32", "final_int8"]
    for v in bench["variants"]:
        assert {"accuracy", "size_bytes", "params", "latency_ms_b1_p50", "latency_ms_b1_p95",
                "throughput_b64"} <= v.keys()  # fmt: skip
        assert v["latency_ms_b1_p50"] > 0 and v["throughput_b64"] > 0
    for png in ("plots/tradeoff.png", "plots/confusion.png"):
        assert (root / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| final_int8 |" in (root / "reports/benchmark.md").read_text()


def test_second_repro_is_a_no_op(first_run):
    result = dvc_repro(first_run)
    assert result.returncode == 0
    assert "Data and pipelines are up to date" in result.stdout
    assert "Running stage" not in result.stdout


def test_failing_gate_is_a_result_not_a_crash(first_run):
    params = first_run / "params.yaml"
    text = params.read_text()
    params.write_text(text.replace("min_compression: 1.0", "min_compression: 100000.0"))
    try:
        result = dvc_repro(first_run, "-s", "validate")
        assert result.returncode == 0, result.stderr
        gates = json.loads((first_run / "reports/gates.json").read_text())
        assert gates["passed"] is False
        failed = [g for g in gates["gates"] if not g["passed"]]
        assert [g["name"] for g in failed] == ["min_compression"]
        assert failed[0]["threshold"] == 100000.0 and failed[0]["value"] < 100000.0
    finally:
        params.write_text(text)


# evaluates dist/model.onnx on the test split, in a process that may run under qemu
EVALUATE = """
import sys
import numpy as np
from slimline.compression.data.store import load_split
from slimline.compression.runtime.onnx_io import run_logits, session
test = load_split(sys.argv[1] + "/data/prepared", "test", lazy=True)
print(" ".join(map(str, run_logits(session(sys.argv[1] + "/dist/model.onnx"), test.x).argmax(1))))
"""


def test_the_final_int8_model_predicts_the_same_on_an_avx2_only_cpu(first_run):
    # An INT8 model that is exact on one CPU can saturate on another: onnxruntime's U8S8
    # kernels without VNNI sum pairs of products in int16. The default target (portable) must
    # give the same prediction for every test sample on an emulated Haswell (AVX2, no AVX-512,
    # no VNNI) as on this CPU, whichever it is. CI installs qemu-user (.ci/run).
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        assert os.environ.get("CI") != "true", "CI must have qemu-user (.ci/run installs it)"
        pytest.skip("qemu-user is not installed (apt-get install -y qemu-user)")
    native, haswell = (
        check(run([*prefix, sys.executable, "-c", EVALUATE, first_run])).stdout.split()
        for prefix in ([], [qemu, "-cpu", "Haswell"])
    )  # fmt: skip
    test = load_split(first_run / "data/prepared", "test", lazy=True)
    assert len(native) == len(test.y) and haswell == native
    # on a CPU without VNNI an 8-bit U8S8 model saturates alike natively and under qemu:
    # the format itself is what makes it exact (uint8 weights, int8_target)
    assert read_metadata(first_run / "dist/model.onnx")["int8_target"] == "portable"
    weights = [
        t
        for t in onnx.load(str(first_run / "dist/model.onnx")).graph.initializer
        if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and t.dims
    ]
    assert weights and all(t.data_type == onnx.TensorProto.UINT8 for t in weights)
