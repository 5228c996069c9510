"""The team stack, run for real (issue 18): PostgreSQL, an S3 server, MLflow and Prefect servers
with authentication, a process worker, a DVC remote and raw data in the bucket, a Dask cluster.

The tests run in file order on one stack and one project (each builds on the last): a
deployment run on the worker, the refusals, a no-op, new data picked up by a run whose worker
is killed and retrained by the next, push/pull, a sweep on Dask, then the faults (PostgreSQL
stopped, S3 gone for `dvc push` and for a deployment run's `dvc update`).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest
import yaml

from tests.support import processes
from tests.support.cli import SLIMLINE
from tests.support.processes import git
from tests.support.servers import stop
from tests.support.stack import SETTINGS, Stack, http
from tests.support.team_project import DATA, dvc, put_digits
from tests.support.waiting import wait_for
from tests.support.workspace import STAGES

pytestmark = [pytest.mark.slow, pytest.mark.stack]

DEPLOYMENT = f"slimline-pipeline/{SETTINGS['prefect']['deployment']}"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


# -- the two servers' APIs, as any client reaches them ---------------------------------------
def prefect(stack: Stack, path: str, body: dict | None = None, method: str | None = None):
    status, got = stack.prefect_api(path, body, method)
    assert status in (200, 201, 204), f"{method or 'GET'} {path}: {status}"
    return got


def trigger(stack: Stack) -> str:
    """A run of the deployment created through Prefect's API, as the UI's Run button does."""
    flow, name = DEPLOYMENT.split("/")
    deployment = prefect(stack, f"/deployments/name/{flow}/{name}")
    return prefect(stack, f"/deployments/{deployment['id']}/create_flow_run", {})["id"]


def flow_run(stack: Stack, run_id: str) -> dict:
    return prefect(stack, f"/flow_runs/{run_id}")


def finished(stack: Stack, run_id: str, timeout: float = 420) -> dict:
    return wait_for(
        lambda: (r := flow_run(stack, run_id))["state"]["type"] in FINAL and r,
        timeout,
        f"flow run {run_id} to finish (worker log: {stack.home / 'worker.log'})",
        interval=0.5,
    )


def completed_run(stack: Stack) -> dict:
    run = finished(stack, trigger(stack))
    assert run["state"]["type"] == "COMPLETED", worker_log(stack)
    return run


def worker_log(stack: Stack) -> str:
    return (stack.home / "worker.log").read_text()[-4000:]


# -- what MLflow wrote, read where it lives ---------------------------------------------------
def sql(stack: Stack, query: str, *args) -> list[tuple]:
    import psycopg2

    # closing(): psycopg2's own context manager ends the transaction, not the connection
    connection = psycopg2.connect(stack.postgres_dsn("mlflow"))
    with contextlib.closing(connection) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


def latest_parent(stack: Stack) -> tuple[str, dict[str, str]]:
    """The newest pipeline run (no parent) in PostgreSQL: its id and tags."""
    (run_id,) = sql(
        stack,
        "SELECT r.run_uuid FROM runs r WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE "
        "t.run_uuid = r.run_uuid AND t.key IN ('mlflow.parentRunId', 'slimline.kind')) "
        "ORDER BY r.start_time DESC LIMIT 1",
    )[0]
    return run_id, dict(sql(stack, "SELECT key, value FROM tags WHERE run_uuid = %s", run_id))


def children(stack: Stack, parent: str) -> dict[str, str]:
    """Stage name -> its status tag, for the child runs of `parent`."""
    rows = sql(
        stack,
        "SELECT r.name, s.value FROM runs r JOIN tags p ON p.run_uuid = r.run_uuid AND "
        "p.key = 'mlflow.parentRunId' JOIN tags s ON s.run_uuid = r.run_uuid AND "
        "s.key = 'slimline.stage.status' WHERE p.value = %s",
        parent,
    )
    return dict(rows)


def versions(stack: Stack) -> list[int]:
    return sorted(int(v) for (v,) in sql(stack, "SELECT version FROM model_versions"))


def champion(stack: Stack) -> int | None:
    rows = sql(stack, "SELECT version FROM registered_model_aliases WHERE alias = 'champion'")
    return int(rows[0][0]) if rows else None


def objects(stack: Stack, bucket: str, prefix: str = "") -> list[str]:
    pages = stack.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


LOAD_CHAMPION = textwrap.dedent("""
    import json, sys, tempfile
    import numpy as np, mlflow
    model = mlflow.pyfunc.load_model(f"models:/{sys.argv[1]}@champion",
                                     dst_path=tempfile.mkdtemp())
    out = model.predict(np.zeros((3, 1, 8, 8), np.float32))
    print(json.dumps({"shape": list(out["logits"].shape)}))
""")


# -- the proof ---------------------------------------------------------------------------------
def test_a_deployment_run_executes_on_the_worker_and_is_recorded_in_postgres_and_s3(stack):
    stack, project = stack
    # prefect.yaml's nightly cron must not fire beside the triggered runs: its schedule off,
    # the runs it already planned deleted
    deployment = prefect(stack, "/deployments/name/" + DEPLOYMENT)
    for schedule in deployment["schedules"]:
        path = f"/deployments/{deployment['id']}/schedules/{schedule['id']}"
        prefect(stack, path, {"active": False}, "PATCH")
    planned = {"deployments": {"id": {"any_": [deployment["id"]]}},
               "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}  # fmt: skip
    for run in prefect(stack, "/flow_runs/filter", planned, "POST"):
        prefect(stack, f"/flow_runs/{run['id']}", method="DELETE")
    started = time.monotonic()
    run = completed_run(stack)
    print(f"first deployment run (every stage) {time.monotonic() - started:.1f} s")
    assert run["work_pool_name"] == SETTINGS["prefect"]["work_pool"]
    assert run["parameters"]["update_imports"] is True
    assert "Worker" in worker_log(stack) and run["id"] in worker_log(stack)

    parent, tags = latest_parent(stack)
    assert tags["slimline.ran_stages"].split(",") == STAGES
    assert children(stack, parent) == dict.fromkeys(STAGES, "ran")
    artifacts = objects(
        stack, SETTINGS["s3"]["buckets"]["artifacts"], SETTINGS["s3"]["artifacts_prefix"] + "/"
    )
    assert any(f"/{parent}/artifacts/" in key for key in artifacts)
    assert any(key.endswith("model.onnx") and "/models/" in key for key in artifacts)
    assert versions(stack) == [1] and champion(stack) == 1

    # the champion, from the registry, through the authenticated server
    name = yaml.safe_load((project / "params.yaml").read_text())["tracking"]["model_name"]
    load = processes.run(
        [sys.executable, "-c", LOAD_CHAMPION, name], env=stack.client_env(project), timeout=180
    )
    assert load.returncode == 0, load.stderr[-3000:]
    assert json.loads(load.stdout.strip().splitlines()[-1]) == {"shape": [3, 10]}


def test_both_servers_refuse_a_request_without_credentials(stack):
    stack, _ = stack
    search = "/api/2.0/mlflow/experiments/search?max_results=5"
    assert http(stack.mlflow_url + search, None)[0] == 401
    assert http(stack.mlflow_url + search, "admin:wrong")[0] == 401
    admin = f"{SETTINGS['mlflow']['admin']}:{stack.credentials['mlflow_admin_password']}"
    assert http(stack.mlflow_url + search, admin)[0] == 200
    flows = stack.prefect_url + "/flows/filter"
    assert http(flows, None, {})[0] == 401
    assert http(flows, "admin:wrong", {})[0] == 401
    assert http(flows, stack.secrets["PREFECT_AUTH_STRING"], {})[0] == 200


def test_a_run_with_nothing_new_in_the_bucket_is_a_recorded_noop(stack):
    stack, _ = stack
    before = versions(stack)
    started = time.monotonic()
    completed_run(stack)
    print(f"no-op deployment run {time.monotonic() - started:.1f} s")
    parent, tags = latest_parent(stack)
    assert tags["slimline.ran_stages"] == ""
    assert children(stack, parent) == dict.fromkeys(STAGES, "cached")
    assert versions(stack) == before


def test_new_objects_retrain_every_stage_even_when_the_worker_dies_picking_them_up(stack):
    # one full retrain proves both (a full run costs over a minute on 2 cores): new objects
    # land; the run that picks them up loses its worker (the whole process tree, SIGKILL) in
    # its first stage; the restarted worker's next run marks it Crashed and retrains all 8
    stack, project = stack
    first_sha = latest_parent(stack)[1]["slimline.data_sha256"]
    md5 = put_digits(stack, 1500)  # 300 more samples land where the team keeps its data
    killed_id = trigger(stack)
    worker = psutil.Process(stack.procs["worker"].pid)

    def in_prepare() -> bool:  # the stage's own process, under the worker: not yet done
        return any("stages/prepare.py" in line for line in command_lines(worker))

    wait_for(in_prepare, 300, "stage prepare to run on the worker", interval=0.1)
    tree = [worker, *worker.children(recursive=True)]
    for p in tree:  # the machine the worker ran on is gone: no signal handler runs
        p.kill()
    psutil.wait_procs(tree, timeout=30)
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert flow_run(stack, killed_id)["state"]["type"] == "RUNNING"  # nobody told Prefect
    # the killed run had brought the import up to date (dvc update ran on the worker)
    assert f"md5: {md5}" in (project / f"{DATA}.dvc").read_text()

    stack.start_worker(project)  # compose restarts it (restart: unless-stopped)
    started = time.monotonic()
    completed_run(stack)
    print(f"deployment run on new data, after the killed worker {time.monotonic() - started:.1f} s")
    assert flow_run(stack, killed_id)["state"]["type"] in ("CRASHED", "FAILED")
    parent, tags = latest_parent(stack)
    assert tags["slimline.ran_stages"].split(",") == STAGES
    assert tags["slimline.data_sha256"] != first_sha
    assert children(stack, parent) == dict.fromkeys(STAGES, "ran")
    assert versions(stack) == [1, 2]


def test_dvc_push_then_pull_in_a_fresh_clone_restores_the_model(stack, tmp_path):
    stack, project = stack
    env = stack.client_env(project)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "retrained on the worker")
    dvc(project, env, "push")
    bucket = SETTINGS["s3"]["buckets"]["dvc"]
    assert objects(stack, bucket, SETTINGS["s3"]["dvc_prefix"] + "/")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    dvc(clone, env, "pull", "export")
    model = "dist/model.onnx"
    assert (clone / model).read_bytes() == (project / model).read_bytes()


def test_a_sweep_runs_its_candidates_on_the_two_dask_workers(stack):
    stack, project = stack
    workers = stack.dask_workers()
    assert len(workers) == SETTINGS["dask"]["workers"]
    before = versions(stack)
    started = time.monotonic()
    # candidates that rerun from quantize on: the placement is the point, not the grid
    grid = ["-S", "quantize.calibration_samples=16", "-S", "quantize.calibration_samples=48"]
    sweep = [SLIMLINE, "sweep", *grid, "--dask-address", stack.dask_address]
    done = processes.run(sweep, project, env=stack.client_env(project), timeout=600)
    print(f"sweep of 2 candidates on the Dask cluster {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = json.loads((project / "reports" / "sweep.json").read_text())
    ran_on = {c["worker"] for c in table["candidates"]}
    assert ran_on == set(workers)  # one candidate on each worker
    # the candidates' MLflow runs say where they ran; the best one was registered
    tagged = sql(stack, "SELECT value FROM tags WHERE key = 'slimline.dask_worker'")
    assert {v for (v,) in tagged} >= ran_on
    assert len(versions(stack)) == len(before) + 1


def test_postgres_stopped_mid_run_fails_the_mlflow_step_and_keeps_outputs_and_aliases(stack):
    stack, project = stack
    holder, before = champion(stack), versions(stack)
    # a local run (its own temporary Prefect server) recording in the stack's MLflow
    env = stack.client_env(project)
    for key in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_HOME"):
        env.pop(key)
    runs = yaml.safe_load((project / "params.yaml").read_text())["benchmark"]["runs"] + 1
    run = subprocess.Popen(
        [SLIMLINE, "run", "-S", f"benchmark.runs={runs}"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(run.stdout), daemon=True)
    reader.start()

    def benchmark_running() -> bool:
        return any("stages/benchmark.py" in line for line in command_lines())

    try:
        wait_for(benchmark_running, 300, "stage benchmark to start", interval=0.2)
        stack.stop_postgres_server()
        stopped = time.monotonic()
        code = run.wait(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
        reader.join(10)
    waited = time.monotonic() - stopped
    text = "".join(output)
    said = [line for line in text.splitlines() if line.startswith("error: ")]
    print(f"PostgreSQL down: the run gave up after {waited:.1f} s: {said}")
    assert code == 1, text[-3000:]
    assert f"MLflow at {stack.mlflow_url}" in text
    assert waited < 180  # bounded retries, not MLflow's 7 back-offs
    lock = (project / "dvc.lock").read_text()
    assert f"runs: {runs}" in lock  # benchmark ran and DVC kept its result
    assert json.loads((project / "reports" / "benchmark.json").read_text())
    stack.start_postgres_server()
    assert champion(stack) == holder and versions(stack) == before


def test_s3_unreachable_during_dvc_push_is_a_clear_error_and_keeps_the_cache(stack):
    stack, project = stack
    cache = project / ".dvc" / "cache"
    files = {p: p.stat().st_size for p in cache.rglob("*") if p.is_file()}
    stop(stack.procs.pop("s3"))
    started = time.monotonic()
    done = dvc(project, stack.client_env(project), "push", check=False)
    print(f"dvc push with S3 down failed after {time.monotonic() - started:.1f} s")
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert f'Could not connect to the endpoint URL: "{stack.s3_url}/' in said, said[-2000:]
    assert {p: p.stat().st_size for p in cache.rglob("*") if p.is_file()} == files
    assert dvc(project, stack.client_env(project), "status").returncode == 0


def test_a_deployment_run_that_cannot_reach_the_bucket_fails_before_any_stage(stack):
    stack, project = stack  # S3 is down since the test above
    lock, recorded = (project / "dvc.lock").read_bytes(), latest_parent(stack)[0]
    run = finished(stack, trigger(stack))
    assert run["state"]["type"] == "FAILED"
    assert "dvc update of data/raw/digits.npz.dvc failed" in worker_log(stack)
    assert (project / "dvc.lock").read_bytes() == lock  # no stage ran
    assert latest_parent(stack)[0] == recorded


def command_lines(parent: psutil.Process | None = None) -> list[str]:
    """The command line of every live process, or of `parent`'s descendants (those gone or
    zombies meanwhile left out)."""
    found = []
    for p in psutil.process_iter() if parent is None else parent.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            found.append(" ".join(p.cmdline()))
    return found
