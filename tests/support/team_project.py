"""The project the stack runs, set up as docs/orchestration.md says: tiny params, the raw
data imported from the stack's bucket (`dvc import-url`), DVC's remote in the same store."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from sklearn.datasets import load_digits

from tests.support import processes
from tests.support.processes import git, run
from tests.support.project import make_project
from tests.support.stack import SETTINGS, Stack

DATA_KEY = "raw/digits.npz"  # in the data bucket
DATA = "data/raw/digits.npz"  # in the project


def put_digits(stack: Stack, n: int) -> str:
    """New objects land in the bucket: the first `n` digits as the team's raw data; their MD5."""
    x, y = load_digits(return_X_y=True)
    buf = io.BytesIO()
    np.savez(buf, x=x[:n].reshape(-1, 8, 8), y=y[:n])
    bucket = SETTINGS["s3"]["buckets"]["data"]
    stack.s3().put_object(Bucket=bucket, Key=DATA_KEY, Body=buf.getvalue())
    return hashlib.md5(buf.getvalue()).hexdigest()


def dvc(project: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`dvc ARGS` in `project` with the stack's client environment; asserted to succeed unless
    `check` is false."""
    done = run([sys.executable, "-m", "dvc", *args], project, env=env, timeout=180)
    return processes.check(done) if check else done


def make_team_project(stack: Stack, project: Path) -> None:
    make_project(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"] |= {"source": "npz", "path": DATA}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = stack.client_env(project)
    s3 = SETTINGS["s3"]
    put_digits(stack, 1200)
    remote = f"s3://{s3['buckets']['dvc']}/{s3['dvc_prefix']}"
    dvc(project, env, "remote", "add", "-d", "team", remote)
    dvc(project, env, "import-url", f"s3://{s3['buckets']['data']}/{DATA_KEY}", DATA)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "team project")
