"""Scheduled retraining against a real `prefect server start` on 127.0.0.1: prefect.yaml's
work-pool deployment and `slimline schedule --cron` register with their cron schedules, read
back through the API; runs of the served deployment retrain the chain on new data and are
recorded no-ops on unchanged data; a run cancelled from the API stops its stage, ends
Cancelled and moves nothing. Every process the test starts is stopped by it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from sklearn.datasets import load_digits

from tests.support.cli import SLIMLINE, copy_project, env, of_project, runs
from tests.support.servers import free_port, start, stop
from tests.support.waiting import wait_for
from tests.support.workspace import STAGES

pytestmark = pytest.mark.slow

# A schedule that does not fire while a test runs: with "*/30 * * * *" a CI run that crossed
# 18:00 got the scheduler's own run beside the triggered one, which the workspace lock refused
QUIET_CRON = "0 3 1 1 *"
READ_BACK = textwrap.dedent("""
    import json, sys
    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as client:
        d = client.read_deployment_by_name(sys.argv[1])
        print(json.dumps({"cron": d.schedules[0].schedule.cron if d.schedules else None,
                          "timezone": d.schedules[0].schedule.timezone if d.schedules else None,
                          "pool": d.work_pool_name, "entrypoint": d.entrypoint,
                          "parameters": d.parameters, "paused": d.paused}))
""")
TRIGGER = textwrap.dedent("""
    import sys
    from prefect.deployments import run_deployment
    run = run_deployment(name=sys.argv[1], timeout=float(sys.argv[2]))
    print(run.state.type.value)
""")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("prefect")),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env(PREFECT_HOME=str(home)).items():
            mp.setenv(key, value)
        proc = start(command, port, home / "server.log", health="/api/health")
    yield env(PREFECT_API_URL=f"http://127.0.0.1:{port}/api", PREFECT_HOME=str(home))
    stop(proc)


def python(code: str, *args: str, cwd: Path, client_env: dict, timeout: float = 120) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=client_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_prefect_yaml_registers_the_work_pool_deployment(prefect_server, flow_project, tmp_path):
    root = copy_project(flow_project.project, tmp_path / "project")
    prefect = str(Path(sys.executable).with_name("prefect"))
    for argv in (
        [prefect, "work-pool", "create", "slimline-process", "--type", "process"],
        [prefect, "--no-prompt", "deploy", "--all"],
    ):
        done = subprocess.run(
            argv,
            cwd=root,
            env=prefect_server,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    declared = yaml.safe_load((root / "prefect.yaml").read_text())["deployments"][0]
    got = json.loads(
        python(
            READ_BACK,
            "slimline-pipeline/scheduled-retraining-pool",
            cwd=root,
            client_env=prefect_server,
        )
    )
    assert got["cron"] == declared["schedules"][0]["cron"] and got["timezone"] == "UTC"
    assert got["pool"] == "slimline-process"
    assert got["entrypoint"] == "flows/pipeline.py:pipeline"


PAUSE = textwrap.dedent("""
    import sys
    from prefect.schedules import Cron
    from slimline.orchestration.commands import pause_deployment
    from slimline.orchestration.pipeline_flow import FLOW_NAME, pipeline
    from prefect.client.orchestration import get_client
    pipeline.to_deployment(name=sys.argv[1], schedules=[Cron("0 3 * * *")]).apply()
    with get_client(sync_client=True) as client:
        active = not client.read_deployment_by_name(f"{FLOW_NAME}/{sys.argv[1]}").paused
    pause_deployment(f"{FLOW_NAME}/{sys.argv[1]}")
    print(active)
""")


def test_a_stopped_serve_is_paused_even_if_prefect_did_not_finish_pausing(
    prefect_server, flow_project
):
    # what serve_schedule does after serve() returns: an active deployment ends up paused
    active = python(PAUSE, "left-active", cwd=flow_project.project, client_env=prefect_server)
    assert active == "True"
    got = python(READ_BACK, "slimline-pipeline/left-active", cwd=flow_project.project,
                 client_env=prefect_server)  # fmt: skip
    assert json.loads(got)["paused"] is True


def test_a_served_cron_deployment_retrains_on_new_data_only(prefect_server, flow_project, tmp_path):
    root = copy_project(flow_project.project, tmp_path / "project")
    # the user's own data set: 1,200 digits as an npz, the source `prepare` depends on (not all
    # 1,797: those would be the digits the project was built on, restored from DVC's run cache)
    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 8, 8)
    data = root / "data" / "raw" / "digits.npz"
    np.savez(data, x=x[:1200], y=y[:1200])
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"] |= {"source": "npz", "path": "data/raw/digits.npz"}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(
        [SLIMLINE, "schedule", "--cron", QUIET_CRON],
        cwd=root,
        env=prefect_server,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    name = "slimline-pipeline/scheduled-retraining"

    def scheduled_run() -> dict[str, str]:
        """Trigger one run as the schedule would; the tags of the MLflow run it recorded."""
        state = python(TRIGGER, name, "300", cwd=root, client_env=prefect_server, timeout=330)
        assert state == "COMPLETED", (tmp_path / "serve.log").read_text()[-4000:]
        _, found = runs(root)
        return next(r for r in found if "mlflow.parentRunId" not in r.data.tags).data.tags

    try:
        got = _wait_for_deployment(name, root, prefect_server, serve, tmp_path / "serve.log")
        assert (got["cron"], got["timezone"]) == (QUIET_CRON, "UTC")
        assert got["parameters"]["project_dir"] == str(root)
        first = scheduled_run()  # a new data source: the whole chain
        assert first["slimline.ran_stages"].split(",") == STAGES
        same = scheduled_run()  # nothing new: a recorded no-op
        assert same["slimline.ran_stages"] == ""
        assert same["slimline.cached_stages"].split(",") == STAGES
        # more data retraining again is proven on the team stack, through a work-pool worker
        # and new objects in a bucket (tests/stack/test_team_stack.py)
    finally:
        # SIGTERM: serve pauses its deployment on the way out, through the API: on a loaded
        # machine that takes longer than a server's shutdown, so it gets a longer grace
        stop(serve, grace=90)
        log.close()
    paused = json.loads(python(READ_BACK, name, cwd=root, client_env=prefect_server))["paused"]
    assert paused


def _wait_for_deployment(name, root, client_env, serve, log_path, timeout=300) -> dict:
    """The deployment as the API reads it back, once `serve` has registered it."""

    def registered() -> dict | None:
        assert serve.poll() is None, log_path.read_text()[-3000:]
        proc = subprocess.run(
            [sys.executable, "-c", READ_BACK, name],
            cwd=root,
            env=client_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None

    try:
        return wait_for(registered, timeout=timeout, what=f"deployment {name}")
    except TimeoutError:
        raise AssertionError(f"{name} never appeared:\n{log_path.read_text()[-3000:]}") from None


def serves(proc, serve_pid: int) -> bool:
    """multiprocessing's resource tracker, which the `serve` process starts for itself with the
    first run it launches and keeps: it is the server's, not the run's."""
    with contextlib.suppress(psutil.Error):
        tracker = "multiprocessing.resource_tracker" in " ".join(proc.cmdline())
        return tracker and proc.ppid() == serve_pid
    return False


CANCEL = textwrap.dedent("""
    import sys, time, uuid
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling
    run_id = uuid.UUID(sys.argv[1])
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Cancelling())  # what the UI's Cancel button does
        deadline = time.monotonic() + float(sys.argv[2])
        while not (state := client.read_flow_run(run_id).state).is_final():
            assert time.monotonic() < deadline, f"still {state.type.value}"
            time.sleep(0.5)
    print(state.type.value)
""")
START = textwrap.dedent("""
    import sys
    from prefect.deployments import run_deployment
    print(run_deployment(name=sys.argv[1], timeout=0).id)
""")


def test_a_deployment_run_cancelled_from_the_api_stops_its_stage_and_moves_nothing(
    prefect_server, flow_project, tmp_path
):
    root = copy_project(flow_project.project, tmp_path / "project")
    first = subprocess.run([SLIMLINE, "run"], cwd=root, env=env(), capture_output=True,
                           text=True, timeout=600, check=False)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]  # the copy's own champion
    client, _ = runs(root)
    aliases = client.get_registered_model("slimline-digits").aliases
    before = (root / "metrics/teacher.json").read_bytes()
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["teacher"]["epochs"] = 400  # long enough to be cancelled in the middle
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(
        [SLIMLINE, "schedule", "--cron", QUIET_CRON, "--name", "cancelled"],
        cwd=root, env=prefect_server, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    name = "slimline-pipeline/cancelled"
    try:
        _wait_for_deployment(name, root, prefect_server, serve, tmp_path / "serve.log")
        run_id = python(START, name, cwd=root, client_env=prefect_server)
        wait_for(lambda: [p for p in of_project(root)
                          if "stages/train_teacher.py" in " ".join(p.info["cmdline"] or [])],
                 timeout=300, what="the teacher's training")  # fmt: skip
        state = python(CANCEL, run_id, "120", cwd=root, client_env=prefect_server, timeout=180)
        # every process of the flow run is gone; `slimline schedule` itself serves on
        left = lambda: [(p.ppid(), p.info["cmdline"]) for p in of_project(root)  # noqa: E731
                        if p.pid != serve.pid and not serves(p, serve.pid)]  # fmt: skip
        try:
            wait_for(lambda: not left(), timeout=30, what="the cancelled run's processes to end")
        except TimeoutError:
            raise AssertionError(f"left running: {left()}") from None
        assert serve.poll() is None
    finally:
        stop(serve, grace=90)
        log.close()
    assert state == "CANCELLED", (tmp_path / "serve.log").read_text()[-4000:]
    assert (root / "metrics/teacher.json").read_bytes() == before  # the last good outputs
    assert client.get_registered_model("slimline-digits").aliases == aliases
    _, found = runs(root)
    parent = next(r for r in found if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "KILLED"
    assert parent.data.tags["slimline.cancelled_stage"] == "train_teacher"
