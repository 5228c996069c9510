"""Security (issue 8, items 16, 24, 26): files a user could replace are checked before they are
loaded and never unpickled; names and paths from params and data cannot make slimline write
outside its output folders.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx.external_data_helper import set_external_data

from slimline.compression.models.checkpoints import FORMAT
from slimline.compression.runtime.onnx_io import read_metadata
from tests.support.hostile import Payload  # unpickling it opens (creates) a marker file
from tests.support.outputs import OUTPUT_DIRS, outputs, set_params
from tests.support.paths import ROOT
from tests.support.processes import run_stage
from tests.support.project import dvc_repro, make_project


def refused(project: Path, stage: str, *fragments: str) -> str:
    """`dvc repro -s stage` fails with the stage's exit 2, its message holding `fragments`,
    and leaves every output as it was."""
    before = outputs(project)
    result = dvc_repro(project, "-s", stage)
    assert result.returncode != 0 and "exited with 2" in result.stderr, result.stderr
    assert all(f in result.stderr for f in fragments), result.stderr
    assert "Traceback" not in result.stderr
    assert outputs(project) == before
    return result.stderr


def live(payload_path: Path, marker: Path, load) -> None:
    """The payload really runs when unpickled: `load` (the unsafe way) creates the marker."""
    spare = payload_path.with_name(f"spare{payload_path.suffix}")
    shutil.copy(payload_path, spare)
    load(spare)
    assert marker.exists()
    marker.unlink()
    spare.unlink()


# --- 16: a tampered checkpoint -----------------------------------------------------------------


@pytest.mark.slow  # reruns a stage over a copy of the session's trained run
def test_pickle_payload_in_place_of_a_checkpoint_is_refused_and_never_runs(project):
    marker = project.parent / "pwned"
    checkpoint = project / "models/student.pt"
    torch.save({"format": FORMAT, "config": "{}", "state_dict": Payload(marker)}, checkpoint)
    live(checkpoint, marker, lambda p: torch.load(p, weights_only=False))
    refused(project, "prune", f"{checkpoint}: unsafe checkpoint refused", "(found io.open)")
    assert not marker.exists()


# --- 24: checked before loaded, never unpickled -------------------------------------------------


@pytest.mark.slow  # reruns a stage over a copy of the session's trained run
def test_corrupt_deployable_model_is_refused_by_validate(project):
    model = project / "dist/model.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    refused(project, "validate", f"{model}: not a valid ONNX model")


@pytest.mark.slow  # reruns a stage over a copy of the session's trained run
def test_onnx_external_data_pointing_outside_its_folder_is_refused(project):
    secret = project.parent / "secret.bin"
    secret.write_bytes(b"\x00" * 4096)
    model_path = project / "dist/model.onnx"
    model = onnx.load(str(model_path))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    length = len(tensor.raw_data)
    set_external_data(tensor, location="../../secret.bin", offset=0, length=length)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    onnx.save(model, str(model_path))
    refused(project, "validate", f"{model_path}: not a valid ONNX model", "points outside")


@pytest.mark.slow  # reruns a stage over a copy of the session's trained run
def test_pickled_object_array_in_prepared_data_is_refused_and_never_runs(project):
    marker = project.parent / "pwned"
    split = project / "data/prepared/train.npz"
    with np.load(split) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["x"] = np.array([Payload(marker)], dtype=object)
    np.savez(split, **arrays)
    live(split, marker, lambda p: np.load(p, allow_pickle=True)["x"])
    refused(project, "train_teacher", f"{split}: unreadable prepared split", "allow_pickle=False")
    assert not marker.exists()


SOURCES = ["src/slimline", "stages", "flows"]
# onnx.load without the checker: only on files slimline itself wrote into its own temp folder
# (from an input that onnx_io.session had checked first)
UNCHECKED_ONNX_OK = {"onnx_io.py", "compact.py", "sensitivity.py"}
UNPICKLERS = {"pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else ast.unparse(owner)
            yield node, name, node.func.attr


def _keyword(call: ast.Call, name: str):
    """The constant a keyword argument is given, or None (absent or not a constant)."""
    for k in call.keywords:
        if k.arg == name and isinstance(k.value, ast.Constant):
            return k.value.value
    return None


def test_no_code_path_unpickles_or_loads_an_unchecked_model():
    problems = []
    files = [p for folder in SOURCES for p in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 20
    for path in files:
        where = path.relative_to(ROOT)
        for call, owner, attr in _calls(ast.parse(path.read_text())):
            line = f"{where}:{call.lineno}"
            if owner == "torch" and attr == "load" and _keyword(call, "weights_only") is not True:
                problems.append(f"{line}: torch.load without weights_only=True")
            np_load = owner in ("np", "numpy") and attr == "load"
            if np_load and _keyword(call, "allow_pickle") is not False:
                problems.append(f"{line}: np.load without allow_pickle=False")
            if owner in UNPICKLERS and attr in ("load", "loads", "Unpickler", "open"):
                problems.append(f"{line}: {owner}.{attr} unpickles")
            if owner == "yaml" and attr in ("load", "unsafe_load", "full_load"):
                problems.append(f"{line}: yaml.{attr} (use safe_load)")
            if attr == "InferenceSession" and path.name != "onnx_io.py":
                problems.append(f"{line}: an ORT session outside onnx_io.session (unchecked)")
            if owner == "onnx" and attr == "load" and path.name not in UNCHECKED_ONNX_OK:
                problems.append(f"{line}: onnx.load outside onnx_io (unchecked)")
    assert problems == []


# --- 26: names and paths cannot make slimline write outside its output folders -----------------

ODD_CLASS_NAMES = ["a..b", "%2e%2e%2fetc", "$\\frac$", "back\\slash", "~root", "-rf",
                   "x; touch PWNED", "名前 空白", "line\nbreak", "<b>|pipe|&amp;"]  # fmt: skip


def snapshot(top: Path, project: Path) -> dict[str, bytes]:
    """Every file under `top` except the project's output folders."""
    outs = [project / d for d in OUTPUT_DIRS]
    return {
        str(p.relative_to(top)): p.read_bytes()
        for p in sorted(top.rglob("*"))
        if p.is_file() and not any(p.is_relative_to(o) for o in outs)
    }


@pytest.mark.slow
def test_odd_class_folder_names_are_data_never_paths(project, tmp_path):
    from PIL import Image

    images = tmp_path / "user images"  # outside the project: read, never written
    # 8x8 like the trained project's models; class k lights pixels 6k..6k+5 (make_images'
    # row bands would be empty for 10 classes on 8 rows: labels unrelated to the images, which
    # prepare refuses as unlearnable)
    classes = len(ODD_CLASS_NAMES)
    y = np.repeat(np.arange(classes), 20)
    x = np.random.default_rng(0).uniform(0, 0.2, (len(y), 1, 64)).astype(np.float32)
    for i, k in enumerate(y):
        x[i, 0, 6 * k : 6 * k + 6] += 0.8
    x = x.reshape(len(y), 1, 8, 8)
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        folder = images / ODD_CLASS_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img[0] * 255).astype(np.uint8), mode="L").save(folder / f"{i}.png")
    set_params(project, data={"source": "image-folder", "path": str(images), "image_size": 8})
    before = snapshot(tmp_path, project)
    # the stages that carry class names into files: the splits, the bundle's metadata and card
    # (the confusion plot's labels: tests/compression/test_scores.py)
    for stage in ("prepare", "export"):
        result = run_stage(stage, project / "params.yaml")
        assert result.returncode == 0, result.stderr
    assert snapshot(tmp_path, project) == before
    names = read_metadata(project / "dist/model.onnx")["class_names"]
    assert sorted(json.loads(names)) == sorted(ODD_CLASS_NAMES)
    assert not list(tmp_path.rglob("PWNED"))


def test_output_paths_outside_the_project_or_on_its_files_are_refused(tmp_path):
    # refused while params load, before any output is read: a fresh project will do
    project = make_project(tmp_path / "project")
    set_params(project, paths={
        "teacher": "../outside.pt", "dist": str(tmp_path / "elsewhere"),
        "teacher_metrics": "params.yaml", "prepared": "src/prepared",
    })  # fmt: skip
    params = (project / "params.yaml").read_bytes()
    before = snapshot(tmp_path, project)
    result = run_stage("train_teacher", project / "params.yaml")
    assert result.returncode == 2, result.stderr
    problems = result.stderr.splitlines()[1:]
    assert [p.split(":")[0].strip() for p in problems] == [
        "paths.prepared", "paths.teacher", "paths.teacher_metrics", "paths.dist",
    ]  # fmt: skip
    assert "a relative path inside the project (got '../outside.pt')" in result.stderr
    assert "not the project root or one of its files and source folders (got 'params.yaml')" in (
        result.stderr
    )
    assert (project / "params.yaml").read_bytes() == params
    assert snapshot(tmp_path, project) == before
