"""Disk full while writing an output (issue 8, item 15): the write really fails, no
half-written file is left in place, the old file is intact, and the message names the device.

As root the test mounts a small tmpfs over models/onnx (ENOSPC, as on a full disk); anywhere,
a file-size limit (RLIMIT_FSIZE: EFBIG) makes the prepare stage's writes fail.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.project import dvc_repro
from tests.reliability.pipeline import outputs, set_params, tool_env

PAGE = 4096


@contextlib.contextmanager
def small_device(folder: Path, room: int) -> Iterator[None]:
    """Mount a tmpfs over `folder` holding its files plus `room` bytes; skip without root."""
    saved = folder.with_name(f"{folder.name}.saved")
    shutil.copytree(folder, saved)
    used = sum(-(-p.stat().st_size // PAGE) * PAGE for p in saved.rglob("*") if p.is_file())
    mount = ["mount", "-t", "tmpfs", "-o", f"size={used + room}", "tmpfs", str(folder)]
    result = subprocess.run(mount, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(saved)
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        shutil.copytree(saved, folder, dirs_exist_ok=True)
        yield
    finally:
        if subprocess.run(["umount", str(folder)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)
        shutil.rmtree(saved)


def test_full_disk_while_writing_the_onnx_export_keeps_every_old_output(project):
    onnx_dir = project / "models/onnx"
    set_params(project, teacher={"epochs": 2})  # train_teacher must run again
    # room for the checkpoint's neighbours, not for a new ~80 KB teacher.onnx beside the old
    with small_device(onnx_dir, room=4 * PAGE):
        before = outputs(project)
        result = dvc_repro(project, "-s", "train_teacher")
        after = outputs(project)
    assert result.returncode != 0
    assert "exited with 1" in result.stderr  # a failed stage, not bad input
    assert (
        f"error: stage train_teacher: no space left on the device holding {onnx_dir}/ "
        "(OSError: [Errno 28] No space left on device); the previous outputs are kept"
    ) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert after == before  # old files byte-identical, no temp file left, dvc.lock unchanged


LIMITED = """
import resource, runpy, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: EFBIG
sys.argv = [sys.argv[2], "--params", "params.yaml"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_file_size_limit_while_writing_the_splits_keeps_the_old_splits(project):
    before = outputs(project)
    limit = 64 * 1024  # data/prepared/train.npz is ~300 KB
    stage = str(ROOT / "stages" / "prepare.py")
    result = subprocess.run(
        [sys.executable, "-c", LIMITED, str(limit), stage], cwd=project, env=tool_env(),
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: stage prepare: File too large while writing its outputs; "
        "the previous outputs are kept"
    )
    assert outputs(project) == before
