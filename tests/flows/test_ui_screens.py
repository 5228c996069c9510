"""Both UIs on a real run, seen in Debian's Chromium, photographed.

A copy of the session's real `slimline run` project runs the pipeline twice more against a real
`prefect server start` (over the project's own Prefect state, so the cold run is there too) and
its own MLflow store: the first run's model becomes champion, the second's (pruned harder, less
accurate) challenger. `slimline schedule` serves the cron deployment meanwhile. Then the MLflow
UI (`slimline ui`) and the Prefect UI are opened and photographed, and each page is checked for
what a reviewer looks for on it. Chromium may only talk to 127.0.0.1.

The screenshots go to a temporary folder. `make screenshots` retakes the ones docs/tracking.md
shows, into reports/ui/, on the default params instead of the session's small ones
(SLIMLINE_UI_DEFAULT=1, SLIMLINE_UI_SHOTS=reports/ui): a cold run of the default chain, then
one with prune.ratio 0.5, whose model passes every gate without beating the first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.cli import SLIMLINE, commit, copy_project, env, mlflow_client, slimline
from tests.support.paths import ROOT
from tests.support.project import TINY, make_project
from tests.support.servers import free_port, start, stop
from tests.support.waiting import wait_for

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.ui,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium"),
]
# the default chain (make screenshots) or the session's small trained one, and for each the
# second run's change: a model that passes every gate but does not beat the first
DEFAULT = os.environ.get("SLIMLINE_UI_DEFAULT") == "1"
CHALLENGER = "prune.ratio=0.5" if DEFAULT else "prune.ratio=0.7"
FLAGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]  # fmt: skip
STAGES = ("prepare", "train_teacher", "distill", "prune", "quantize", "export", "validate",
          "benchmark")  # fmt: skip
CRON = "0 3 * * *"


def api(base: str, path: str, body: dict | None = None):
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(f"{base}/api{path}", data=data, method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def _project(request, dest: Path) -> Path:
    if DEFAULT:  # the project's own params.yaml: every section TINY shrinks, as it is
        defaults = yaml.safe_load((ROOT / "params.yaml").read_text())
        root = make_project(dest, **{section: defaults[section] for section in TINY})
        commit(root)
        return root
    return copy_project(request.getfixturevalue("flow_project").project, dest)


@pytest.fixture(scope="module")
def servers(request, tmp_path_factory):
    root = _project(request, tmp_path_factory.mktemp("ui") / "project")
    shots = Path(os.environ.get("SLIMLINE_UI_SHOTS") or tmp_path_factory.mktemp("shots"))
    shots = shots if shots.is_absolute() else ROOT / shots
    prefect_port, mlflow_port = free_port(), free_port()
    # the UI's own calls go to PREFECT_UI_API_URL (default port 4200), not to --port
    prefect_env = env(PREFECT_HOME=str(root / ".prefect"),
                      PREFECT_UI_API_URL=f"http://127.0.0.1:{prefect_port}/api")  # fmt: skip
    prefect = start(
        [str(Path(SLIMLINE).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
         "--port", str(prefect_port)],
        prefect_port, root / "prefect-server.log", cwd=root, health="/api/health",
        env=prefect_env,
    )  # fmt: skip
    prefect_base = f"http://127.0.0.1:{prefect_port}"
    served = None
    try:
        on_server = {"PREFECT_API_URL": f"{prefect_base}/api"}
        first = slimline(root, "run", **on_server)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
        second = slimline(root, "run", "-S", CHALLENGER, **on_server)
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
        assert "is challenger" in second.stdout, second.stdout
        flow_run = re.search(r"/runs/flow-run/([0-9a-f-]{36})", second.stderr).group(1)
        served = subprocess.Popen(
            [SLIMLINE, "schedule", "--cron", CRON], cwd=root, env=env(**on_server),
            stdout=(root / "schedule.log").open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        wait_for(lambda: api(prefect_base, "/deployments/filter"), timeout=120,
                 what="the scheduled deployment")  # fmt: skip
        mlflow = start([SLIMLINE, "ui", "--port", str(mlflow_port)], mlflow_port,
                       root / "ui.log", cwd=root)  # fmt: skip
        try:
            yield {"root": root, "prefect": prefect_base, "flow_run": flow_run, "shots": shots,
                   "mlflow": f"http://127.0.0.1:{mlflow_port}"}  # fmt: skip
        finally:
            stop(mlflow)
    finally:
        if served is not None:
            stop(served)
        stop(prefect)


@pytest.fixture(scope="module")
def page(servers):
    sync_api = pytest.importorskip("playwright.sync_api")
    local = (servers["prefect"], servers["mlflow"])
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        context = browser.new_context(viewport={"width": 1500, "height": 950})
        context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(local)
                      else r.abort())  # fmt: skip
        yield context.new_page()
        browser.close()


def open_page(page, url: str, *ready: str) -> str:
    page.goto(url)
    for text in ready:
        page.get_by_text(text).first.wait_for(timeout=60_000)
    close = page.get_by_role("button", name="Close")  # MLflow's assistant panel
    if close.count():
        close.first.click()
    page.wait_for_timeout(1000)  # charts and lists settle after their data arrived
    return page.inner_text("body")


def shot(page, servers: dict, name: str, full_page: bool = True) -> None:
    servers["shots"].mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(servers["shots"] / name), full_page=full_page)


def latest_parent(root: Path):
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name("slimline")
    found = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    parent = next(r for r in found if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return client, experiment.experiment_id, parent, children


def test_mlflow_experiment_shows_the_run_with_its_stage_children(servers, page):
    _, eid, parent, _ = latest_parent(servers["root"])
    name = parent.info.run_name
    open_page(page, f"{servers['mlflow']}/#/experiments/{eid}/runs", name)
    page.locator("[role=row]", has_text=name).locator("[role=gridcell] button").first.click()
    page.get_by_text("train_teacher").first.wait_for(timeout=30_000)
    text = page.inner_text("body")
    shot(page, servers, "mlflow_runs.png")
    assert all(stage in text for stage in STAGES)
    assert re.search(r"[0-9a-f]{7}", parent.data.tags["slimline.git_commit"])  # a real commit


def test_mlflow_parent_run_links_its_children_and_shows_the_verdict(servers, page):
    _, eid, parent, _ = latest_parent(servers["root"])
    url = f"{servers['mlflow']}/#/experiments/{eid}/runs/{parent.info.run_id}"
    text = open_page(page, url, "Child runs", "slimline.verdict", *STAGES)
    shot(page, servers, "mlflow_parent_run.png")
    assert parent.info.run_name in text and "challenger" in text


def test_mlflow_registry_shows_champion_and_challenger_on_real_versions(servers, page):
    client, _, _, _ = latest_parent(servers["root"])
    versions = client.search_model_versions("name='slimline-digits'")
    aliases = client.get_registered_model("slimline-digits").aliases  # alias -> version
    assert (
        set(aliases) == {"champion", "challenger"} and aliases["champion"] != aliases["challenger"]
    )
    text = open_page(page, f"{servers['mlflow']}/#/models/slimline-digits", "champion",
                     "challenger")  # fmt: skip
    shot(page, servers, "mlflow_registry.png")
    assert f"Version {aliases['challenger']}" in text
    for v in versions:  # real models: the INT8 file's size, not a placeholder
        assert int(float(v.tags["size_bytes"])) > 1000


def test_mlflow_run_curves(servers, page):
    _, eid, _, children = latest_parent(servers["root"])
    teacher = next(c for c in children if c.info.run_name == "train_teacher")
    url = f"{servers['mlflow']}/#/experiments/{eid}/runs/{teacher.info.run_id}/model-metrics"
    text = open_page(page, url, "curve/val_accuracy")
    shot(page, servers, "mlflow_curves.png")
    assert "curve/train_loss" in text


def test_prefect_flow_run_shows_its_stage_tasks_and_the_artifact(servers, page):
    url = f"{servers['prefect']}/runs/flow-run/{servers['flow_run']}"
    text = open_page(page, url, "Task Runs", "Completed")
    shot(page, servers, "prefect_flow_run.png", full_page=False)  # the graph; the logs go on below
    assert "10 Task runs" in text or "10 task runs" in text.lower()
    page.get_by_text("Task Runs", exact=True).first.click()
    page.get_by_text("benchmark").first.wait_for(timeout=60_000)
    tasks = page.inner_text("body")
    assert all(stage in tasks for stage in STAGES)
    (artifact,) = [a for a in api(servers["prefect"], "/artifacts/filter")
                   if a["flow_run_id"] == servers["flow_run"]]  # fmt: skip
    text = open_page(page, f"{servers['prefect']}/artifacts/artifact/{artifact['id']}", "Gates")
    shot(page, servers, "prefect_artifact.png")
    assert "min_accuracy" in text and "final_int8" in text


def test_prefect_shows_the_scheduled_deployment(servers, page):
    (deployment,) = api(servers["prefect"], "/deployments/filter")
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == [CRON]
    url = f"{servers['prefect']}/deployments/deployment/{deployment['id']}"
    text = open_page(page, url, "scheduled-retraining")
    shot(page, servers, "prefect_deployment.png", full_page=False)
    assert "At 03:00 AM" in text or CRON in text
