"""Soak: many `slimline run`s back to back in one workspace; does anything but the records grow?

Run by hand from the repo root (not by CI), niced on a shared machine:

    nice -n 10 .venv/bin/python bench/soak.py                  # 50 no-op + 5 full runs per mode
    nice -n 10 .venv/bin/python bench/soak.py --noop 10 --full 2
    nice -n 10 .venv/bin/python bench/soak.py --quick          # 3 no-op + 1 full: a smoke test
    nice -n 10 .venv/bin/python bench/soak.py --mode server    # one mode: ephemeral | server
    .venv/bin/python bench/soak.py --report      # rewrite soak.md from soak.json (keeps Findings)

One workspace (the pipeline copied into a temp dir, git-committed, with tests/support/project.py's
TRAINED params: a ResNet teacher of width 8, a CNN student of width 8, a few epochs; a full run
takes well under a minute) is built by a first `slimline run`. Then, in each mode, N no-op
`slimline run`s (nothing changed) and M full ones (`slimline run -S seed=<k>`, a seed never used
before, so DVC's run cache cannot restore anything and every stage reruns; checked on the MLflow
run's `slimline.ran_stages` tag):

  ephemeral  no PREFECT_API_URL: each run starts its own temporary Prefect server, state in the
             workspace's .prefect/
  server     a `prefect server start` on 127.0.0.1 with its own PREFECT_HOME in a temp dir
             (started like tests/servers.py, stopped at the end, on error too); one warm-up
             run against it first, not counted

After each run: exit code and wall seconds; live processes of the workspace (started there or
naming it, as tests/flows/test_killed_run.py's `of_project`; zero expected) and their open fds;
in server mode the server's process tree, its open fds and RSS; sizes in bytes of the Prefect
store (.prefect/, or the server's prefect.db), mlflow.db, mlartifacts/, .dvc/tmp, .dvc/cache and
DVC's per-repo folder under /var/tmp/dvc; the flow runs in the Prefect store and the MLflow runs
(parents, all) and registered versions. Each run must be in both stores: exactly one new flow
run, COMPLETED, exactly one new MLflow parent run, FINISHED, whose id the flow run's markdown
artifact names.

Per counter, the per-run deltas (median, max) and the net growth per run, for the no-op and the
full runs separately, and a verdict: flat, records (a store: bytes per run), or grows. Telemetry
is off for every tool and nothing leaves loopback. Writes bench/results/soak.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test helpers: one way to make a project, to run servers

from slimline.core.env import TELEMETRY_OFF  # noqa: E402
from tests.support.cli import commit, of_project, open_fds  # noqa: E402
from tests.support.project import TRAINED, make_project  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
SLIMLINE = [str(BIN / "slimline"), "run"]
FOREIGN = ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_URI")
SEEDS = {"ephemeral": 1001, "server": 2001}  # full runs count up from here: never a seed twice
# counters that must not grow (a leak if they do)
FLAT = (
    "workspace_procs",
    "workspace_fds",
    "server_procs",
    "server_fds",
    "server_rss_mb",
    "workspace_prefect_bytes",
    "prefect_log_bytes",
    "dvc_tmp_bytes",
)
# DVC's cache and its per-repo index: they grow with new outputs (full runs), never on a no-op
DATA = ("dvc_cache_bytes", "dvc_site_bytes")
# the records themselves: one flow run, one MLflow parent run (and its stage runs) per run
RECORDS = (
    "prefect_store_bytes",
    "mlflow_db_bytes",
    "mlartifacts_bytes",
    "flow_runs",
    "mlflow_parents",
    "mlflow_runs",
    "model_versions",
)
RSS_TOLERANCE_MB = 0.5  # per run: the allocator's noise on a long-lived Python server
BYTES_TOLERANCE = 1024  # over a whole series: a small file rewritten, not something piling up


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    return base | TELEMETRY_OFF | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"} | extra


# -- measuring ---------------------------------------------------------------------------------


def rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 2**20


def tree(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        top = psutil.Process(pid)
        return [top, *top.children(recursive=True)]
    return []


def size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder; 0 when missing."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(folder) / name).lstat().st_size
    return total


def sqlite_size(db: Path) -> int:
    """The database with its -wal and -shm files."""
    return sum(size(db.with_name(db.name + suffix)) for suffix in ("", "-wal", "-shm"))


@contextlib.contextmanager
def read_only(db: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def flow_runs(db: Path) -> dict[str, str]:
    """Prefect's flow runs: id -> state type."""
    if not db.exists():
        return {}
    with read_only(db) as conn:
        return dict(conn.execute("select id, state_type from flow_run"))


def artifact_text(db: Path, flow_run_id: str) -> str:
    with read_only(db) as conn:
        rows = conn.execute("select data from artifact where flow_run_id = ?", (flow_run_id,))
        return " ".join(str(data) for (data,) in rows)


PARENTS = """select r.run_uuid, r.status,
  (select value from tags t where t.run_uuid = r.run_uuid and t.key = 'slimline.ran_stages')
  from runs r where not exists
  (select 1 from tags t where t.run_uuid = r.run_uuid and t.key = 'mlflow.parentRunId')"""


def table_rows(db: Path) -> dict[str, int]:
    """Rows per table: what a run adds to a store, table by table."""
    if not db.exists():
        return {}
    with read_only(db) as conn:
        names = [n for (n,) in conn.execute("select name from sqlite_master where type='table'")]
        return {n: conn.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}


def mlflow_runs(db: Path) -> tuple[dict[str, tuple[str, str]], int, int]:
    """MLflow's parent runs (id -> status, ran stages), its run count and registered versions."""
    if not db.exists():
        return {}, 0, 0
    with read_only(db) as conn:
        parents = {run: (status, ran or "") for run, status, ran in conn.execute(PARENTS)}
        (runs,) = conn.execute("select count(*) from runs").fetchone()
        (versions,) = conn.execute("select count(*) from model_versions").fetchone()
    return parents, runs, versions


class Probe:
    """What one workspace (and, in server mode, one server) looks like between runs."""

    def __init__(self, root: Path, site: Path, server: subprocess.Popen | None, home: Path):
        self.root, self.site, self.server, self.home = root, site, server, home
        self.prefect_db = home / "prefect.db"
        self.flows: dict[str, str] = {}
        self.parents: dict[str, tuple[str, str]] = {}

    def sizes(self) -> dict:
        r = self.root
        return {
            "prefect_store_bytes": size(r / ".prefect")
            if self.server is None
            else sqlite_size(self.prefect_db),
            "prefect_log_bytes": size(self.home / "server.log"),
            # in server mode the workspace's own .prefect/ should stay as it is
            **({"workspace_prefect_bytes": size(r / ".prefect")} if self.server else {}),
            "mlflow_db_bytes": sqlite_size(r / "mlflow.db"),
            "mlartifacts_bytes": size(r / "mlartifacts"),
            "dvc_tmp_bytes": size(r / ".dvc" / "tmp"),
            "dvc_cache_bytes": size(r / ".dvc" / "cache"),
            "dvc_site_bytes": size(self.site),
        }

    def processes(self) -> dict:
        procs = of_project(self.root)
        out = {"workspace_procs": len(procs), "workspace_fds": open_fds(procs)}
        if procs:  # the evidence, for the report
            out["left"] = [" ".join(p.info["cmdline"] or [])[:200] for p in procs]
        if self.server is not None:
            server = tree(self.server.pid)
            out |= {"server_procs": len(server), "server_fds": open_fds(server),
                    "server_rss_mb": round(rss_mb(server), 1)}  # fmt: skip
        return out

    def stores(self) -> dict:
        flows = flow_runs(self.prefect_db)
        parents, runs, versions = mlflow_runs(self.root / "mlflow.db")
        new_flows = [f for f in flows if f not in self.flows]
        new_parents = [p for p in parents if p not in self.parents]
        out = {"flow_runs": len(flows), "mlflow_parents": len(parents), "mlflow_runs": runs,
               "model_versions": versions, "new_flow_runs": len(new_flows),
               "new_mlflow_parents": len(new_parents)}  # fmt: skip
        if len(new_flows) == 1 and len(new_parents) == 1:
            (flow,), (parent,) = new_flows, new_parents
            status, ran = parents[parent]
            out |= {"flow_state": flows[flow], "mlflow_status": status, "ran_stages": ran,
                    "linked": parent in artifact_text(self.prefect_db, flow)}  # fmt: skip
        self.flows, self.parents = flows, parents
        return out

    def measure(self) -> dict:
        rows = {"prefect_rows": table_rows(self.prefect_db),
                "mlflow_rows": table_rows(self.root / "mlflow.db")}  # fmt: skip
        return self.processes() | self.sizes() | self.stores() | rows


# -- running -----------------------------------------------------------------------------------


def workspace(dest: Path) -> Path:
    project = make_project(dest, **TRAINED)
    commit(project)
    return project


def site_cache(root: Path) -> Path:
    """DVC's per-repo folder under /var/tmp/dvc/repo/ (its index, its locks)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return Path(repo.site_cache_dir)


def slimline(root: Path, args: list[str], extra: dict[str, str]) -> tuple[int, float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [*SLIMLINE, *args], cwd=root, env=env(**extra), capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    return proc.returncode, time.perf_counter() - start, proc.stdout[-1500:] + proc.stderr[-3000:]


def soak(probe: Probe, noop: int, full: int, seed: int, extra: dict[str, str], stages: list[str]):
    """`noop` then `full` runs; the records after each, the baseline first."""
    records = [{"kind": "baseline", **probe.measure()}]
    plan = [("noop", [])] * noop + [("full", ["-S", f"seed={seed + k}"]) for k in range(full)]
    for i, (kind, args) in enumerate(plan, 1):
        code, seconds, tail = slimline(probe.root, args, extra)
        record = {"kind": kind, "exit": code, "seconds": round(seconds, 2), **probe.measure()}
        record["in_both"] = (
            record.get("flow_state") == "COMPLETED" and record.get("mlflow_status") == "FINISHED"
            and record.get("linked", False) and record["new_flow_runs"] == 1
            and record["new_mlflow_parents"] == 1
        )  # fmt: skip
        if kind == "full":
            record["ran_all"] = record.get("ran_stages", "").split(",") == stages
        if code != 0:
            record["tail"] = tail
        records.append(record)
        print(
            f"  {i:3d}/{len(plan)} {kind:4s} exit {code} {seconds:6.1f} s, "
            f"procs {record['workspace_procs']}, flows {record['flow_runs']}, "
            f"parents {record['mlflow_parents']}, in both {record['in_both']}"
            + (f", ran all {record['ran_all']}" if kind == "full" else ""),
            flush=True,
        )
    return records


def ephemeral(root: Path, site: Path, noop: int, full: int, stages: list[str]) -> dict:
    probe = Probe(root, site, None, root / ".prefect")
    return {"records": soak(probe, noop, full, SEEDS["ephemeral"], {}, stages)}


def served(root: Path, site: Path, tmp: Path, noop: int, full: int, stages: list[str]) -> dict:
    from tests.support.servers import free_port, start, stop

    port, home = free_port(), tmp / "prefect-server"
    home.mkdir()
    argv = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    proc = start(argv, port, home / "server.log", health="/api/health",
                 env=env(PREFECT_HOME=str(home)))  # fmt: skip
    try:
        api = {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_HOME": str(home)}
        code, seconds, tail = slimline(root, [], api)  # first contact: the server's warm-up
        if code != 0:
            raise RuntimeError(f"the warm-up run against the server exited {code}:\n{tail}")
        probe = Probe(root, site, proc, home)
        return {
            "warmup_s": round(seconds, 2),
            "records": soak(probe, noop, full, SEEDS["server"], api, stages),
        }
    finally:
        stop(proc)


# -- reporting ---------------------------------------------------------------------------------


def growth(records: list[dict], key: str, kind: str) -> dict | None:
    """Per-run deltas of `key` over the runs of `kind` (each against the record before it)."""
    pairs = [(a, b) for a, b in zip(records, records[1:], strict=False) if b["kind"] == kind]
    if not pairs or key not in pairs[0][1]:
        return None
    deltas = [b[key] - a[key] for a, b in pairs]
    net = pairs[-1][1][key] - pairs[0][0][key]
    return {"median": statistics.median(deltas), "max": max(deltas), "net": net,
            "net_per_run": net / len(pairs)}  # fmt: skip


def grew(key: str, g: dict | None) -> bool:
    if g is None:
        return False
    if key.endswith("_bytes"):
        return g["net"] > BYTES_TOLERANCE
    return g["net_per_run"] > (RSS_TOLERANCE_MB if key == "server_rss_mb" else 0)


def verdict(key: str, noop: dict | None, full: dict | None) -> str:
    if key in RECORDS:
        return "records"
    if key in DATA:
        return "**grows** on no-op runs" if grew(key, noop) else "new outputs only"
    grows = [kind for kind, g in (("no-op", noop), ("full", full)) if grew(key, g)]
    if not grows:
        return "flat"
    return "**grows**" if len(grows) == 2 else f"**grows** ({grows[0]} runs only)"


def rows_per_run(records: list[dict], store: str, kind: str) -> dict[str, float]:
    """Net rows per run of `kind`, per table that changed."""
    runs = [i for i, r in enumerate(records) if r["kind"] == kind]
    if not runs:
        return {}
    before, after = records[runs[0] - 1][store], records[runs[-1]][store]
    net = {t: (n - before.get(t, 0)) / len(runs) for t, n in after.items()}
    return {t: round(v, 2) for t, v in net.items() if v}


def summarize(part: dict) -> dict:
    records = part["records"]
    runs = records[1:]
    counters = {}
    for key in (*FLAT, *DATA, *RECORDS):
        noop, full = growth(records, key, "noop"), growth(records, key, "full")
        if noop or full:
            counters[key] = {"noop": noop, "full": full, "verdict": verdict(key, noop, full)}
    return {
        "runs": len(runs),
        "failed": sum(r["exit"] != 0 for r in runs),
        "not_in_both": sum(not r["in_both"] for r in runs),
        "full_not_rerun": sum(not r["ran_all"] for r in runs if r["kind"] == "full"),
        "left_processes": sum(r["workspace_procs"] for r in runs),
        "seconds": {kind: statistics.median([r["seconds"] for r in runs if r["kind"] == kind])
                    for kind in ("noop", "full") if any(r["kind"] == kind for r in runs)},
        "counters": counters,
        "rows_per_run": {f"{store}/{kind}": rows_per_run(records, f"{store}_rows", kind)
                         for store in ("prefect", "mlflow") for kind in ("noop", "full")},
    }  # fmt: skip


def amount(value: float, key: str) -> str:
    if key.endswith("_bytes") and abs(value) >= 1024:
        return f"{value / 1024:+.1f} KB"
    unit = " B" if key.endswith("_bytes") else (" MB" if key.endswith("_mb") else "")
    return f"{value:+.3g}{unit}"


def cell(key: str, g: dict | None) -> str:
    if g is None:
        return "-"
    return (f"{amount(g['median'], key)} / {amount(g['max'], key)} "
            f"(net {amount(g['net_per_run'], key)})")  # fmt: skip


def markdown(results: dict, findings: str = "") -> str:
    """The report; `findings` (a hand-written `## Findings` section) is kept at its end."""
    nice = f"nice -n {results['nice']} " if results["nice"] else ""
    lines = [
        "# Soak: `slimline run` back to back in one workspace",
        "",
        f"{results['date']}, {results['cpus']} cores, load average {results['load_start']:.2f} "
        f"at the start, {results['load_end']:.2f} at the end (the machine is shared); "
        f"`{nice}{results['command']}`: {results['noop']} no-op then {results['full']} full runs "
        f"per mode, {results['minutes']:.0f} min in all. "
        "Params: TRAINED (tests/support/project.py); "
        f"the first run (the build) took {results['build_s']:.0f} s.",
        "",
        "Each cell: the median / the max of the per-run deltas, and the net growth per run "
        "(last minus first, over the runs). KB = 1024 bytes.",
    ]
    for mode, part in results["modes"].items():
        s = part["summary"]
        secs = ", ".join(f"{k} {v:.1f} s" for k, v in s["seconds"].items())
        lines += [
            "",
            f"## {mode}",
            "",
            f"{s['runs']} runs (median wall: {secs}); failed: {s['failed']}; not in both stores: "
            f"{s['not_in_both']}; full runs that did not rerun every stage: "
            f"{s['full_not_rerun']}; workspace processes left after a run: {s['left_processes']}.",
            "",
            "| counter | no-op growth/run | full growth/run | verdict |",
            "| --- | --- | --- | --- |",
        ]
        for key, c in s["counters"].items():
            lines.append(f"| {key} | {cell(key, c['noop'])} | {cell(key, c['full'])} | "
                         f"{c['verdict']} |")  # fmt: skip
        lines.append("")
        for name, rows in s["rows_per_run"].items():
            if rows:
                text = ", ".join(f"{t} {n:g}" for t, n in sorted(rows.items()))
                lines.append(f"- rows per run, {name.replace('/', ', ')}: {text}")
    return "\n".join(lines) + "\n" + (f"\n{findings.strip()}\n" if findings else "")


def findings(path: Path) -> str:
    """The `## Findings` section of the report at `path`, written by hand, if any."""
    text = path.read_text() if path.exists() else ""
    return text[text.index("## Findings") :] if "## Findings" in text else ""


def python() -> str:
    exe = Path(sys.executable)
    return str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else exe.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop", type=int, default=50, help="no-op runs per mode")
    parser.add_argument("--full", type=int, default=5, help="full runs per mode")
    parser.add_argument("--quick", action="store_true", help="3 no-op and 1 full run per mode")
    parser.add_argument("--mode", choices=["ephemeral", "server"], action="append")
    parser.add_argument("--report", action="store_true", help="rewrite soak.md from soak.json")
    args = parser.parse_args()
    noop, full = (3, 1) if args.quick else (args.noop, args.full)
    from slimline.core.atomic import read_json, write_json, write_text

    md = RESULTS / "soak.md"
    if args.report:
        results = read_json(RESULTS / "soak.json")
        for part in results["modes"].values():
            part["summary"] = summarize(part)
        write_json(RESULTS / "soak.json", results)
        write_text(md, markdown(results, findings(md)))
        return

    started = time.monotonic()
    results = {"date": datetime.now().isoformat(timespec="seconds"), "cpus": os.cpu_count(),
               "load_start": os.getloadavg()[0], "nice": os.nice(0),
               "command": " ".join([python(), *sys.argv]), "noop": noop,
               "full": full, "params": TRAINED, "modes": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="slimline-soak-") as tmp:
        root = workspace(Path(tmp) / "workspace")
        stages = list(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
        site = site_cache(root)
        try:
            code, seconds, tail = slimline(root, [], {})  # build it
            if code != 0:
                raise RuntimeError(f"the first run exited {code}:\n{tail}")
            results["build_s"] = round(seconds, 1)
            print(f"built in {seconds:.0f} s: {root}", flush=True)
            for mode in args.mode or ["ephemeral", "server"]:
                print(f"{mode}: {noop} no-op + {full} full runs", flush=True)
                part = (
                    ephemeral(root, site, noop, full, stages)
                    if mode == "ephemeral"
                    else served(root, site, Path(tmp), noop, full, stages)
                )
                part["summary"] = summarize(part)
                part["load_end"] = os.getloadavg()[0]
                results["modes"][mode] = part
        finally:
            shutil.rmtree(site, ignore_errors=True)
    results["load_end"] = os.getloadavg()[0]
    results["minutes"] = (time.monotonic() - started) / 60
    write_json(RESULTS / "soak.json", results)
    write_text(md, markdown(results, findings(md)))
    print(markdown(results))


if __name__ == "__main__":
    main()
