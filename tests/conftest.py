"""Shared fixtures: tiny data made here, a params file per test, telemetry off."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from slimline.core.env import quiet_telemetry

quiet_telemetry()
ROOT = Path(__file__).resolve().parents[1]


def make_images(n_per_class: int = 12, classes: int = 3, size: int = 8, seed: int = 0):
    """Separable (N, 1, size, size) images: class k lights a band of rows."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.2, (n_per_class * classes, 1, size, size)).astype(np.float32)
    y = np.repeat(np.arange(classes), n_per_class)
    band = size // classes
    for i, k in enumerate(y):
        x[i, 0, k * band : (k + 1) * band] += 0.8
    return x, y.astype(np.int64)


def make_signals(n: int, channels: int = 2, length: int = 64, classes: int = 3, seed: int = 0):
    """(N, C, L) sine waves, class k at 2 + 2k cycles per window (a harmonic of it on the second
    channel), random phase and amplitude, plus noise: separable by frequency, not by level."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % classes).astype(np.int64)
    t = np.arange(length) / length
    cycles = (2 + 2 * y)[:, None, None] * np.arange(1, channels + 1)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, (n, channels, 1))
    amplitude = rng.uniform(0.5, 1.5, (n, 1, 1))
    x = amplitude * np.sin(2 * np.pi * cycles * t + phase)
    x = x + rng.normal(scale=0.3, size=(n, channels, length))
    return x.astype(np.float32), y


def make_signal_split(n: int, seed: int = 0, **kwargs):
    """A `Split` of `make_signals` (2 channels, L=64, 3 classes): mean 0, std about 1 already."""
    from slimline.compression.data.dataset import Split

    x, y = make_signals(n, seed=seed, **kwargs)
    names = [str(k) for k in range(int(y.max()) + 1)]
    c = x.shape[1]
    return Split(x, y, names, np.zeros(c, np.float32), np.ones(c, np.float32), 1.0)


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


def wine_frame():
    """scikit-learn's bundled wine data (178 rows, 13 numeric features, classes 0..2) as a
    DataFrame with a `target` column: a real table, made here, nothing downloaded."""
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame


def write_table(frame, path: Path) -> Path:
    """`frame` as CSV (.csv) or Parquet (.parquet / .pq), without the index."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def make_split(n: int, shape=(1, 8, 8), classes: int = 3, seed: int = 0):
    """A `Split` of noisy copies of one fixed random prototype per class: easy, not trivial."""
    from slimline.compression.data.dataset import Split

    protos = np.random.default_rng(123).normal(size=(classes, *shape)).astype(np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n).astype(np.int64)
    x = (protos[y] + rng.normal(scale=0.8, size=(n, *shape))).astype(np.float32)
    names = [str(k) for k in range(classes)]
    return Split(x, y, names, np.zeros(1, np.float32), np.ones(1, np.float32), 1.0)


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


def write_params(path: Path, **sections) -> Path:
    """A valid params file: the project's params.yaml with `sections` merged in."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in sections.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_stage(stage: str, params: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "true"}
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / f"{stage}.py"), "--params", str(params)],
        cwd=params.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture(scope="session")
def pipeline_once(tmp_path_factory) -> Path:
    """A project after one complete, successful `dvc repro` on TRAINED params, shared by the
    session: copy it (shutil.copytree(..., symlinks=True)) before changing anything."""
    from tests.project import TRAINED, dvc_repro, make_project

    project = make_project(tmp_path_factory.mktemp("pipeline") / "project", **TRAINED)
    result = dvc_repro(project)
    assert result.returncode == 0, result.stdout + result.stderr
    return project


@pytest.fixture
def workspace(pipeline_once):
    """`workspace(root, **variations)`: a copy of the session's real run at `root`, varied by
    editing its real reports (tests/workspace.py `build`); returns the copy's params."""
    from tests.workspace import build

    return functools.partial(build, pipeline_once)


# Fixtures that run the real pipeline (once per session, but minutes on 2 cores): a test that
# asks for one, even through another fixture, must be marked slow, or `make test-fast` would
# quietly run the pipeline.
PIPELINE_FIXTURES = {"pipeline_once", "flow_project"}


def pytest_collection_modifyitems(config, items):
    unmarked = [
        item.nodeid
        for item in items
        if PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests run the pipeline but are not marked slow: " + ", ".join(unmarked)
        )


def quick_train(model, x: np.ndarray, y: np.ndarray, epochs: int):
    """A few epochs of Adam (lr 0.01, batches of 100, in order) for tests that need a model that
    has learned something; one thread: on a busy 2-core machine, 2 OpenMP threads spin at
    barriers (3 s became 16 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    try:
        for _ in range(epochs):
            for i in range(0, len(x), 100):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xt[i : i + 100]), yt[i : i + 100])
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()
