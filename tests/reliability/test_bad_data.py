"""Bad data (issue 8, items 1-10) through `dvc repro` on a project with good outputs.

Each case points params.yaml at a broken source and reruns the pipeline: the prepare stage
stops with exit 2 and one message naming the file and what was expected, DVC fails, and every
output of the last good run (all stages, dvc.lock) is byte-identical afterwards.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from slimline.compression.data.expectations import sample_hash
from slimline.compression.data.store import load_split
from tests.support.data import bad_npz, make_images
from tests.support.outputs import outputs, set_params
from tests.support.processes import run, run_stage
from tests.support.project import dvc_repro

# every case reruns the pipeline over a copy of the session's trained run
pytestmark = pytest.mark.slow

NPZ = "data/raw/user.npz"
IMAGES = "data/raw/images"


def labels_out_of_range(path: Path) -> None:
    """Three named classes, but labels -1 and 3 as well."""
    x = np.random.default_rng(0).uniform(size=(60, 1, 8, 8)).astype(np.float32)
    y = np.arange(60) % 3
    y[[4, 9]] = [-1, 3]
    np.savez(path, x=x, y=y, class_names=np.array(["a", "b", "c"]))


def corrupt_png(root: Path) -> None:
    (root / "class_0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)


def non_image(root: Path) -> None:
    (root / "class_1" / "notes.txt").write_text("not a picture\n")


def empty_class(root: Path) -> None:
    (root / "class_9").mkdir()


NPZ_CASES = {
    # item: (writer, what the message must say besides the file name)
    "1 missing": (None, "data.path: {path}: file not found (expected an .npz with x and y)"),
    "2 zero-byte": (lambda p: bad_npz(p, "empty"), "not a readable .npz"),
    "3 truncated": (lambda p: bad_npz(p, "truncated"), "not a readable .npz"),
    "4 no y": (lambda p: bad_npz(p, "no_y"), "missing array 'y' (expected x:"),
    "5 NaN": (lambda p: bad_npz(p, "nan"), "expect_column_values_to_not_be_null on x_min"),
    "6 labels": (labels_out_of_range, "y must hold labels 0..2, one per class name (got -1, 3)"),
    "7 lengths": (
        lambda p: bad_npz(p, "length_mismatch"),
        "x and y must have the same length (got 60 and 59)",
    ),
}
IMAGE_CASES = {
    "8 corrupt png": (corrupt_png, "class_0/broken.png: unreadable image"),
    "8 non-image": (non_image, "class_1/notes.txt: not an image (expected .png, .jpg, .jpeg)"),
    "9 empty class": (empty_class, "class_9: empty class folder (expected *.png|jpg|jpeg images)"),
}


def assert_refused(project: Path, before: dict[str, bytes], named: Path, message: str) -> None:
    result = dvc_repro(project)
    assert result.returncode != 0, result.stdout
    assert "failed to reproduce 'prepare'" in result.stderr
    assert "exited with 2" in result.stderr, result.stderr  # bad input, not a crash
    assert str(named) in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert outputs(project) == before  # every stage's last good output, and dvc.lock


@pytest.mark.parametrize("case", NPZ_CASES)
def test_bad_npz_is_refused_and_last_good_outputs_kept(project, case):
    writer, message = NPZ_CASES[case]
    path = project / NPZ
    if writer is not None:
        writer(path)
    before = outputs(project)
    set_params(project, data={"source": "npz", "path": NPZ})
    if writer is None:
        # DVC itself refuses a missing dependency before the stage runs: the stage's own
        # message is what `dvc repro -s`-less callers (the flow, a user) get from slimline
        result = dvc_repro(project)
        assert result.returncode != 0 and NPZ in result.stderr, result.stderr
        assert outputs(project) == before
        result = run_stage("prepare", project / "params.yaml")
        assert result.returncode == 2, result.stderr
        assert message.format(path=path) in result.stderr
        assert outputs(project) == before
        return
    assert_refused(project, before, path, message)


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_bad_image_folder_is_refused_and_last_good_outputs_kept(project, image_folder, case):
    root = project / IMAGES
    shutil.copytree(image_folder, root)
    writer, message = IMAGE_CASES[case]
    writer(root)
    before = outputs(project)
    set_params(project, data={"source": "image-folder", "path": IMAGES, "image_size": 8})
    assert_refused(project, before, root, message)


def duplicated(path: Path) -> int:
    """Every sample twice (a test sample then has its twin in train); returns the unique count."""
    x, y = make_images(n_per_class=30, seed=1)  # learnable: the probe must pass them
    np.savez(path, x=np.concatenate([x, x]), y=np.concatenate([y, y]))
    return len(x)


def test_duplicates_are_dropped_before_the_split_so_test_never_leaks_into_train(project):
    unique = duplicated(project / NPZ)
    set_params(project, data={"source": "npz", "path": NPZ})
    result = dvc_repro(project, "prepare")
    assert result.returncode == 0, result.stderr
    splits = {s: load_split(project / "data/prepared", s) for s in ("train", "val", "test")}
    hashes = {s: {sample_hash(r) for r in v.x.reshape(len(v.x), -1)} for s, v in splits.items()}
    assert sum(len(v.y) for v in splits.values()) == unique
    assert not hashes["test"] & hashes["train"] and not hashes["val"] & hashes["train"]
    report = (project / "reports/data_validation.json").read_text()
    assert f'"duplicates_dropped": {unique}' in report


# The GX leakage check stands behind the dedupe: with the dedupe switched off in a real stage
# process, the twins land in different splits and the suite stops the stage.
NO_DEDUPE = """
import runpy, sys
import slimline.compression.data.prepare as prepare
prepare.drop_duplicates = lambda ds: (ds, 0)
sys.argv = ["stages/prepare.py", "--params", sys.argv[1]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_leakage_past_the_dedupe_is_caught_by_the_data_suite(project):
    duplicated(project / NPZ)
    before = outputs(project)
    set_params(project, data={"source": "npz", "path": NPZ})
    result = run([sys.executable, "-c", NO_DEDUPE, "params.yaml"], project)
    assert result.returncode == 2, result.stderr
    assert f"{project / NPZ}:" in result.stderr
    assert "leakage: expect_column_values_to_be_unique on sample_hash" in result.stderr
    assert outputs(project) == before
