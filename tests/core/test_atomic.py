"""Atomic outputs (core/atomic.py): a target holds its old bytes or its new ones, never half,
and a failed write leaves nothing behind."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from slimline.core import atomic
from slimline.core.atomic import (
    DiskFullError,
    atomic_path,
    atomic_paths,
    read_json,
    write_bytes,
    write_json,
)
from tests.support.processes import check, run


class Boom(Exception):
    """A writer's failure, raised halfway through an output."""


def leftovers(folder: Path) -> list[str]:
    """Hidden files (the writer's temps are `.<name>.XXXX<suffix>`) left in `folder`."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_success_replaces_the_target_by_a_rename(tmp_path):
    target = tmp_path / "out" / "model.bin"  # the folder is made on demand
    write_bytes(target, b"old")
    old_inode = target.stat().st_ino
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".bin"  # writers pick by suffix
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # nothing visible before the body ends
    assert target.read_bytes() == b"new"
    assert target.stat().st_ino != old_inode  # a new file renamed over, not rewritten in place
    assert leftovers(target.parent) == []


def test_json_is_written_sorted_and_reads_back(tmp_path):
    write_json(tmp_path / "m.json", {"b": 1, "a": [0.5]})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": [\n    0.5\n  ],\n  "b": 1\n}\n'
    assert read_json(tmp_path / "m.json") == {"a": [0.5], "b": 1}


def test_a_failed_write_keeps_the_previous_file_and_removes_its_temp(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("previous")
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise Boom
    assert target.read_text() == "previous"
    assert leftovers(tmp_path) == []


def test_a_failed_first_write_leaves_no_target_and_no_temp(tmp_path):
    target = tmp_path / "new.onnx"
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_is_cleaned_up_too(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("new")
        raise KeyboardInterrupt  # Ctrl-C mid-write is a BaseException, not an Exception
    assert target.read_text() == "old" and leftovers(tmp_path) == []


def test_stale_temps_of_the_same_target_are_removed_and_others_kept(tmp_path):
    target = tmp_path / "train.npz"
    stale = [tmp_path / ".train.npz.k1ll3d.npz", tmp_path / ".train.npz.abc"]
    keep = [tmp_path / ".test.npz.k1ll3d.npz", tmp_path / ".gitignore", tmp_path / "train.npz.bak"]
    for path in stale + keep:
        path.write_bytes(b"x")
    write_bytes(target, b"fresh")
    assert target.read_bytes() == b"fresh"
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in keep)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_the_mode_is_that_of_a_plain_open_under_the_umask(tmp_path, umask, mode):
    # the module reads the umask once, at import: set it in a fresh process first
    code = (
        "import os, sys; os.umask(int(sys.argv[2], 8));"
        "from slimline.core.atomic import write_text; write_text(sys.argv[1], 'x');"
        "open(sys.argv[1] + '.plain', 'w').close()"
    )
    target = tmp_path / "out.txt"
    check(run([sys.executable, "-c", code, target, oct(umask)]))
    assert target.stat().st_mode & 0o777 == mode  # not mkstemp's 0600
    assert Path(f"{target}.plain").stat().st_mode & 0o777 == mode


def test_atomic_paths_renames_all_or_nothing(tmp_path):
    a, b = tmp_path / "report.json", tmp_path / "table.md"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(Boom), atomic_paths([a, b]) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("half of new b")
        raise Boom
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert leftovers(tmp_path) == []
    with atomic_paths([a, b]) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")
        assert (a.read_text(), b.read_text()) == ("old a", "old b")  # written, not yet renamed
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert leftovers(tmp_path) == []


@pytest.fixture
def device_free(monkeypatch):
    """Set how many bytes the device of any folder reports free (os.statvfs, as atomic sees it)."""

    def set_free(free: int) -> None:
        real = os.statvfs

        class Stat:
            def __init__(self, path):
                self._st = real(path)
                self.f_frsize = 4096
                self.f_bavail = free // 4096

            def __getattr__(self, name):
                return getattr(self._st, name)

        monkeypatch.setattr(atomic.os, "statvfs", Stat)

    return set_free


def test_no_space_becomes_disk_full_naming_the_folder(tmp_path, device_free):
    device_free(4096)
    folder = tmp_path / "models" / "onnx"
    target = folder / "teacher.onnx"
    write_bytes(target, b"old")
    with pytest.raises(DiskFullError) as caught, atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    error = caught.value
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC
    assert str(error) == (
        f"no space left on the device holding {folder}/ "
        "(OSError: [Errno 28] No space left on device); the previous outputs are kept"
    )
    assert target.read_bytes() == b"old" and leftovers(folder) == []


def test_a_writer_without_errno_on_a_full_device_is_disk_full_too(tmp_path, device_free):
    device_free(0)  # torch's and onnx's C++ writers raise a bare RuntimeError
    expected = rf"holding {tmp_path}/ \(RuntimeError: write failed\)"
    with pytest.raises(DiskFullError, match=expected), atomic_path(tmp_path / "m.pt"):
        raise RuntimeError("write failed")


def test_errors_on_a_device_with_room_are_not_blamed_on_space(tmp_path, device_free):
    device_free(10 << 30)
    with pytest.raises(OSError) as caught, atomic_path(tmp_path / "x.json"):
        raise OSError(errno.ENOSPC, "No space left on device")  # out of inodes, say
    assert not isinstance(caught.value, DiskFullError)
    device_free(0)
    with pytest.raises(OSError) as caught, atomic_path(tmp_path / "x.json"):
        raise OSError(errno.EACCES, "Permission denied")  # full, but that is not why it failed
    assert not isinstance(caught.value, DiskFullError) and caught.value.errno == errno.EACCES
    with pytest.raises(ValueError), atomic_path(tmp_path / "x.json"):
        raise ValueError("a bug, not the disk")
    assert leftovers(tmp_path) == []
