"""The default pipeline at x1, x4 and x16 the digits data: each stage's time and peak memory.

Run by hand from the repo root (not by CI):

    .venv/bin/python bench/scale.py           # x1, x4, x16 with params.yaml as it is
    .venv/bin/python bench/scale.py --quick   # x1 and x4, few epochs: a few minutes

Per multiplier m: digits plus m-1 augmented copies (numpy only, deterministic: a small rotation,
a sub-pixel shift and pixel noise per image; copy 0 is the original, and the copies of x4 are
the first copies of x16) written as an npz; a temp copy of the project (the git-tracked files,
.dvc/config, a fresh git repo, no DVC cache) whose params.yaml reads it via `data.source: npz`;
then every stage of dvc.yaml, in order, as `dvc repro -s <stage>`. For each stage: wall time,
CPU time of the process tree and peak RSS from the kernel (`os.wait4`: ru_maxrss is the largest
single process of the tree, which is the stage's python, not DVC), plus the tree's summed RSS
sampled every 0.1 s with psutil. The copy's own `src/` is imported (PYTHONPATH), not the
editable install. Tables and figure: bench/scale_report.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml
from scale_report import plot, tables

from slimline.compression.data import SPLITS, load_source
from slimline.core.atomic import read_json, write_json, write_text
from slimline.core.env import quiet_telemetry
from slimline.core.params import Data, load_params, write_params

BENCH = Path(__file__).resolve().parent
MAX_DEGREES, MAX_SHIFT, NOISE = 12.0, 1.0, 0.03  # pixels are in [0, 1], 8x8
QUICK = [  # a few minutes instead of ~25: fewer epochs and timing repetitions
    "teacher.epochs=3",
    "student.epochs=5",
    "prune.finetune_epochs=2",
    "benchmark.warmup=10",
    "benchmark.runs=100",
]
STAGE_TIMEOUT_S = 3600


def augment(x: np.ndarray, y: np.ndarray, multiplier: int, seed: int) -> tuple:
    """x (N, 1, H, W) in [0, 1] plus multiplier-1 warped copies; copy k uses seed (seed, k)."""
    copies = [x] + [_warp(x, np.random.default_rng([seed, k])) for k in range(1, multiplier)]
    return np.concatenate(copies), np.tile(y, multiplier)


def _warp(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate and shift each image (bilinear, zeros outside), add noise, clip to [0, 1]."""
    n, _, h, w = x.shape
    theta = np.deg2rad(rng.uniform(-MAX_DEGREES, MAX_DEGREES, n))[:, None, None]  # (N, 1, 1)
    shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, (n, 2))
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")  # (H, W)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    # inverse map: output pixel p reads the input at R(theta) (p - centre - shift) + centre
    dy = rows[None] - cy - shift[:, 0, None, None]  # (N, H, W)
    dx = cols[None] - cx - shift[:, 1, None, None]
    sy = np.cos(theta) * dy - np.sin(theta) * dx + cy
    sx = np.sin(theta) * dy + np.cos(theta) * dx + cx
    pad = 3  # |offset| <= 12 deg on a 5 px radius + 1 px shift < 3: outside reads zeros
    padded = np.pad(x[:, 0], ((0, 0), (pad, pad), (pad, pad)))
    y0, x0 = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
    wy, wx = sy - y0, sx - x0
    idx = np.arange(n)[:, None, None]

    def at(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return padded[
            idx, np.clip(r + pad, 0, h + 2 * pad - 1), np.clip(c + pad, 0, w + 2 * pad - 1)
        ]

    out = (
        (1 - wy) * (1 - wx) * at(y0, x0)
        + (1 - wy) * wx * at(y0, x0 + 1)
        + wy * (1 - wx) * at(y0 + 1, x0)
        + wy * wx * at(y0 + 1, x0 + 1)
    )
    out += rng.normal(0, NOISE, out.shape)
    return np.clip(out, 0, 1).astype(np.float32)[:, None]


def copy_project(root: Path, dest: Path) -> None:
    """The git-tracked files as they are in the working tree, .dvc/config, a fresh git repo."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.decode()
    for name in {*filter(None, listed.split("\0")), ".dvc/config"}:
        if (root / name).is_file():  # a tracked file deleted in the working tree is skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, dest / name)
    subprocess.run(["git", "init", "-q", str(dest)], check=True)  # DVC wants an SCM


class TreeRss(threading.Thread):
    """Peak of the summed RSS of a process and its descendants, sampled every 0.1 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, 0, threading.Event()

    def run(self) -> None:
        import psutil  # a dependency of slimline

        while not self._done.wait(0.1):
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            total = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):  # exited between listing and reading
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)

    def stop(self) -> None:
        self._done.set()
        self.join()


def timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> dict:
    """Run cmd in its own process group; wall and CPU seconds, peak RSS (MB), exit code."""
    load = os.getloadavg()[0]
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        sampler, killer = TreeRss(proc.pid), threading.Timer(STAGE_TIMEOUT_S, _kill, [proc.pid])
        sampler.start()
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # rusage of the whole reaped tree
        except BaseException:
            _kill(proc.pid)
            raise
        finally:
            killer.cancel()
            sampler.stop()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "tree_rss_mb": sampler.peak / 2**20,
        "load_1min": load,
        "exit_code": proc.returncode,
    }


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)


def run_multiplier(root: Path, m: int, overrides: list[str], work: Path) -> dict:
    """Copy the project, write the x m data, repro stage by stage; the measurements."""
    dest = work / f"x{m}"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    copy_project(root, dest)
    seed = load_params(dest / "params.yaml").seed
    digits = load_source(Data(), dest)
    x, y = augment(digits.x, digits.y, m, seed)
    data = dest / "data" / "raw" / f"digits_x{m}.npz"
    np.savez(data, x=x, y=y, class_names=np.asarray(digits.class_names))
    overrides = ["data.source=npz", f"data.path={data.relative_to(dest)}", *overrides]
    write_params(dest / "params.yaml", dest / "params.yaml", overrides)
    load_params(dest / "params.yaml")  # fail here, not in the first stage
    bin_dir = Path(sys.executable).parent
    env = os.environ | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(dest / "src"),  # the copy's code, not the editable install's
    }
    dvc = str(bin_dir / "dvc")
    stages = list(yaml.safe_load((dest / "dvc.yaml").read_text())["stages"])
    result = {"multiplier": m, "samples": len(y), "x_mb": x.nbytes / 2**20, "stages": {}}
    for stage in stages:
        print(f"scale: x{m} {stage} ...", end=" ", flush=True)
        r = timed([dvc, "repro", "-s", stage], dest, env, dest / f"{stage}.log")
        print(f"{r['wall_s']:.1f} s, {r['peak_rss_mb']:.0f} MB", flush=True)
        if r["exit_code"] != 0:
            raise RuntimeError(f"x{m}: stage {stage} failed; see {dest / f'{stage}.log'}")
        result["stages"][stage] = r
    result["dvc_noop"] = timed([dvc, "repro"], dest, env, dest / "noop.log")
    result["outcome"] = _outcome(dest)
    return result


def _outcome(dest: Path) -> dict:
    """What the run produced: split sizes, accuracies, gates (sanity, not the point)."""
    splits = read_json(dest / "reports" / "data_validation.json")["splits"]
    return {
        "split_samples": {k: splits[k]["samples"] for k in SPLITS},
        "teacher_accuracy": read_json(dest / "metrics" / "teacher.json")["accuracy"],
        "final_int8_accuracy": read_json(dest / "metrics" / "quantize.json")["int8_accuracy"],
        "gates_passed": read_json(dest / "reports" / "gates.json")["passed"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=BENCH.parent, help="slimline checkout")
    parser.add_argument("--quick", action="store_true", help="x1 and x4 with few epochs")
    parser.add_argument("--multipliers", type=int, nargs="+", help="default 1 4 16 (quick: 1 4)")
    parser.add_argument("--keep", action="store_true", help="keep the copies in bench/.scratch")
    parser.add_argument("--out", type=Path, help="default bench/results (quick: bench/.scratch)")
    args = parser.parse_args(argv)
    quiet_telemetry()
    root = args.project.resolve()
    ms = sorted(set(args.multipliers or ([1, 4] if args.quick else [1, 4, 16])))
    out = args.out or (BENCH / ".scratch" if args.quick else BENCH / "results")
    overrides = QUICK if args.quick else []
    runs, started = [], dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="slimline-scale-") as tmp:
        work = BENCH / ".scratch" / "scale" if args.keep else Path(tmp)
        for m in ms:
            runs.append(run_multiplier(root, m, overrides, work))
    title = "quick (" + ", ".join(QUICK) + ")" if args.quick else "params.yaml as it is"
    text = (
        f"# Pipeline at x{', x'.join(map(str, ms))} the digits data: {title}\n\n"
        f"Measured {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, on a machine shared with "
        "other engineers' test runs (the load column says how busy it was).\n\n" + tables(runs)
    )
    print(text)
    write_text(out / "scale.md", text)
    # JSON keys come out sorted: keep dvc.yaml's stage order beside them
    order = list(runs[0]["stages"])
    write_json(out / "scale.json", {"overrides": overrides, "stage_order": order, "runs": runs})
    plot(runs, out / "scale.png")
    print(f"scale: wrote {out / 'scale.md'}, scale.json and scale.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
