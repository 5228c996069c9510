"""Both models' sizes before training: the family defaults per role, the arithmetic count, the
data's shape read cheaply, and the check that refuses a student not smaller than its teacher
(through `slimline run`, before any stage; the distill stage's own check is in
tests/stages/test_distill.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from slimline.compression.data.dataset import Vocab
from slimline.compression.models.families import build_model, count_params, model_config
from slimline.compression.models.sizing import (
    SizeError,
    check_sizes,
    config_params,
    source_shape,
    spec_params,
)
from slimline.core.errors import InputError
from slimline.core.params.loading import load_params
from slimline.core.params.models import MODEL_SIZES, ModelSpec
from tests.support.data import wine_frame, write_table
from tests.support.params import write_params
from tests.support.paths import ROOT
from tests.support.project import make_project, refused_run

DIGITS = (1, 8, 8)
SHAPES = [(20,), (1000,), DIGITS, (3, 12, 10), (2, 64)]
# every family on every shape it takes: conv families need signals or images
CASES = [(a, s) for s in SHAPES for a in ("mlp", "cnn", "resnet") if a == "mlp" or len(s) > 1]
# a student bigger than its teacher, whatever the data
TOO_BIG = {
    "teacher": {"arch": "mlp", "width": 8, "depth": 1},
    "student": {"arch": "mlp", "width": 64, "depth": 3},
}


def spec(arch: str, width: int | None = None, depth: int | None = None) -> ModelSpec:
    return ModelSpec(arch=arch, width=width, depth=depth, epochs=1, lr=0.01, batch_size=8)


def defaults(tmp_path: Path, **sections) -> Path:
    """The project's params.yaml (width / depth null) with `sections` merged in."""
    return write_params(tmp_path / "params.yaml", **sections)


def test_default_digits_run_keeps_its_sizes():
    params = load_params(ROOT / "params.yaml")
    assert (params.teacher.width, params.teacher.depth) == (40, 2)
    assert (params.student.width, params.student.depth) == (32, 3)
    assert check_sizes(params, DIGITS, 10) == (1_086_370, 94_186)
    assert source_shape(params.data, ROOT) == (DIGITS, 10)
    teacher = build_model(params.teacher, DIGITS, 10, "teacher")
    student = build_model(params.student, DIGITS, 10, "student")
    assert (count_params(teacher), count_params(student)) == (1_086_370, 94_186)


def test_mlp_on_a_table_gets_a_real_teacher_and_a_tenth_sized_student(tmp_path):
    # the issue: `arch: mlp` for both, width / depth left to the defaults
    np.savez(tmp_path / "tab.npz", x=np.zeros((60, 13), np.float32), y=np.arange(60) % 3)
    path = defaults(
        tmp_path,
        data={"source": "npz", "path": "tab.npz"},
        teacher={"arch": "mlp"},
        student={"arch": "mlp"},
    )
    params = load_params(path)
    assert (params.teacher.width, params.teacher.depth) == MODEL_SIZES["teacher"]["mlp"]
    assert (params.student.width, params.student.depth) == MODEL_SIZES["student"]["mlp"]
    assert source_shape(params.data, tmp_path) == ((13,), 3)
    sizes = check_sizes(params, (13,), 3)
    assert sizes is not None
    teacher, student = sizes
    assert teacher >= 100_000 and teacher >= 10 * student
    assert teacher == count_params(build_model(params.teacher, (13,), 3, "teacher"))


@pytest.mark.parametrize(("arch", "shape"), CASES)
def test_same_family_defaults_keep_the_student_under_a_tenth(arch, shape):
    teacher = spec_params(spec(arch), shape, 10, "teacher")
    student = spec_params(spec(arch), shape, 10, "student")
    assert student * 10 <= teacher


@pytest.mark.parametrize(("arch", "shape"), CASES)
@pytest.mark.parametrize("role", ["teacher", "student"])
def test_arithmetic_count_is_torchs(arch, shape, role):
    for s in (spec(arch), spec(arch, width=6, depth=3)):
        model = build_model(s, shape, 7, role)
        assert spec_params(s, shape, 7, role) == count_params(model)
        assert config_params(model_config(model)) == count_params(model)


def test_a_student_not_smaller_than_its_teacher_is_refused_naming_both_counts(tmp_path):
    params = load_params(defaults(tmp_path, **TOO_BIG))
    with pytest.raises(SizeError) as info:
        check_sizes(params, DIGITS, 10)
    teacher = spec_params(params.teacher, DIGITS, 10, "teacher")
    student = spec_params(params.student, DIGITS, 10, "student")
    assert isinstance(info.value, InputError) and student >= teacher
    message = str(info.value)
    assert message.startswith(
        f"student: {student:,} parameters (mlp, width 64, depth 3) is not smaller than the "
        f"teacher's {teacher:,} (mlp, width 8, depth 1)"
    )
    assert "student.width, student.depth" in message and "a tenth of the teacher" in message
    # an equal size is not smaller either
    same = {"arch": "mlp", "width": 16, "depth": 2}
    with pytest.raises(SizeError):
        check_sizes(load_params(defaults(tmp_path, teacher=same, student=same)), DIGITS, 10)


def test_conv_family_on_tabular_input_is_left_to_its_own_message(tmp_path):
    params = load_params(defaults(tmp_path))  # resnet / cnn
    assert check_sizes(params, (13,), 3) is None


def test_source_shapes_are_read_cheaply(tmp_path, npz_file, image_folder):
    from slimline.core.params.inputs import Data

    # (N, 1, 8, 8) images with class names a, b, c
    assert source_shape(Data(source="npz", path=str(npz_file)), tmp_path) == ((1, 8, 8), 3)
    np.savez(tmp_path / "sig.npz", x=np.zeros((20, 50), np.float32), y=np.arange(20) % 4)
    signal = Data(source="npz", path="sig.npz", layout="signal")
    assert source_shape(signal, tmp_path) == ((1, 50), 4)
    assert source_shape(Data(source="npz", path="sig.npz"), tmp_path) == ((50,), 4)
    folder = Data(source="image-folder", path=str(image_folder), image_size=16)
    assert source_shape(folder, tmp_path) == ((3, 16, 16), 3)  # channels: the upper bound
    for name in ("wine.csv", "wine.parquet"):
        write_table(wine_frame(), tmp_path / name)
        table = Data(source="table", path=name, target="target")
        assert source_shape(table, tmp_path) == ((13,), 3)
    # unreadable here: the prepare stage says why, with its own message
    assert source_shape(Data(source="npz", path="absent.npz"), tmp_path) is None
    assert source_shape(Data(source="table", path="wine.csv", target="nope"), tmp_path) is None


def test_slimline_run_refuses_a_big_student_before_any_stage(tmp_path):
    project = make_project(tmp_path / "project", **TOO_BIG)
    errors = refused_run(project)  # exit 2, no file touched (no Prefect state, no output)
    assert len(errors) == 1 and errors[0].startswith("error: student: "), errors
    assert "is not smaller than the teacher's" in errors[0]
    params = load_params(project / "params.yaml")
    for role in ("teacher", "student"):
        assert f"{spec_params(getattr(params, role), DIGITS, 10, role):,}" in errors[0]
    assert yaml.safe_load((project / "params.yaml").read_text())["student"]["width"] == 64


@pytest.mark.parametrize("arch", ["transformer", "textcnn", "boe"])
def test_text_families_count_their_embeddings_and_the_defaults_stay_under_a_tenth(arch):
    # the default data.vocab_size for the teacher, data.student_vocab_size for the student
    vocabs = {"teacher": Vocab(8000, 0), "student": Vocab(2000, 0)}
    teacher = spec_params(spec(arch), (64,), 6, "teacher", vocabs["teacher"])
    student = spec_params(spec(arch), (64,), 6, "student", vocabs["student"])
    assert student * 10 <= teacher
    for role, vocab in vocabs.items():
        model = build_model(spec(arch), (64,), 6, role, vocab)
        assert spec_params(spec(arch), (64,), 6, role, vocab) == count_params(model)
        assert model.embed.weight.shape[0] == vocab.size
    with pytest.raises(InputError, match="for text \\(token ids\\) data, and only for it"):
        build_model(spec(arch), (64,), 6, "student")  # no vocabulary: not text data
