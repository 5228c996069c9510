"""The DVC runner: stage order from dvc.yaml, DVC's words parsed, and a timeout that takes the
whole process group down (Prefect's own timeout would leave the child running)."""

from __future__ import annotations

import contextlib
import os
import time

import psutil
import pytest

from slimline.orchestration import dvc_run
from tests.support.project import make_project
from tests.support.workspace import STAGES


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_a_timeout_kills_the_command_and_its_children(tmp_path):
    # the shell's child (a grandchild of ours) is what a plain Popen timeout would leave behind
    start = time.monotonic()
    done = dvc_run.run(["sh", "-c", "sleep 600 & echo $!; wait"], tmp_path, timeout=1)
    assert done.timed_out and done.exit_code == 1
    # sh ignores SIGINT for its background child: SIGTERM after one grace period gets it. Killed,
    # not waited for: that would take 600 s; the bound is far from both (no timing on load)
    assert time.monotonic() - start < 300
    # the grandchild holds the pipe too: the output ends as it exits, a moment before the
    # kernel reports it gone; wait for that exit (psutil waits on the pid, no polling)
    grandchild = int(done.lines[0])
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(grandchild).wait(timeout=10)
    assert not alive(grandchild)


def stages_script(*seconds: float) -> list[str]:
    """A command that says `Running stage 'sN':` as DVC does, then works `seconds[N]`."""
    steps = "; ".join(f"echo \"Running stage 's{i}':\"; sleep {t}" for i, t in enumerate(seconds))
    return ["sh", "-c", steps]


def test_a_stage_timeout_kills_the_stage_that_ran_past_it_and_names_it(tmp_path):
    # one stage of a many-stage command (a sweep candidate's `dvc exp run`) hangs
    done = dvc_run.run(stages_script(0, 600), tmp_path, timeout=None, stage_timeout=1)
    assert done.timed_out and done.late_stage == "s1" and done.exit_code == 1
    assert done.lines[:2] == ["Running stage 's0':", "Running stage 's1':"]


def test_the_stage_clock_restarts_with_each_stage(tmp_path):
    # together longer than one stage's limit, each well within it: nothing is killed
    done = dvc_run.run(stages_script(0.8, 0.8, 0.8, 0.8), tmp_path, timeout=None, stage_timeout=2.5)
    assert not done.timed_out and done.late_stage == "" and done.returncode == 0
    # the whole command's own limit still holds, and is not a stage's
    whole = dvc_run.run(stages_script(0, 600), tmp_path, timeout=1, stage_timeout=300)
    assert whole.timed_out and whole.late_stage == ""


def test_output_is_streamed_line_by_line_with_stderr_merged(tmp_path):
    seen: list[str] = []
    done = dvc_run.run(
        ["sh", "-c", "echo one; echo two >&2; exit 3"], tmp_path, timeout=10, on_line=seen.append
    )
    assert seen == ["one", "two"] == done.lines
    assert done.returncode == 3 and done.exit_code == 1 and not done.timed_out


def test_a_stage_that_exited_2_keeps_its_code_and_its_own_message():
    lines = [
        "Running stage 'prepare':",
        "> python stages/prepare.py",
        "error: data/raw/x.npz: not a readable .npz; expected numpy.savez output",
        "ERROR: failed to reproduce 'prepare': failed to run: python stages/prepare.py, "
        "exited with 2",
    ]
    done = dvc_run.Completed(["dvc"], 255, 1.0, lines)
    assert done.exit_code == 2
    assert done.stage_error() == "data/raw/x.npz: not a readable .npz; expected numpy.savez output"
    crash = dvc_run.Completed(["dvc"], 255, 1.0, ["Traceback ...", "exited with 1"])
    assert crash.exit_code == 1 and "Traceback" in crash.stage_error()


def test_ran_or_cached_comes_from_dvc_own_words():
    assert dvc_run.stage_status(["Running stage 'prune':", "> python"], "prune") == "ran"
    assert dvc_run.stage_status(["Stage 'prune' didn't change, skipping"], "prune") == "cached"
    restored = ["Stage 'prune' is cached - skipping run, checking out outputs"]
    assert dvc_run.stage_status(restored, "prune") == "cached"


def test_stage_order_and_status_come_from_dvc(tmp_path):
    project = make_project(tmp_path / "project")
    assert dvc_run.stage_order(project) == STAGES
    # nothing ran yet: DVC reports every stage as changed
    assert dvc_run.changed_stages(project, env=os.environ | {"DVC_NO_ANALYTICS": "1"}) == set(
        STAGES
    )


def test_each_stage_knows_every_stage_upstream_of_it(tmp_path):
    project = make_project(tmp_path / "project")
    upstreams = dvc_run.stage_upstreams(project)
    assert list(upstreams) == STAGES
    assert upstreams["prepare"] == []
    assert upstreams["prune"] == ["prepare", "train_teacher", "distill"]
    assert set(upstreams["benchmark"]) >= {"prepare", "quantize", "export"}


def test_prefetched_answers_are_dvcs_and_are_taken_once(tmp_path):
    project = make_project(tmp_path / "project")
    (project / "elsewhere").mkdir()
    dvc_run.prefetch(project / "elsewhere" / "..")  # the same project, named another way

    def compute(root):
        raise AssertionError(f"asked again for {root}: the prefetched answer was not used")

    assert dvc_run.prefetched("order", project, compute) == STAGES
    assert dvc_run.prefetched("changed", project, compute) == set(STAGES)
    # taken once: a second flow in the same process asks DVC again
    assert dvc_run.prefetched("order", project, lambda root: ["asked again"]) == ["asked again"]


def test_a_prefetch_that_failed_raises_where_its_answer_is_taken(tmp_path):
    project = make_project(tmp_path / "project")
    (project / "dvc.yaml").write_text("stages: [not, a, mapping]\n")
    dvc_run.prefetch(project)
    with pytest.raises(Exception, match="dvc.yaml"):
        dvc_run.prefetched("order", project, lambda root: STAGES)


def test_imports_are_found_and_an_update_says_what_changed(tmp_path):
    # the flow's `dvc update` step (update_imports) on a local source: the same code path as a
    # bucket's (tests/stack/), without the stack
    project = make_project(tmp_path / "project")
    source = tmp_path / "source.csv"
    source.write_text("a,b\n1,2\n")
    env = os.environ | {"DVC_NO_ANALYTICS": "1"}

    def dvc(*args: str) -> dvc_run.Completed:
        return dvc_run.run(dvc_run.dvc_argv(*args), project, timeout=120, env=env)

    assert dvc_run.import_files(project) == []
    assert dvc("import-url", str(source), "data/raw/table.csv").exit_code == 0
    assert dvc_run.import_files(project) == ["data/raw/table.csv.dvc"]
    # stages with a command are the steps; an import is data
    assert dvc_run.stage_order(project) == STAGES

    unchanged = dvc("update", "data/raw/table.csv.dvc")
    assert dvc_run.updated_imports(unchanged.lines) == []
    source.write_text("a,b\n1,2\n3,4\n")  # new data at the source
    updated = dvc("update", "data/raw/table.csv.dvc")
    assert dvc_run.updated_imports(updated.lines) == ["data/raw/table.csv"]
    assert (project / "data/raw/table.csv").read_text() == source.read_text()


def test_a_discarded_prefetch_is_asked_again(tmp_path):
    project = make_project(tmp_path / "project")
    dvc_run.prefetch(project)
    dvc_run.discard_prefetched("changed", project)  # an import was updated since
    assert dvc_run.prefetched("changed", project, lambda root: {"asked again"}) == {"asked again"}
    dvc_run.discard_prefetched("order", project)
