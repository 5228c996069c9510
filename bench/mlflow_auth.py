"""What basic auth costs the team stack's MLflow server per request, with and without the
credential cache that docker/mlflow-auth.ini turns on (`auth_cache_ttl_seconds`).

Run by hand from the repo root (not by CI):

    .venv/bin/python bench/mlflow_auth.py              # 60 requests of each kind per setting
    .venv/bin/python bench/mlflow_auth.py --requests 20

MLflow's auth app checks the password of every request with PBKDF2, and for some routes twice
(once to authorize it, once more after it, e.g. `sender_is_admin` when it answers a metric
history); its cache of successful checks is off unless the config sets a TTL. For each setting
(docker/mlflow-auth.ini as shipped, and the same file with `auth_cache_ttl_seconds = 0`, MLflow's
default) this starts `mlflow server --app-name=basic-auth --workers=1` on 127.0.0.1 with a
SQLite store in a temp dir, as compose starts it (job runner off), then times the requests a
pipeline run makes most (log-batch, get-run, a metric's history) through MlflowClient with the
admin's credentials, and reads the CPU seconds the server's process tree spent. Prints a table:
median and p95 milliseconds per request, server CPU milliseconds per request, and the ratio
against the default.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slimline.core.env import quiet_telemetry  # noqa: E402
from tests.support.servers import free_port, start, stop  # noqa: E402

INI = ROOT / "docker" / "mlflow-auth.ini"
KINDS = ("log-batch", "get-run", "metric-history")


def config(folder: Path, cache: bool) -> Path:
    store = f"database_uri = sqlite:///{folder}/auth.db"
    ini = re.sub(r"database_uri = \S+", store, INI.read_text())
    if not cache:
        ini = re.sub(r"auth_cache_ttl_seconds = \d+", "auth_cache_ttl_seconds = 0", ini)
    path = folder / "auth.ini"
    path.write_text(ini)
    return path


def server_cpu(proc: psutil.Process) -> float:
    tree = [proc, *proc.children(recursive=True)]
    return sum(p.cpu_times().user + p.cpu_times().system for p in tree if p.is_running())


def measure(cache: bool, requests: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="slimline-bench-auth-") as tmp:
        folder, port, password = Path(tmp), free_port(), secrets.token_hex(12)
        env = os.environ | {
            "MLFLOW_AUTH_CONFIG_PATH": str(config(folder, cache)),
            "MLFLOW_AUTH_ADMIN_PASSWORD": password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{folder}/mlflow.db",
            "MLFLOW_ARTIFACTS_DESTINATION": str(folder / "artifacts"),
        }
        command = [str(Path(sys.executable).with_name("mlflow")), "server", "--app-name=basic-auth",
                   "--host=127.0.0.1", f"--port={port}", "--workers=1"]  # fmt: skip
        proc = start(command, port, folder / "server.log", cwd=folder, env=env)
        try:
            # MlflowClient sends these as basic auth
            os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
            os.environ["MLFLOW_TRACKING_PASSWORD"] = password
            from mlflow import MlflowClient
            from mlflow.entities import Metric

            client = MlflowClient(f"http://127.0.0.1:{port}")
            run_id = client.create_run(client.create_experiment(f"bench-{cache}")).info.run_id
            calls = {
                "log-batch": lambda i: client.log_batch(
                    run_id, metrics=[Metric("loss", 1.0 / (i + 1), 0, i)]
                ),
                "get-run": lambda i: client.get_run(run_id),
                "metric-history": lambda i: client.get_metric_history(run_id, "loss"),
            }
            server = psutil.Process(proc.pid)
            figures = {}
            for kind in KINDS:
                seconds, cpu = [], server_cpu(server)
                for i in range(requests):
                    started = time.perf_counter()
                    calls[kind](i)
                    seconds.append(time.perf_counter() - started)
                cpu = server_cpu(server) - cpu
                seconds.sort()
                figures[kind] = {
                    "median_ms": 1000 * statistics.median(seconds),
                    "p95_ms": 1000 * seconds[int(0.95 * (len(seconds) - 1))],
                    "server_cpu_ms": 1000 * cpu / requests,
                }
            return figures
        finally:
            stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="requests of each kind")
    args = parser.parse_args()
    quiet_telemetry()
    shipped = re.search(r"auth_cache_ttl_seconds = (\d+)", INI.read_text())
    if not shipped or int(shipped.group(1)) == 0:
        sys.exit(f"{INI} sets no auth_cache_ttl_seconds: nothing to compare")
    default, cached = measure(False, args.requests), measure(True, args.requests)
    print(f"{args.requests} requests of each kind; auth_cache_ttl_seconds = {shipped.group(1)} "
          "(docker/mlflow-auth.ini) against 0 (MLflow's default)")  # fmt: skip
    print("| request | cache | median ms | p95 ms | server CPU ms | median ratio | CPU ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind in KINDS:
        base = default[kind]
        for name, got in (("off", default[kind]), ("on", cached[kind])):
            print(f"| {kind} | {name} | {got['median_ms']:.1f} | {got['p95_ms']:.1f} | "
                  f"{got['server_cpu_ms']:.1f} | {base['median_ms'] / got['median_ms']:.2f}x | "
                  f"{base['server_cpu_ms'] / max(got['server_cpu_ms'], 1e-9):.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
