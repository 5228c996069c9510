"""The MLflow UI as a user sees it: `slimline ui`, opened in headless Chromium.

Screenshots go to reports/ui/ of the project. Chromium may only talk to 127.0.0.1: its own
DNS is mapped away and every request to another address is aborted before it leaves.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from slimline.records.registry import decide_and_promote
from slimline.records.tracking import log_pipeline_run
from tests.conftest import ROOT
from tests.servers import free_port, start, stop
from tests.workspace import STAGES, build

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.ui,
    pytest.mark.slow,  # the runs shown are copies of the session's real pipeline run
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"
    ),
]
SHOTS = ROOT / "reports" / "ui"
FLAGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory, pipeline_once):
    """A project with three recorded runs of the real pipeline's outputs (their accuracy
    varied): v2 champion, v3 challenger, all in its own store."""
    root = tmp_path_factory.mktemp("ui-project")
    runs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        for accuracy in (0.97, 0.99, 0.98):
            params = build(pipeline_once, root, accuracy=accuracy)
            stages = [{"name": s, "status": "ran", "seconds": 1.0} for s in STAGES]
            record = log_pipeline_run(root, params, stages)
            runs.append((record, decide_and_promote(root, params, record.run_id)))
        port = free_port()
        slimline = Path(sys.executable).with_name("slimline")
        proc = start([str(slimline), "ui", "--port", str(port)], port, root / "ui.log", cwd=root)
    yield f"http://127.0.0.1:{port}", runs
    stop(proc)


@pytest.fixture(scope="module")
def page(project):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    base, _ = project
    left: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        context = browser.new_context(viewport={"width": 1500, "height": 950})

        def local_only(route):
            if route.request.url.startswith(base):
                route.continue_()
            else:
                left.append(route.request.url)
                route.abort()

        context.route("**/*", local_only)
        yield context.new_page()
        browser.close()
    print(f"requests kept from leaving 127.0.0.1: {left or 'none'}")


def open_page(page, url: str, *ready: str) -> str:
    """Open `url` and wait until every text in `ready` is shown (the UI polls its API, so the
    network never goes idle: wait for the content itself)."""
    page.goto(url)
    for text in ready:
        page.get_by_text(text).first.wait_for(timeout=30_000)
    close = page.get_by_role("button", name="Close")  # the assistant panel hides half the page
    if close.count():
        close.first.click()
    return page.inner_text("body")


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_registered_model_shows_champion_and_challenger(project, page):
    base, runs = project
    text = open_page(page, f"{base}/#/models/slimline-test", "Version 3", "champion", "challenger")
    shot(page, "registered_model.png")
    (_, v1), (_, v2), (_, v3) = runs
    assert (v1.version, v2.version, v3.version) == ("1", "2", "3") and v2.champion
    between = text[text.index("Version 3") : text.index("Version 1")]
    assert "challenger" in between.split("Version 2")[0]
    assert "champion" in between.split("Version 2")[1]


def test_experiment_lists_the_parent_run_with_its_stage_children(project, page):
    base, runs = project
    record, _ = runs[1]
    open_page(page, f"{base}/#/experiments/{record.experiment_id}/runs", record.run_name)
    row = page.locator("[role=row]", has_text=record.run_name)
    row.locator("[role=gridcell] button").first.click()  # the expander of its child runs
    page.get_by_text("train_teacher").first.wait_for(timeout=30_000)
    text = page.inner_text("body")
    shot(page, "runs_with_children.png")
    assert all(stage in text for stage in STAGES)


def test_parent_run_page_links_children_and_shows_the_verdict(project, page):
    base, runs = project
    record, _ = runs[1]
    url = f"{base}/#/experiments/{record.experiment_id}/runs/{record.run_id}"
    text = open_page(page, url, "Child runs", "slimline.verdict", *STAGES)
    shot(page, "parent_run.png")
    assert record.run_name in text and "slimline.verdict" in text
    assert all(stage in text for stage in STAGES)
