"""One run at a time per workspace: `slimline run`, a scheduled flow run and a sweep all write
params.yaml, outputs or dvc.lock, so a second one must stop at once instead of interleaving.

An OS file lock (released by the kernel if the holder dies: no stale lock after a SIGKILL) on
`.slimline/run.lock`, plus a note saying who holds it. Reentrant within a process: the CLI
takes it before Prefect starts (so a refusal is instant) and the flow it calls takes it again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from slimline.core.errors import InputError

LOCK_DIR = ".slimline"


class RunInProgress(InputError):
    """Another run holds the workspace (exit 2: nothing was started, nothing was touched)."""


def lock_path(root: Path) -> Path:
    return Path(root).resolve() / LOCK_DIR / "run.lock"


@contextlib.contextmanager
def workspace_lock(root: Path, what: str = "slimline run") -> Iterator[None]:
    """Hold the workspace for the block, or raise `RunInProgress` naming the holder's pid."""
    from filelock import FileLock, Timeout

    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    # is_singleton: every call in this process gets the same lock, whose hold counter makes it
    # reentrant; thread_local=False: a flow running in another thread shares the CLI's hold
    lock = FileLock(path, timeout=0, thread_local=False, is_singleton=True)
    try:
        lock.acquire()
    except Timeout:
        raise RunInProgress(
            f"a run is already in progress ({holder(root)}); wait for it to finish (lock: {path})"
        ) from None
    try:
        if lock.lock_counter == 1:  # the outermost hold writes the note
            _note(root).write_text(f"pid {os.getpid()}: {what}\n")
        yield
    finally:
        if lock.lock_counter == 1:  # and takes it away just before the kernel lock goes
            _note(root).unlink(missing_ok=True)
        lock.release()


def holder(root: Path) -> str:
    """`pid N: command` of the current holder (written just after it took the lock)."""
    try:
        return _note(root).read_text().strip() or "pid unknown"
    except OSError:
        return "pid unknown"


def _note(root: Path) -> Path:
    return lock_path(root).with_name("run.holder")
