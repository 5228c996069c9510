"""The guard takes its process group down when whoever started it dies, SIGKILL included, and
otherwise only runs its command: same output, same exit code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil

from slimline.orchestration import guard
from tests.support.waiting import wait_for

# a parent that starts, under the guard, a command whose child leaves a grandchild behind
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    from slimline.orchestration import guard
    work = [sys.executable, "-c",
            "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(300)']); time.sleep(300)"]
    proc = subprocess.Popen(guard.command(work), start_new_session=True)
    print(proc.pid, flush=True)
    time.sleep(300)
    """
)


def group(pgid: int) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (OSError, psutil.Error):
            continue
    return found


def test_a_sigkilled_parent_takes_the_guarded_group_with_it():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        leader = int(parent.stdout.readline())
        wait_for(lambda: len(group(leader)) >= 3, timeout=60, what="guard, command, grandchild")
        parent.send_signal(signal.SIGKILL)  # no handler runs: only the guard can notice
        parent.wait()
        gone = wait_for(lambda: not group(leader), timeout=30, what="the group to end")
        assert gone
    finally:
        parent.kill()
        for p in group(leader):
            p.kill()


def test_the_guard_passes_output_and_exit_code_through(tmp_path):
    script = "import sys; print('said'); sys.exit(3)"
    done = subprocess.run(guard.command([sys.executable, "-c", script]), capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert (done.returncode, done.stdout) == (3, "said\n")


def test_a_guard_whose_parent_is_already_gone_starts_nothing(tmp_path):
    marker = tmp_path / "ran"
    cmd = [sys.executable, "-m", "slimline.orchestration.guard", "1", "--", "touch", str(marker)]
    done = subprocess.run(cmd, timeout=60, check=False)
    assert done.returncode == 128 + signal.SIGTERM and not marker.exists()
