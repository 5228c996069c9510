"""The default pipeline at x1 up to x64 the data: each stage's time and peak memory.

Run by hand from the repo root (not by CI), niced on a shared machine (2 cores, 2026-11-26):

    .venv/bin/python bench/scale.py           # digits x1, x4, x16, x64, params.yaml as it is
    .venv/bin/python bench/scale.py --quick   # digits x1 and x64, few epochs (~15 min)
    .venv/bin/python bench/scale.py --data images                # prepare, 1,090 vs 70,000
    .venv/bin/python bench/scale.py --data images --stages all --quick   # every stage (~6 min)

Digits, per multiplier m: digits plus m-1 augmented copies (numpy only, deterministic: a small
rotation, a sub-pixel shift and pixel noise per image; copy 0 is the original, and the copies of
x4 are the first copies of x16) written as an npz (x64: 115,008 samples). Images: a generated
folder of --images RGB PNGs (default 70,000 of 32x32 in 10 classes of coloured shapes on noisy
backgrounds: 205 MiB of uint8 pixels, 820 MiB as the float32 x prepare used to hold), written
once to a cache under the temp dir (~1 min); its x1 is the first 1/64 of every class, and x64
the whole folder. Then a temp copy of the project (the files git does not ignore, .dvc/config,
a fresh git repo, no DVC cache) whose params.yaml reads the data (`data.source: npz` or
`image-folder`, the images hard-linked into it), and the stages of dvc.yaml, in order, as
`dvc repro -s <stage>`. For each stage: wall time, CPU time of the process tree and peak RSS
from the kernel (`os.wait4`: ru_maxrss is the largest single process of the tree, which is the
stage's python, not DVC), plus the tree's summed RSS sampled every 0.1 s with psutil. The
copy's own `src/` is imported (PYTHONPATH), not the editable install. The goal (issue 15): at
x64 every stage's peak RSS at most 1.5x its x1 RSS, and time per sample no worse. Tables and
figure: bench/scale_report.py.
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

from slimline.compression.data.dataset import SPLITS
from slimline.compression.data.sources import load_source
from slimline.core.atomic import read_json, write_json, write_text
from slimline.core.env import quiet_telemetry
from slimline.core.params.inputs import Data
from slimline.core.params.loading import load_params, write_params

BENCH = Path(__file__).resolve().parent
MAX_DEGREES, MAX_SHIFT, NOISE = 12.0, 1.0, 0.03  # pixels are in [0, 1], 8x8
QUICK = [  # minutes instead of hours: fewer epochs and timing repetitions
    "teacher.epochs=3",
    "student.epochs=5",
    "prune.finetune_epochs=2",
    "benchmark.warmup=10",
    "benchmark.runs=100",
]
# 32x32 RGB on 2 CPU cores: the default ResNet teacher takes ~10 min an epoch on 45k images;
# memory is what is measured, so the image runs train small models for one epoch
IMAGE_QUICK = [
    *QUICK,
    "teacher.width=8",
    "teacher.depth=1",
    "teacher.epochs=1",
    "student.width=4",
    "student.depth=2",
    "student.epochs=1",
    "prune.finetune_epochs=1",
]
STAGE_TIMEOUT_S = 3600
SHAPES = ("disc", "square", "bar", "cross", "ring")  # x 2 colour families: 10 classes


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


def image_folder(count: int, size: int, seed: int) -> Path:
    """The generated image folder (10 classes of count // 10), made once in a cache under the
    temp dir, with its x1 (the first 1/64 of every class, hard-linked) beside it."""
    per_class = count // 10
    cache = Path(tempfile.gettempdir()) / "slimline-scale-images" / f"{per_class}x10-{size}-{seed}"
    if not (cache / ".complete").is_file():
        shutil.rmtree(cache, ignore_errors=True)
        print(f"scale: generating {per_class * 10} images in {cache} ...", flush=True)
        for k in range(10):
            _write_class(cache / "x64" / f"class_{k}", k, per_class, size, seed)
        for k in range(10):
            _link_tree(cache / "x64" / f"class_{k}", cache / "x1" / f"class_{k}", per_class // 64)
        (cache / ".complete").write_text("")
    return cache


def _write_class(folder: Path, k: int, n: int, size: int, seed: int) -> None:
    """n PNGs of one class: shape SHAPES[k % 5] in a warm (k < 5) or cool colour on noise."""
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng([seed, k])
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        img = rng.integers(0, 70, (size, size, 3), dtype=np.uint8)
        cy, cx = rng.integers(size // 4, size - size // 4, 2)
        r = int(rng.integers(size // 8, size // 4 + 1))
        dy, dx = np.abs(yy - cy), np.abs(xx - cx)
        mask = {
            "disc": dy**2 + dx**2 <= r * r,
            "square": (dy <= r) & (dx <= r),
            "bar": (dy <= 2) & (dx <= r + 3),
            "cross": ((dy <= 1) & (dx <= r)) | ((dx <= 1) & (dy <= r)),
            "ring": np.abs(np.sqrt(dy**2 + dx**2) - r) <= 1.2,
        }[SHAPES[k % 5]]
        colour = rng.integers(140, 256, 3)
        colour[2 if k < 5 else 0] //= 3  # warm: little blue; cool: little red
        img[mask] = colour
        Image.fromarray(img, mode="RGB").save(folder / f"{i:05d}.png", compress_level=1)


def _link_tree(src: Path, dest: Path, limit: int | None = None) -> None:
    """Hard links to the first `limit` files of src (sorted) in dest; copies across devices."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir())[:limit]:
        try:
            os.link(f, dest / f.name)
        except OSError:
            shutil.copy2(f, dest / f.name)


def digits_data(m: int, seed: int, dest: Path) -> dict:
    """Write digits x m into the copy; its params overrides and size."""
    digits = load_source(Data(), dest)
    x, y = augment(digits.x, digits.y, m, seed)
    data = dest / "data" / "raw" / f"digits_x{m}.npz"
    np.savez(data, x=x, y=y, class_names=np.asarray(digits.class_names))
    return {
        "overrides": ["data.source=npz", f"data.path={data.relative_to(dest)}"],
        "samples": len(y),
        "x_mb": x.nbytes / 2**20,
    }


def images_data(m: int, cache: Path, dest: Path) -> dict:
    """Link the image folder's x m (x1 or x64) into the copy; its params overrides and size."""
    from PIL import Image

    folder = dest / "data" / "raw" / "images"
    for cls in sorted((cache / f"x{m}").iterdir()):
        _link_tree(cls, folder / cls.name)
    files = sorted(folder.glob("*/*.png"))
    with Image.open(files[0]) as im:
        size = im.size[0]
    return {
        "overrides": [
            "data.source=image-folder",
            f"data.path={folder.relative_to(dest)}",
            f"data.image_size={size}",
        ],
        "samples": len(files),
        "x_mb": len(files) * 3 * size * size * 4 / 2**20,  # float32, as prepare used to hold it
        "pixels_mb": len(files) * 3 * size * size / 2**20,
        "files_mb": sum(f.stat().st_size for f in files) / 2**20,
    }


def copy_project(root: Path, dest: Path) -> None:
    """The working tree's files that git does not ignore (tracked, and new ones not yet
    added), as they are, .dvc/config, a fresh git repo."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
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


def run_multiplier(
    root: Path, m: int, overrides: list[str], work: Path, kind: str, only: list[str] | None
) -> dict:
    """Copy the project, write the x m data, repro stage by stage (`only` those); the
    measurements."""
    dest = work / f"{kind}-x{m}"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    copy_project(root, dest)
    seed = load_params(dest / "params.yaml").seed
    if kind == "digits":
        made = digits_data(m, seed, dest)
    else:
        made = images_data(m, image_folder(IMAGES["count"], IMAGES["size"], seed), dest)
    overrides = [*made.pop("overrides"), *overrides]
    write_params(dest / "params.yaml", dest / "params.yaml", overrides)
    load_params(dest / "params.yaml")  # fail here, not in the first stage
    bin_dir = Path(sys.executable).parent
    env = os.environ | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(dest / "src"),  # the copy's code, not the editable install's
    }
    dvc = str(bin_dir / "dvc")
    stages = list(yaml.safe_load((dest / "dvc.yaml").read_text())["stages"])
    stages = [s for s in stages if only is None or s in only]
    result = {"data": kind, "multiplier": m, **made, "stages": {}}
    for stage in stages:
        print(f"scale: {kind} x{m} {stage} ...", end=" ", flush=True)
        r = timed([dvc, "repro", "-s", stage], dest, env, dest / f"{stage}.log")
        print(f"{r['wall_s']:.1f} s, {r['peak_rss_mb']:.0f} MB", flush=True)
        if r["exit_code"] != 0:
            raise RuntimeError(f"x{m}: stage {stage} failed; see {dest / f'{stage}.log'}")
        result["stages"][stage] = r
    last = stages[-1] if only else None
    result["dvc_noop"] = timed([dvc, "repro", *([last] if last else [])], dest, env,
                               dest / "noop.log")  # fmt: skip
    result["outcome"] = _outcome(dest, stages)
    return result


def _outcome(dest: Path, ran: list[str]) -> dict:
    """What the run produced: split sizes, accuracies, gates (sanity, not the point); None
    for a stage not run (the copy holds the checkout's committed metrics)."""

    def read(path: str, key: str):
        stage = {"teacher": "train_teacher", "quantize": "quantize", "gates": "validate"}
        return read_json(dest / path)[key] if stage[Path(path).stem] in ran else None

    report = read_json(dest / "reports" / "data_validation.json")
    return {
        "split_samples": {k: report["splits"][k]["samples"] for k in SPLITS},
        "learnability": report["learnability"],
        "teacher_accuracy": read("metrics/teacher.json", "accuracy"),
        "final_int8_accuracy": read("metrics/quantize.json", "int8_accuracy"),
        "gates_passed": read("reports/gates.json", "passed"),
    }


IMAGES = {"count": 70_000, "size": 32}  # --images, --image-size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=BENCH.parent, help="slimline checkout")
    parser.add_argument("--quick", action="store_true", help="few epochs (images: small models)")
    parser.add_argument("--data", choices=["digits", "images"], default="digits")
    parser.add_argument(
        "--multipliers", type=int, nargs="+", help="digits; default 1 4 16 64 (quick: 1 64)"
    )
    parser.add_argument("--images", type=int, default=IMAGES["count"], help="x64 image count")
    parser.add_argument("--image-size", type=int, default=IMAGES["size"])
    parser.add_argument(
        "--stages", default=None, help="comma-separated, or all (default: all; images: prepare)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the copies in bench/.scratch")
    parser.add_argument("--out", type=Path, help="default bench/results (quick: bench/.scratch)")
    parser.add_argument("--name", help="file names in --out (default scale, images: scale_images)")
    args = parser.parse_args(argv)
    quiet_telemetry()
    root = args.project.resolve()
    images = args.data == "images"
    IMAGES.update(count=args.images, size=args.image_size)
    if images:
        ms = [1, 64]  # the first 1/64 of the folder, and all of it
    else:
        ms = sorted(set(args.multipliers or ([1, 64] if args.quick else [1, 4, 16, 64])))
    stages = args.stages or ("prepare" if images else "all")
    only = None if stages == "all" else stages.split(",")
    out = args.out or (BENCH / ".scratch" if args.quick else BENCH / "results")
    name = args.name or ("scale_images" if images else "scale")
    overrides = (IMAGE_QUICK if images else QUICK) if args.quick else []
    runs, started = [], dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="slimline-scale-") as tmp:
        work = BENCH / ".scratch" / "scale" if args.keep else Path(tmp)
        for m in ms:
            runs.append(run_multiplier(root, m, overrides, work, args.data, only))
    title = "quick (" + ", ".join(overrides) + ")" if args.quick else "params.yaml as it is"
    what = (
        f"{runs[-1]['samples']:,} generated {args.image_size}x{args.image_size} RGB images "
        f"({runs[-1]['pixels_mb']:.0f} MB of pixels, {runs[-1]['x_mb']:.0f} MB as float32; "
        f"{runs[-1]['files_mb']:.0f} MB of PNG) and their first 1/64"
        if images
        else "the digits data"
    )
    text = (
        f"# Pipeline at x{', x'.join(map(str, ms))} {what}: {title}\n\n"
        f"Measured {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, on a machine shared with "
        "other engineers' test runs (the load column says how busy it was).\n\n" + tables(runs)
    )
    print(text)
    write_text(out / f"{name}.md", text)
    # JSON keys come out sorted: keep dvc.yaml's stage order beside them
    order = list(runs[0]["stages"])
    write_json(out / f"{name}.json", {"overrides": overrides, "stage_order": order, "runs": runs})
    plot(runs, out / f"{name}.png")
    print(f"scale: wrote {out / name}.md, .json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
