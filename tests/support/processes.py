"""Child processes for tests: the one way a test runs a command to its end (`run`), the
environment the project's tools get (`tool_env`), git with a test identity, a stage run as DVC
runs it.

A process the test talks to while it runs (killed mid-stage, a server) is a `subprocess.Popen`
of its own; everything that runs to completion goes through `run`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.support.paths import ROOT

GIT = ["git", "-c", "user.name=slimline-tests", "-c", "user.email=tests@localhost"]


def tool_env(**extra: str) -> dict[str, str]:
    """This process's environment with the venv's tools first on PATH, as `make` runs them
    (DVC stages run `python`: the venv's), CI=true (no progress bars), and `extra` on top."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "CI": "true", "PATH": path, **extra}


def run(
    cmd: Sequence[str | Path],
    cwd: Path | None = None,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in `cwd` to its end, stdout and stderr captured as text; `env` defaults to
    `tool_env()`. The exit status is never checked here: the test asserts on `returncode`,
    with the output in its message (or calls `check`). Past `timeout` seconds the child is
    killed and TimeoutExpired raised: a safety net for a hung run, never a measurement."""
    return subprocess.run(
        [str(part) for part in cmd],
        cwd=cwd,
        env=tool_env() if env is None else env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def check(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """`done`, asserted to have exited 0: the failure names the command and shows the end of
    its output."""
    assert done.returncode == 0, (
        f"{' '.join(map(str, done.args))} exited {done.returncode}\n"
        f"{(done.stdout or '')[-2000:]}{(done.stderr or '')[-3000:]}"
    )
    return done


def git(root: Path, *args: str) -> str:
    """`git ARGS` in `root` as the tests' own author, which must succeed; its stdout."""
    return check(run([*GIT, *args], root, timeout=120)).stdout


def run_stage(stage: str, params: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """stages/STAGE.py on `params`, from the params file's folder, as DVC runs it."""
    script = ROOT / "stages" / f"{stage}.py"
    return run([sys.executable, script, "--params", params], params.parent, timeout=timeout)
