"""Two `slimline run` in one workspace at once (issue 8, item 21): the second says a run is in
progress, names its pid and exits 2 at once, touching nothing; the first completes unharmed."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.flows.cli import SLIMLINE, env, slimline
from tests.reliability.pipeline import outputs, visible

pytestmark = pytest.mark.slow


def test_a_second_run_is_refused_while_the_first_runs(project):
    before = visible(outputs(project))
    params = (project / "params.yaml").read_bytes()
    first = subprocess.Popen(
        [SLIMLINE, "run"],
        cwd=project,
        env=env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        holder = project / ".slimline" / "run.holder"
        deadline = time.monotonic() + 60
        while not holder.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert holder.exists(), "the first run never took the workspace"
        start = time.monotonic()
        # with an override: refused before params.yaml is rewritten
        second = slimline(project, "run", "-S", "benchmark.runs=11", timeout=60)
        refused_in = time.monotonic() - start
        assert first.poll() is None, "the first run ended before the second one started"
    finally:
        out, err = first.communicate(timeout=600)
    assert second.returncode == 2
    assert f"a run is already in progress (pid {first.pid}: slimline run)" in second.stderr
    assert refused_in < 15  # no Prefect server, no DVC: refused at once
    assert first.returncode == 0, out[-2000:] + err[-3000:]
    assert (project / "params.yaml").read_bytes() == params
    assert visible(outputs(project)) == before  # a no-op run: outputs byte-identical
    assert not holder.exists()  # released with the run
