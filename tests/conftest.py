"""Shared fixtures: tiny data made here, a params file per test, telemetry off."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from slimline.core.env import quiet_telemetry
from tests.support import workers
from tests.support.data import make_images

quiet_telemetry()


@pytest.fixture
def npz_file(tmp_path: Path) -> Path:
    x, y = make_images()
    path = tmp_path / "tiny.npz"
    np.savez(path, x=x, y=y, class_names=np.array(["a", "b", "c"]))
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    from PIL import Image

    x, y = make_images(n_per_class=10, size=12)
    root = tmp_path / "images"
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img[0] * 255).astype(np.uint8), mode="L").save(folder / f"{i}.png")
    return root


@pytest.fixture
def restore_torch_state():
    """seed_everything changes process-wide torch settings: give them back to other tests."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    # torch.backends.nnpack has a setter only: its getter is torch._C's
    mkldnn, nnpack = torch.backends.mkldnn.enabled, torch._C._get_nnpack_enabled()
    yield
    torch.set_num_threads(threads)
    torch.backends.mkldnn.set_flags(mkldnn)  # reproducible: true turns both off
    torch.backends.nnpack.set_flags(nnpack)
    if torch.are_deterministic_algorithms_enabled() != deterministic:  # 1+ s the first time
        torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope="session")
def pipeline_once(tmp_path_factory) -> Path:
    """A project after one complete, successful `dvc repro` on TRAINED params, shared by the
    session: copy it (shutil.copytree(..., symlinks=True)) before changing anything."""
    from tests.support.project import TRAINED, dvc_repro, make_project

    project = make_project(tmp_path_factory.mktemp("pipeline") / "project", **TRAINED)
    result = dvc_repro(project)
    assert result.returncode == 0, result.stdout + result.stderr
    return project


@pytest.fixture
def workspace(pipeline_once):
    """`workspace(root, **variations)`: a copy of the session's real run at `root`, varied by
    editing its real reports (tests/support/workspace.py `build`); returns the copy's params."""
    from tests.support.workspace import build

    return functools.partial(build, pipeline_once)


# Fixtures that run the real pipeline (once per session, but minutes on 2 cores): a test that
# asks for one, even through another fixture, must be marked slow, or `make test-fast` would
# quietly run the pipeline.
PIPELINE_FIXTURES = ("pipeline_once", "flow_project")


def pytest_configure(config):
    workers.configure(config)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: absent without it
def pytest_xdist_make_scheduler(config, log):
    return workers.scheduler(config, log)


@pytest.hookimpl(tryfirst=True)  # before -m deselects: every worker sees every test
def pytest_collection_modifyitems(config, items):
    unmarked = [
        item.nodeid
        for item in items
        if workers.uses(item, PIPELINE_FIXTURES) and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests run the pipeline but are not marked slow: " + ", ".join(unmarked)
        )
    workers.arrange(config, items)
