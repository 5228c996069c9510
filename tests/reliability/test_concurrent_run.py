"""Two `slimline run` in one workspace at once (issue 8, item 21): the second says a run is in
progress, names its pid and exits 2 at once, touching nothing; the first completes unharmed."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.cli import SLIMLINE, env, slimline
from tests.support.outputs import outputs, visible
from tests.support.waiting import wait_for

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
        wait_for(lambda: holder.exists() or first.poll() is not None, timeout=300,
                 what="the first run to take the workspace")  # fmt: skip
        assert holder.exists(), "the first run never took the workspace"
        # with an override: refused before params.yaml is rewritten
        second = slimline(project, "run", "-S", "benchmark.runs=11", timeout=300)
        assert first.poll() is None, "the first run ended before the second one was refused"
    finally:
        out, err = first.communicate(timeout=600)
    assert second.returncode == 2
    # refused at once: one line, and nothing of Prefect, DVC or params.yaml's rewrite before it
    assert second.stdout == ""
    [line] = second.stderr.strip().splitlines()
    assert line.startswith(f"error: a run is already in progress (pid {first.pid}: slimline run)")
    assert first.returncode == 0, out[-2000:] + err[-3000:]
    assert (project / "params.yaml").read_bytes() == params
    assert visible(outputs(project)) == before  # a no-op run: outputs byte-identical
    assert not holder.exists()  # released with the run
