"""Atomic file output: write beside the target, fsync, rename.

A stage killed mid-write, or failing on a full disk, leaves either the previous file or the
new one in place, never half of one. Every output slimline writes goes through here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
# Below this many free bytes on the device, a failed write there is blamed on space: torch's
# and onnx's C++ writers raise RuntimeError with no errno when the disk is full.
LOW_SPACE = 1 << 20


class DiskFullError(OSError):
    """An output could not be written for lack of room: `DiskFullError(errno.ENOSPC, message)`,
    the message naming the folder."""

    def __str__(self) -> str:
        return str(self.strerror)


def _out_of_space(error: BaseException, folder: Path) -> bool:
    """Whether `error`, raised while an output was written into `folder`, means its device is
    full. Checked on the device itself: in a group of outputs on several devices, only the
    full one may be named."""
    if isinstance(error, DiskFullError) or not isinstance(error, OSError | RuntimeError):
        return False
    if isinstance(error, OSError) and error.errno != errno.ENOSPC:
        return False
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < LOW_SPACE


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `target`; on success it replaces `target`, else it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A killed run leaves its temp file behind; inside a DVC directory output it would
    # change the directory's hash, so the next write of the same target removes it.
    for stale in target.parent.glob(f".{target.name}.*"):
        stale.unlink(missing_ok=True)
    # keep the suffix: some writers (np.savez, onnx, matplotlib) choose a format from it
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp_path
        with tmp_path.open("rb+") as f:
            os.fsync(f.fileno())
        tmp_path.replace(target)
    except BaseException as e:
        full = _out_of_space(e, target.parent)  # before the unlink frees the partial file's room
        tmp_path.unlink(missing_ok=True)
        if full:
            raise DiskFullError(
                errno.ENOSPC,
                f"no space left on the device holding {target.parent}/ "
                f"({type(e).__name__}: {e}); the previous outputs are kept",
            ) from e
        raise


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    write_bytes(target, text.encode())


def write_json(target: str | Path, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


@contextlib.contextmanager
def atomic_paths(targets: Sequence[str | Path]) -> Iterator[list[Path]]:
    """Several outputs that must change together: all are written before any is renamed."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(t)) for t in targets]
