"""The stage shell (core/stage.py): exit codes and one message, and a write refused for lack of
room, for real and without root: a file-size limit (RLIMIT_FSIZE) makes the write fail with
EFBIG in a child process, as a full disk or a quota would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.processes import run

STAGE = textwrap.dedent("""
    import resource, signal, sys
    from pathlib import Path

    from slimline.core.atomic import atomic_paths, write_bytes
    from slimline.core.errors import InputError
    from slimline.core.stage import run_stage

    how, size = sys.argv[1], int(sys.argv[2])
    sys.argv[1:] = ["--params", "params.yaml"]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead


    def body(params, root: Path) -> str:
        if how == "bad-input":
            raise InputError("data.path: nope.npz: file not found")
        if how == "crash":
            raise ZeroDivisionError("a bug")
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))  # params are read
        write_bytes(root / "small.json", b"{}")  # under the limit: fine
        with atomic_paths([root / "report.json", root / "model.bin"]) as (report, model):
            report.write_bytes(b"new report")
            model.write_bytes(b"w" * size)  # over the limit: EFBIG
        return "wrote everything"


    run_stage("demo", body)
""")


def run_demo(root: Path, how: str, size: int = 0) -> subprocess.CompletedProcess:
    return run([sys.executable, "-c", STAGE, how, str(size)], root, timeout=300)


def project(tmp_path: Path) -> Path:
    from tests.support.params import write_params

    write_params(tmp_path / "params.yaml")
    (tmp_path / "report.json").write_bytes(b"previous report")
    (tmp_path / "model.bin").write_bytes(b"previous model")
    return tmp_path


def outputs(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.name != "params.yaml"}


def test_a_write_over_the_file_size_limit_exits_1_and_keeps_the_previous_outputs(tmp_path):
    root = project(tmp_path)
    result = run_demo(root, "write", size=1 << 20)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: stage demo: File too large while writing its outputs; the previous outputs are kept"
    )
    assert "Traceback" not in result.stderr
    # both outputs of the group kept (the report's new temp was complete, yet not renamed), no
    # temp file left; the write that fit went through
    assert outputs(root) == {
        "model.bin": b"previous model",
        "report.json": b"previous report",
        "small.json": b"{}",
    }


def test_the_same_stage_under_the_limit_writes_everything(tmp_path):
    root = project(tmp_path)
    result = run_demo(root, "write", size=1000)
    assert result.returncode == 0, result.stderr
    assert "[demo] wrote everything" in result.stderr
    assert outputs(root) == {
        "model.bin": b"w" * 1000,
        "report.json": b"new report",
        "small.json": b"{}",
    }


def test_bad_input_exits_2_with_one_line_and_a_crash_exits_1_with_its_traceback(tmp_path):
    root = project(tmp_path)
    bad = run_demo(root, "bad-input")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: data.path: nope.npz: file not found"
    crash = run_demo(root, "crash")
    assert crash.returncode == 1
    assert "Traceback" in crash.stderr and "ZeroDivisionError: a bug" in crash.stderr
    assert crash.stderr.strip().splitlines()[-1] == (
        "error: stage demo failed (see the traceback above)"
    )
    assert outputs(root) == {"model.bin": b"previous model", "report.json": b"previous report"}
