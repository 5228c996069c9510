"""Disk full while writing an output (issue 8, item 15): the write really fails, no
half-written file is left in place, the old file is intact, and the message names the device.

As root the test mounts a small tmpfs over models/onnx (ENOSPC, as on a full disk). The same
path without root, in the fast tier: a file-size limit (RLIMIT_FSIZE: EFBIG) on the prepare
stage (tests/stages/test_prepare.py) and on the stage shell and atomic writer (tests/core/).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.outputs import outputs, set_params
from tests.support.processes import run
from tests.support.project import dvc_repro

pytestmark = pytest.mark.slow  # reruns a stage over a copy of the session's trained run

PAGE = 4096


@contextlib.contextmanager
def small_device(folder: Path, room: int) -> Iterator[None]:
    """Mount a tmpfs over `folder` holding its files plus `room` bytes; skip without root."""
    saved = folder.with_name(f"{folder.name}.saved")
    shutil.copytree(folder, saved)
    used = sum(-(-p.stat().st_size // PAGE) * PAGE for p in saved.rglob("*") if p.is_file())
    result = run(["mount", "-t", "tmpfs", "-o", f"size={used + room}", "tmpfs", folder])
    if result.returncode != 0:
        shutil.rmtree(saved)
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        shutil.copytree(saved, folder, dirs_exist_ok=True)
        yield
    finally:
        if run(["umount", folder]).returncode != 0:
            run(["umount", "-l", folder])
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
