"""What `slimline run` refuses before anything starts: an ONNX teacher that cannot serve the
data, and a student not smaller than its teacher (trained here or imported)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from slimline.compression.models.onnx_teacher import TeacherError
from slimline.compression.models.sizing import SizeError
from slimline.compression.release.preflight import check_before_run
from slimline.core.params.loading import load_params
from tests.support.params import write_params
from tests.support.project import make_project, refused_run


def linear_teacher(path: Path, classes: int = 10, features: int = 64) -> Path:
    """Flatten (N, 1, 8, 8) and one MatMul + Add: (features + 1) * classes weights."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(features, classes)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(classes, np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["scores"]),
            helper.make_node("Add", ["scores", "b"], ["logits"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", classes])],
        [w, b],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def params_with_teacher(tmp_path: Path, file: str, **student):
    teacher = {"source": "onnx", "path": file, "input": "prepared"}
    sections = {"teacher": teacher} | ({"student": student} if student else {})
    return load_params(write_params(tmp_path / "params.yaml", **sections))


def test_a_student_bigger_than_the_imported_teacher_is_refused_naming_both(tmp_path):
    linear_teacher(tmp_path / "linear.onnx")
    params = params_with_teacher(tmp_path, "linear.onnx")  # the default cnn student: 94,186
    with pytest.raises(SizeError) as e:
        check_before_run(params, tmp_path)
    assert "student: 94,186 parameters" in str(e.value)
    assert "teacher's 650 (ONNX, linear.onnx)" in str(e.value)
    small = params_with_teacher(tmp_path, "linear.onnx", arch="mlp", width=4, depth=1)
    check_before_run(small, tmp_path)  # 4 * 64 + 4 + 4 * 10 + 10 = 310 < 650: accepted


def test_an_imported_teacher_with_the_wrong_class_count_stops_the_run_before_it_starts(tmp_path):
    linear_teacher(tmp_path / "seven.onnx", classes=7)
    with pytest.raises(TeacherError) as e:
        check_before_run(params_with_teacher(tmp_path, "seven.onnx", width=2), tmp_path)
    assert "seven.onnx" in str(e.value) and "must be (batch, 10)" in str(e.value)


def test_slimline_run_with_a_missing_onnx_teacher_exits_2_and_runs_nothing(tmp_path):
    teacher = {"source": "onnx", "path": "data/pretrained/absent.onnx"}
    errors = refused_run(make_project(tmp_path / "project", teacher=teacher))
    assert len(errors) == 1, errors
    assert "data/pretrained/absent.onnx" in errors[0] and "ONNX file not found" in errors[0]
