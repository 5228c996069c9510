"""`reproducible`: the stage shell pins torch's CPU kernels before their first use."""

from __future__ import annotations

import os
import sys

import pytest

from slimline.core import kernels
from tests.support.imports import STAGES
from tests.support.paths import ROOT
from tests.support.processes import check, run

# Each stage module is imported as DVC runs it; then a capability other than the machine's
# is asked for. Torch reads ATEN_CPU_CAPABILITY at its first kernel: if an import ran one,
# the request is ignored and the pins the stage shell sets after its imports would be too.
PROBE = """
import importlib.util, os, sys
for stage in sys.argv[1:]:
    spec = importlib.util.spec_from_file_location(stage, f"stages/{stage}.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
os.environ["ATEN_CPU_CAPABILITY"] = "default"
import torch
print(torch.backends.cpu.get_cpu_capability())
"""


def test_no_stage_module_runs_a_torch_kernel_on_import():
    env = {k: v for k, v in os.environ.items() if k not in kernels.PINS}
    done = check(run([sys.executable, "-c", PROBE, *STAGES], ROOT, env=env))
    assert done.stdout.split()[-1] == "DEFAULT", done.stderr


def test_pins_are_set_only_when_reproducible_and_never_over_the_users(monkeypatch):
    if not kernels.pinnable():
        pytest.skip("not an x86-64 CPU with AVX2")
    for key in kernels.PINS:  # setenv first: monkeypatch then restores what pinning sets
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    kernels.pin_cpu_kernels(False)
    assert all(k not in os.environ for k in kernels.PINS)
    monkeypatch.setenv("MKL_CBWR", "AUTO")  # the user's own setting wins
    kernels.pin_cpu_kernels(True)
    assert {k: os.environ[k] for k in kernels.PINS} == kernels.PINS | {"MKL_CBWR": "AUTO"}
