"""Run a command and take its whole process group down when the process that started it dies.

`python -m slimline.orchestration.guard PID -- CMD ...` is what slimline starts instead of CMD for
the work it owns (Prefect's temporary server, each `dvc repro` / `dvc exp run`), as the leader
of a new process group: CMD and everything it starts join that group. If `slimline` is killed,
however it dies (SIGKILL and the OOM killer included, which no handler sees), its children are
re-parented; the guard notices its parent changed, sends the group SIGTERM, then SIGKILL after
a grace period, and exits. Otherwise it only waits for CMD and exits with its code.

Polling the parent, not Linux's parent-death signal: that signal follows the *thread* that
started the child, and slimline starts stages from Prefect's and Dask's worker threads, whose
end must not stop a stage. Standard library only: it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL = 0.5  # seconds between looks at the parent
GRACE = 10.0  # seconds between SIGTERM and SIGKILL for the group


def stop_group(grace: float = GRACE) -> None:
    """SIGTERM to this process group (the guard keeps running), then SIGKILL once `grace`
    seconds passed with members left; the guard dies with the SIGKILL."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    group = os.getpgrp()
    os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _others(group):
        time.sleep(0.1)
    os.killpg(group, signal.SIGKILL)


def _others(group: int) -> bool:
    """Whether a process other than this one is alive in `group` (zombies are reaped)."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == me:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:  # state, ppid, pgrp
            return True
    return False


def main(argv: list[str]) -> int:
    if len(argv) < 3 or not argv[0].isdigit() or argv[1] != "--":
        print("usage: python -m slimline.orchestration.guard PARENT_PID -- CMD [ARGS...]",
              file=sys.stderr)  # fmt: skip
        return 2
    parent = int(argv[0])  # given, not read: the parent may be gone before this line runs
    if os.getppid() != parent:
        return 128 + signal.SIGTERM
    child = subprocess.Popen(argv[2:])  # same process group: the one the guard leads
    # a polite stop of the guard (dvc_run's timeout, a cancelled run) stops the whole group
    signal.signal(signal.SIGTERM, lambda *_: stop_group())
    while True:
        try:
            code = child.wait(timeout=POLL)
            return code if code >= 0 else 128 - code
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:  # re-parented: whoever started us is gone
                stop_group()


def command(argv: list[str]) -> list[str]:
    """`argv` run under the guard by this interpreter."""
    return [sys.executable, "-m", "slimline.orchestration.guard", str(os.getpid()), "--", *argv]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
