"""Stopping what a command started, as a whole: the command's process group (a child started
with `start_new_session=True` leads a group of its own, which its children join) plus any
descendant that left the group. Each signal in turn (the polite ones first, SIGKILL last) until
nothing is left; psutil says who is still alive and waits on them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence

import psutil

POLITE_THEN_KILL = (signal.SIGTERM, signal.SIGKILL)


def members(leader: int) -> list[psutil.Process]:
    """Live processes of the group `leader` leads, and `leader`'s live descendants in other
    groups. Zombies are not counted: they are dead, only not reaped yet."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError):
            if os.getpgid(proc.pid) == leader:
                found[proc.pid] = proc
    with contextlib.suppress(psutil.Error):
        for proc in psutil.Process(leader).children(recursive=True):
            found.setdefault(proc.pid, proc)
    return [proc for proc in found.values() if _alive(proc)]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_tree(
    proc: subprocess.Popen,
    signals: Sequence[signal.Signals] = POLITE_THEN_KILL,
    grace: float = 5.0,
) -> None:
    """Send each of `signals` to `proc`'s group and descendants, waiting up to `grace` seconds
    after each for all of them to exit; return as soon as none is left. `proc` must have been
    started with `start_new_session=True`; it is reaped through Popen, so its returncode stays."""
    for sig in signals:
        others = [p for p in members(proc.pid) if p.pid != proc.pid]
        if proc.poll() is not None and not others:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        for other in others:  # a descendant that started a session of its own
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(other.pid) != proc.pid:
                    other.send_signal(sig)
        deadline = time.monotonic() + grace
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        # never psutil's wait on proc itself: it would reap our child behind Popen's back
        psutil.wait_procs(others, timeout=max(0.0, deadline - time.monotonic()))
