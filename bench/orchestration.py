"""What Prefect and MLflow cost on top of bare `dvc repro`, and what Dask buys a sweep.

Run by hand from the repo root (not by CI):

    .venv/bin/python bench/orchestration.py                 # all three parts, ~25 min on 2 cores
    .venv/bin/python bench/orchestration.py --only noop     # one part: cold | noop | sweep
    .venv/bin/python bench/orchestration.py --sweep-params small   # the sweep on smaller params

1. cold: a fresh workspace per run (no outputs, empty DVC cache, so no run cache either):
   `dvc repro` against `slimline run` (Prefect ephemeral mode, MLflow on SQLite, the registry),
   alternated, on params.yaml as it is: the full pipeline. The flow runs with warm stores (a
   Prefect home and an MLflow database that exist, as after a project's first run).
2. noop: one built workspace, nothing changed: `dvc repro` against `slimline run`, alternated;
   and `slimline run` against a running `prefect server start` (a team's setup, no ephemeral
   server to boot).
3. sweep: 8 candidates (prune.ratio x 4, distill.temperature x 2, none equal to the baseline),
   each sweep on its own copy of one built workspace (no experiment reuses another sweep's
   run cache): `slimline sweep --workers 2` against `--workers 1`. The candidates' phase is read
   from the Prefect log (first `Reproducing experiment` to last `Ran experiment(s)`).

Wall seconds per run, medians reported; the load average is recorded beside each part, since
this machine is shared. Writes bench/results/orchestration.{json,md}; `--only` replaces only
that part's entry.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test helpers: one way to copy the pipeline, to run servers

from slimline.core.env import TELEMETRY_OFF  # noqa: E402
from tests.support.project import copy_pipeline  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
# what a workspace needs to run the pipeline and the flows (outputs and stores excluded)
COPIED = [
    "dvc.yaml",
    "dvc.lock",
    "params.yaml",
    "stages",
    "src",
    "data/raw",
    "data/pretrained",
    "flows",
    "prefect.yaml",
    ".dvc/config",
    ".dvcignore",
    ".gitignore",
]
# 8 candidates: a key repeated once per value is an axis of the grid (docs/cli.md)
SWEEP = [
    *("-S", "prune.ratio=0.3", "-S", "prune.ratio=0.4", "-S", "prune.ratio=0.6"),
    *("-S", "prune.ratio=0.7", "-S", "distill.temperature=2", "-S", "distill.temperature=3"),
]
SMALL = [
    "teacher.epochs=4",
    "student.epochs=6",
    "prune.finetune_epochs=2",
    "benchmark.warmup=10",
    "benchmark.runs=100",
]
FOREIGN = ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_URI")
STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) \|")


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    return base | TELEMETRY_OFF | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"} | extra


def workspace(dest: Path, overrides: list[str]) -> Path:
    """A fresh git + DVC workspace with the project's pipeline and no outputs."""
    copy_pipeline(dest, COPIED)
    if overrides:
        from slimline.core.params.loading import write_params

        write_params(dest / "params.yaml", dest / "params.yaml", overrides)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench workspace"]):
        subprocess.run([*git, *args], cwd=dest, check=True, capture_output=True)
    return dest


def timed(argv: list[str], cwd: Path, **extra: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=cwd, env=env(**extra), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout + proc.stderr


def load() -> float:
    return os.getloadavg()[0]


DVC = [str(BIN / "python"), "-m", "dvc", "repro"]
SLIMLINE = [str(BIN / "slimline"), "run"]


def cold(tmp: Path, runs: int, overrides: list[str]) -> dict:
    """Cold pipeline, warm stores: a project's Prefect home and MLflow database exist after its
    first run (creating them costs that first run ~6 s more, not measured here)."""
    warm = workspace(tmp / "cold-warmup", SMALL)
    stores = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/cold-mlflow/mlflow.db"}
    (tmp / "cold-mlflow").mkdir()
    timed(SLIMLINE, warm, **stores)
    bare, flow = [], []
    for i in range(runs):
        bare.append(timed(DVC, workspace(tmp / f"cold-dvc-{i}", overrides))[0])
        ws = workspace(tmp / f"cold-flow-{i}", overrides)
        shutil.copytree(warm / ".prefect", ws / ".prefect")
        flow.append(timed(SLIMLINE, ws, **stores)[0])
        print(f"  cold {i + 1}/{runs}: dvc repro {bare[-1]:.1f} s, slimline run {flow[-1]:.1f} s")
    return summary(bare, flow) | {"load": load()}


def noop(tmp: Path, runs: int, overrides: list[str]) -> dict:
    built = workspace(tmp / "noop", overrides)
    timed(SLIMLINE, built)  # build it (and register the model once)
    bare, flow = [], []
    for _ in range(runs):
        bare.append(timed(DVC, built)[0])
        flow.append(timed(SLIMLINE, built)[0])
    result = summary(bare, flow) | {"load": load()}
    server = served_noop(tmp, built, runs)
    print(
        f"  noop: dvc repro {result['bare_s']:.2f} s, slimline run {result['flow_s']:.2f} s, "
        f"with a running Prefect server {server:.2f} s"
    )
    return result | {"flow_on_server_s": server}


def served_noop(tmp: Path, built: Path, runs: int) -> float:
    from tests.support.servers import free_port, start, stop

    port, home = free_port(), tmp / "prefect-server"
    home.mkdir()
    prefect = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    os.environ.update(env(PREFECT_HOME=str(home)))
    proc = start(prefect, port, home / "server.log", health="/api/health")
    try:
        api = {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_HOME": str(home)}
        timed(SLIMLINE, built, **api)  # first contact: the server's own warm-up
        return statistics.median(timed(SLIMLINE, built, **api)[0] for _ in range(runs))
    finally:
        stop(proc)


def sweep(tmp: Path, overrides: list[str]) -> dict:
    base = workspace(tmp / "sweep-base", overrides)
    timed(DVC, base)
    out = {"load_start": load()}
    for workers in (2, 1):
        copy = Path(shutil.copytree(base, tmp / f"sweep-{workers}", symlinks=True))
        seconds, log = timed(
            [str(BIN / "slimline"), "sweep", *SWEEP, "--workers", str(workers)], copy
        )
        out[f"workers_{workers}"] = {"total_s": seconds, "candidates_s": candidates_phase(log)}
        print(
            f"  sweep, {workers} worker(s): {seconds:.1f} s "
            f"(candidates {out[f'workers_{workers}']['candidates_s']:.1f} s)"
        )
    out["load_end"] = load()
    for key in ("total_s", "candidates_s"):
        out[f"speedup_{key.removesuffix('_s')}"] = out["workers_1"][key] / out["workers_2"][key]
    return out


def candidates_phase(log: str) -> float:
    """First `Reproducing experiment` to last `Ran experiment(s)`, from Prefect's timestamps."""

    def stamp(line: str) -> float:
        h, m, s = STAMP.match(line).groups()
        return int(h) * 3600 + int(m) * 60 + float(s)

    lines = [line for line in log.splitlines() if STAMP.match(line)]
    first = next(stamp(x) for x in lines if "Reproducing experiment" in x)
    last = max(stamp(x) for x in lines if "Ran experiment(s)" in x)
    return last - first


def summary(bare: list[float], flow: list[float]) -> dict:
    b, f = statistics.median(bare), statistics.median(flow)
    return {
        "bare_s": b,
        "flow_s": f,
        "overhead_pct": 100 * (f - b) / b,
        "bare_runs": bare,
        "flow_runs": flow,
    }


def markdown(results: dict) -> str:
    rows = [
        "| measurement | bare `dvc repro` | `slimline run` | overhead |",
        "| --- | --- | --- | --- |",
    ]
    for part in ("cold", "noop"):
        if r := results.get(part):
            rows.append(
                f"| {part} (median of {len(r['bare_runs'])}, load {r['load']:.1f}) | "
                f"{r['bare_s']:.2f} s | {r['flow_s']:.2f} s | "
                f"{r['overhead_pct']:+.0f}% |"
            )
    if r := results.get("noop"):
        rows.append(
            f"| noop, Prefect server running | {r['bare_s']:.2f} s | "
            f"{r['flow_on_server_s']:.2f} s | "
            f"{100 * (r['flow_on_server_s'] - r['bare_s']) / r['bare_s']:+.0f}% |"
        )
    if s := results.get("sweep"):
        rows += [
            "",
            "| sweep of 8 | 1 worker | 2 workers | speed-up |",
            "| --- | --- | --- | --- |",
        ]
        for key in ("candidates", "total"):
            one, two = s["workers_1"][f"{key}_s"], s["workers_2"][f"{key}_s"]
            rows.append(f"| {key} | {one:.1f} s | {two:.1f} s | {one / two:.2f}x |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["cold", "noop", "sweep"], action="append")
    parser.add_argument("--cold-runs", type=int, default=2)
    parser.add_argument("--noop-runs", type=int, default=5)
    parser.add_argument("--sweep-params", choices=["default", "small"], default="default")
    args = parser.parse_args()
    parts = args.only or ["cold", "noop", "sweep"]
    from slimline.core.atomic import read_json, write_json, write_text

    # one results file; a part that is rerun (`--only`) replaces its own entry, dated
    path = RESULTS / "orchestration.json"
    results: dict = read_json(path) if path.exists() else {}
    stamp = {"date": datetime.now().isoformat(timespec="seconds"), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="slimline-bench-") as tmp:
        if "cold" in parts:
            results["cold"] = cold(Path(tmp), args.cold_runs, []) | stamp
        if "noop" in parts:
            results["noop"] = noop(Path(tmp), args.noop_runs, []) | stamp
        if "sweep" in parts:
            small = SMALL if args.sweep_params == "small" else []
            results["sweep"] = sweep(Path(tmp), small) | {"params": args.sweep_params} | stamp
    write_json(path, results)
    write_text(RESULTS / "orchestration.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
