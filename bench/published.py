"""What the hand-run benchmarks share: a child Python run natively or on an emulated AVX2-only
CPU, and a result written as a markdown page (printed too) and as JSON in bench/results/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# an AVX2-only CPU (no AVX-512, no VNNI) seen from any x86-64 machine (qemu-user's Haswell model)
HASWELL = ["qemu-x86_64", "-cpu", "Haswell"]


def python(args: list[str], haswell: bool = False) -> str:
    """This venv's Python with `args`, natively or under qemu Haswell, one OpenMP thread; its
    stdout."""
    done = subprocess.run([*(HASWELL if haswell else []), sys.executable, *args],
                          capture_output=True, text=True, check=True,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})  # fmt: skip
    return done.stdout


def table_head(columns: list[str]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]


def publish(name: str, lines: list[str], payload: dict) -> None:
    """Print the page and write bench/results/<name>.md and <name>.json."""
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2))
