"""DVC as the orchestrator sees it: the stage order, what changed, and one command run safely.

The flows never re-implement the DAG or the cache: the order comes from dvc.yaml (DVC's own
graph) and every decision to run or skip is DVC's. A command runs in its own session so that a
timeout or Ctrl+C can kill the whole process group (DVC and the stage's python under it):
Prefect's own task timeout does not kill a child process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimline.core.env import VERBOSE_ENV
from slimline.orchestration import guard
from slimline.orchestration.processes import stop_tree

KILL_GRACE = 5.0  # seconds for the group to exit after each signal before the next one
ran_line = re.compile(r"^Running stage '([^']+)'")
imported_line = re.compile(r"^Importing '[^']+' -> '([^']+)'")


@dataclass
class Completed:
    """One finished (or killed) command: its exit code, every output line and its duration."""

    argv: list[str]
    returncode: int
    seconds: float
    lines: list[str] = field(default_factory=list)
    timed_out: bool = False
    late_stage: str = ""  # the stage that ran past `stage_timeout` (then timed_out too)

    @property
    def exit_code(self) -> int:
        """The contract's code: 0, 2 when the stage itself exited 2 (bad input), else 1."""
        if self.returncode == 0 and not self.timed_out:
            return 0
        if any(re.search(r"exited with 2\b", line) for line in self.lines):
            return 2
        return 1

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.lines[-n:])

    def stage_error(self) -> str:
        """The stage's own `error: ...` message (bad input names the field or file), else the
        last lines of output (a traceback)."""
        starts = [i for i, line in enumerate(self.lines) if line.startswith("error: ")]
        if not starts:
            return self.tail()
        end = next(
            (i for i in range(starts[-1], len(self.lines)) if self.lines[i].startswith("ERROR: ")),
            len(self.lines),
        )
        return "\n".join(self.lines[starts[-1] : end]).removeprefix("error: ")


# lines of `dvc repro` / `dvc exp run` that say how DVC works, not what the stage did
BOOKKEEPING = (
    "Running stage ",
    "> python ",
    "Generating lock file",
    "Updating lock file",
    "Use `dvc push`",
    "To track the changes with git",
    "Reproducing experiment",
    "Ran experiment(s)",
    "To apply the results",
    "dvc exp apply",
    "git add ",
)


def is_bookkeeping(line: str) -> bool:
    return not line.strip() or line.strip().startswith(BOOKKEEPING)


def log_lines(log: Any) -> Callable[[str], None]:
    """An `on_line` that logs what a stage said at INFO and DVC's bookkeeping at DEBUG (INFO
    with `--verbose`)."""
    verbose = bool(os.environ.get(VERBOSE_ENV))

    def on_line(line: str) -> None:
        (log.info if verbose or not is_bookkeeping(line) else log.debug)(line)

    return on_line


def dvc_argv(*args: str) -> list[str]:
    # the venv's dvc, whatever PATH says: stages then run with the interpreter DVC runs under
    return [sys.executable, "-m", "dvc", *args]


# `slimline run` asks DVC these while Prefect's server boots; the flow takes them once. Safe:
# the workspace lock is held from before the prefetch until the flow has run.
_prefetched: dict[tuple[str, Path], Future] = {}


def prefetch(root: Path) -> None:
    """Start `dvc status` (its own process) and the stage order in a thread; return at once."""
    root = Path(root).resolve()
    pool = ThreadPoolExecutor(1, thread_name_prefix="slimline-dvc")
    _prefetched[("changed", root)] = pool.submit(changed_stages, root)
    _prefetched[("order", root)] = pool.submit(stage_order, root)
    pool.shutdown(wait=False)


def prefetched(kind: str, root: Path, compute: Callable[[Path], Any]) -> Any:
    """What `prefetch` found (its error raised here), else `compute(root)` now."""
    future = _prefetched.pop((kind, Path(root).resolve()), None)
    return future.result() if future is not None else compute(root)


def discard_prefetched(kind: str, root: Path) -> None:
    """Forget what `prefetch` found: the workspace changed since (an import was updated)."""
    future = _prefetched.pop((kind, Path(root).resolve()), None)
    if future is not None:
        future.cancel() or future.exception()  # wait: its `dvc status` must not outlive this


def import_files(root: Path) -> list[str]:
    """The `.dvc` files of the project's imports (`dvc import-url`, `dvc import`), relative to
    `root`, in DVC's order."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return [os.path.relpath(s.path, repo.root_dir) for s in repo.index.stages if s.is_import]


def updated_imports(lines: list[str]) -> list[str]:
    """The outputs `dvc update` downloaded again because their source changed."""
    return [m.group(1) for line in lines if (m := imported_line.match(line))]


def stage_order(root: Path) -> list[str]:
    """Pipeline stages in dependency order, ties kept in dvc.yaml's order (DVC's own graph)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        position = {stage: i for i, stage in enumerate(repo.index.stages)}
        ordered = nx.lexicographical_topological_sort(graph.reverse(), key=position.get)
        # `.dvc` files (dvc add) are data, not steps: only stages with a command run
        return [_address(s, repo.root_dir) for s in ordered if getattr(s, "cmd", None)]


def stage_upstreams(root: Path) -> dict[str, list[str]]:
    """Each pipeline stage, in `stage_order`'s order, with every stage it depends on, directly
    or not (DVC's graph): what must run before it, and what can make it rerun."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        position = {stage: i for i, stage in enumerate(repo.index.stages)}
        ordered = nx.lexicographical_topological_sort(graph.reverse(), key=position.get)
        return {
            _address(s, repo.root_dir): [
                _address(u, repo.root_dir)
                for u in sorted(nx.descendants(graph, s), key=lambda u: position[u])
                if getattr(u, "cmd", None)
            ]
            for s in ordered
            if getattr(s, "cmd", None)
        }


def _address(stage, root_dir: str) -> str:
    # `dvc repro -s` runs in the project root: name a stage as DVC would from there
    dvcfile = os.path.relpath(stage.path, root_dir)
    return stage.name if dvcfile == "dvc.yaml" else f"{dvcfile}:{stage.name}"


def changed_stages(root: Path, env: dict | None = None) -> set[str] | None:
    """Stages `dvc status` reports changed; None when DVC cannot say (then run everything)."""
    proc = subprocess.run(
        dvc_argv("status", "--json"),
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return set(json.loads(proc.stdout)) if proc.returncode == 0 else None
    except ValueError:
        return None


def stage_status(lines: list[str], stage: str) -> str:
    """ "ran" or "cached", from DVC's own words about `stage` (the last path element of it)."""
    name = stage.rpartition(":")[2]
    for line in lines:
        if (m := ran_line.match(line)) and m.group(1).rpartition(":")[2] == name:
            return "ran"
    return "cached"


def run(
    argv: list[str],
    root: Path,
    *,
    timeout: float | None,
    on_line: Callable[[str], None] = lambda line: None,
    env: dict | None = None,
    stage_timeout: float | None = None,
) -> Completed:
    """Run `argv` in `root`, stream each output line to `on_line` (in the calling thread, so a
    Prefect run logger works), and kill its process group once `timeout` seconds pass, or once
    one stage of a many-stage command (`dvc exp run`) has run `stage_timeout` seconds: its
    clock starts at DVC's `Running stage '...'` line. Under `orchestration.guard`: the group
    also dies if this process is killed."""
    start = time.monotonic()
    proc = subprocess.Popen(
        guard.command(argv),
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    expired = threading.Event()
    late: list[str] = []
    once = threading.Lock()

    def expire(stage: str = "") -> None:
        with once:
            if expired.is_set():
                return
            expired.set()
            late.append(stage)
        kill_group(proc)

    timers: dict[str, threading.Timer] = {}

    def start_timer(kind: str, seconds: float, stage: str = "") -> None:
        if kind in timers:
            timers[kind].cancel()
        timers[kind] = threading.Timer(seconds, expire, args=(stage,))
        timers[kind].daemon = True
        timers[kind].start()

    lines: list[str] = []
    try:
        if timeout:
            start_timer("run", timeout)
        assert proc.stdout is not None
        for raw in proc.stdout:  # ends when every process of the group closed the pipe
            line = raw.rstrip("\n")
            lines.append(line)
            if stage_timeout and (m := ran_line.match(line)):
                start_timer("stage", stage_timeout, m.group(1))
            on_line(line)
        proc.wait()
    finally:
        for timer in timers.values():
            timer.cancel()
        if proc.poll() is None:  # interrupted (Ctrl+C, a cancelled flow): take the group down
            kill_group(proc)
    seconds = time.monotonic() - start
    return Completed(argv, proc.returncode, seconds, lines, expired.is_set(), "".join(late))


def kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE) -> None:
    """Stop the whole process group: SIGINT first (DVC then releases its rwlock entries as on
    Ctrl+C), SIGTERM, then SIGKILL for whatever is left after `grace` seconds each."""
    stop_tree(proc, (signal.SIGINT, signal.SIGTERM, signal.SIGKILL), grace)
