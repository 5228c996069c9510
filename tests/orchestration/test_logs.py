"""Library chatter below INFO unless --verbose; DVC's bookkeeping lines told from a stage's own."""

import logging
import os

from slimline.core.env import VERBOSE_ENV
from slimline.orchestration.dvc_run import is_bookkeeping, log_lines
from slimline.orchestration.logs import CHATTY, library_levels


def test_library_loggers_are_quiet_unless_verbose(monkeypatch):
    monkeypatch.delenv("DASK_LOGGING__DISTRIBUTED", raising=False)
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    saved = {name: logging.getLogger(name).level for name in CHATTY}
    try:
        library_levels(verbose=False)
        assert all(logging.getLogger(n).level == logging.WARNING for n in CHATTY)
        assert os.environ["DASK_LOGGING__DISTRIBUTED"] == "warning"
        assert VERBOSE_ENV not in os.environ
        assert not logging.getLogger("prefect.flow_runs").isEnabledFor(logging.DEBUG)
        library_levels(verbose=True)
        assert logging.getLogger("distributed.scheduler").isEnabledFor(logging.INFO)
        assert os.environ[VERBOSE_ENV] == "1"
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        os.environ.pop(VERBOSE_ENV, None)


class Recorder:
    def __init__(self):
        self.lines = []

    def info(self, line):
        self.lines.append(("info", line))

    def debug(self, line):
        self.lines.append(("debug", line))


def test_a_stage_line_is_info_and_dvc_bookkeeping_is_debug(monkeypatch):
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    lines = [
        "Running stage 'prune':",
        "> python stages/prune.py",
        "[prune] pruned: 1,442 -> 486 params, test accuracy 0.7417",
        "Updating lock file 'dvc.lock'",
        "",
        "Use `dvc push` to send your updates to remote storage.",
        "Stage 'prepare' didn't change, skipping",
        "ERROR: failed to reproduce 'prune': exited with 2",
    ]
    log = Recorder()
    for line in lines:
        log_lines(log)(line)
    shown = [line for level, line in log.lines if level == "info"]
    assert shown == [lines[2], lines[6], lines[7]]
    assert is_bookkeeping("  dvc exp apply <exp>") and not is_bookkeeping("error: x")
    monkeypatch.setenv(VERBOSE_ENV, "1")
    verbose = Recorder()
    log_lines(verbose)(lines[3])
    assert verbose.lines == [("info", lines[3])]
