"""params.distill: the mode, its generations, and the teacher an online mode needs."""

from pathlib import Path

import pytest

from slimline.core.params.loading import ParamsError, load_params
from tests.support.params import write_params

ONNX_TEACHER = ["teacher.source=onnx", "teacher.path=data/pretrained/model.onnx"]


def problems(tmp_path: Path, overrides: list[str]) -> list[str]:
    with pytest.raises(ParamsError) as info:
        load_params(write_params(tmp_path / "params.yaml"), overrides)
    return info.value.problems


def test_the_default_mode_is_offline_with_two_generations_for_self(tmp_path):
    distill = load_params(write_params(tmp_path / "params.yaml")).distill
    assert (distill.mode, distill.generations) == ("offline", 2)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("distill.mode=mutual", "distill.mode: 'offline', 'online' or 'self' (got 'mutual')"),
        ("distill.generations=0", "distill.generations: greater than or equal to 1 (got 0)"),
        ("distill.generations=6", "distill.generations: less than or equal to 5 (got 6)"),
    ],
)
def test_bad_mode_or_generations_name_field_and_value(tmp_path, override, expected):
    assert problems(tmp_path, [override]) == [expected]


def test_online_with_an_onnx_teacher_names_both_fields_and_why(tmp_path):
    [problem] = problems(tmp_path, [*ONNX_TEACHER, "distill.mode=online"])
    assert problem.startswith(
        "distill.mode: online needs teacher.source train (got teacher.source 'onnx')"
    )
    assert "cannot be trained" in problem


@pytest.mark.parametrize("mode", ["offline", "self"])
def test_an_onnx_teacher_is_fine_for_offline_and_self(tmp_path, mode):
    params = load_params(write_params(tmp_path / "p.yaml"), [*ONNX_TEACHER, f"distill.mode={mode}"])
    assert params.distill.mode == mode
