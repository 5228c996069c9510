"""Child processes for tests: a stage run as DVC runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT


def run_stage(stage: str, params: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "true"}
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / f"{stage}.py"), "--params", str(params)],
        cwd=params.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
