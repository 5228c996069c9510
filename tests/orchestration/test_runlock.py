"""One run per workspace: a second process is refused at once, naming the holder."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from slimline.orchestration.runlock import RunInProgress, holder, lock_path, workspace_lock
from tests.support.processes import run

TRY = textwrap.dedent("""
    import sys
    from pathlib import Path
    from slimline.orchestration.runlock import RunInProgress, workspace_lock
    try:
        with workspace_lock(Path(sys.argv[1]), "second"):
            print("acquired")
    except RunInProgress as e:
        print(e)
        sys.exit(2)
""")


def second_process(root) -> subprocess.CompletedProcess:
    return run([sys.executable, "-c", TRY, str(root)], timeout=60)


def test_a_second_process_is_refused_while_the_first_holds_the_workspace(tmp_path):
    with workspace_lock(tmp_path, "slimline run"):
        refused = second_process(tmp_path)
        assert refused.returncode == 2
        assert "a run is already in progress" in refused.stdout
        assert f"pid {__import__('os').getpid()}: slimline run" in refused.stdout
    assert second_process(tmp_path).stdout.strip() == "acquired"
    assert holder(tmp_path) == "pid unknown"  # the note goes with the lock


def test_the_lock_is_reentrant_in_one_process(tmp_path):
    # the CLI takes it before Prefect starts, then the flow it calls takes it again
    with workspace_lock(tmp_path, "cli"):
        with workspace_lock(tmp_path, "flow"):
            assert lock_path(tmp_path).exists()
            assert holder(tmp_path).endswith(": cli")  # the outermost hold names the run
        # the inner exit keeps the hold (and its note): another process is still refused
        assert holder(tmp_path).endswith(": cli")
        assert second_process(tmp_path).returncode == 2
    assert holder(tmp_path) == "pid unknown"
    with workspace_lock(tmp_path):
        pass


def test_a_flow_in_another_thread_shares_the_hold(tmp_path):
    import threading

    seen = []

    def flow() -> None:
        with workspace_lock(tmp_path, "flow"):
            seen.append(holder(tmp_path))

    with workspace_lock(tmp_path, "cli"):
        thread = threading.Thread(target=flow)
        thread.start()
        thread.join()
    assert seen and seen[0].endswith(": cli")


def test_refusal_is_bad_input_for_the_exit_code(tmp_path):
    from slimline.core.errors import InputError

    assert issubclass(RunInProgress, InputError)
    with workspace_lock(tmp_path), pytest.raises(RunInProgress):
        raise RunInProgress("x")
