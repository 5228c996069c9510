"""Stopping a command's whole process tree: its group, a descendant in a session of its own,
an orphan left behind by a leader that already exited, and one that ignores the polite signal."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from slimline.orchestration.processes import members, stop_tree

# a parent that starts a child in its own group and one in a new session, prints the pids,
# then waits (or, with "exit", leaves its children behind)
PARENT = textwrap.dedent("""
    import signal, subprocess, sys
    wait = [sys.executable, "-c", "import signal; signal.pause()"]
    same = subprocess.Popen(wait)
    own = subprocess.Popen(wait, start_new_session=True)
    print(same.pid, own.pid, flush=True)
    if sys.argv[1:] != ["exit"]:
        signal.pause()
""")
STUBBORN = textwrap.dedent("""
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    signal.pause()
""")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start(*argv: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", *argv], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline()  # the child is set up once it has printed


@pytest.fixture
def cleanup():
    """Whatever a failing test leaves running is killed (pids registered by the test)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


def test_parent_and_children_in_and_out_of_its_group_are_all_dead_afterwards(cleanup):
    proc, line = start(PARENT)
    same, own = map(int, line.split())
    cleanup += [proc.pid, same, own]
    assert {p.pid for p in members(proc.pid)} == {proc.pid, same, own}
    stop_tree(proc, grace=30)
    assert not any(alive(pid) for pid in (proc.pid, same, own))
    assert proc.returncode == -signal.SIGTERM  # reaped through Popen: its code is kept
    assert members(proc.pid) == []


def test_an_orphan_of_a_leader_that_already_exited_is_stopped(cleanup):
    proc, line = start(PARENT, "exit")
    same, own = map(int, line.split())
    cleanup += [same, own]
    proc.wait(timeout=60)
    assert alive(same)  # still in the group, its parent gone
    stop_tree(proc, grace=30)
    assert not alive(same)
    assert alive(own)  # a new session of an exited parent: no longer part of its tree
    psutil.Process(own).kill()


def test_what_ignores_the_polite_signal_is_killed_after_the_grace(cleanup):
    proc, line = start(STUBBORN)
    cleanup.append(proc.pid)
    assert line.strip() == "ready"
    stop_tree(proc, (signal.SIGTERM, signal.SIGKILL), grace=0.5)
    assert proc.returncode == -signal.SIGKILL


def test_a_finished_command_needs_no_signal():
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    proc.wait(timeout=60)
    stop_tree(proc)  # returns at once: nothing left
    assert proc.returncode == 0
