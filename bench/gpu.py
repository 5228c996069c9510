"""The default teacher and student trained on a CIFAR-size generated set, on the CPU and on CUDA.

Run by hand (not by CI), from the repo root:

    .venv/bin/python bench/gpu.py                 # every device here; CUDA rows when torch sees one
    .venv/bin/python bench/gpu.py --quick         # a smoke run: 2,048 samples, 1 epoch

On a GPU machine where the project cannot be installed (another Python, no DVC / MLflow /
Prefect), only torch, numpy and the library's own imports (pydantic) are needed:

    PYTHONPATH=src python bench/gpu.py --out /tmp/gpu

Data: 50,000 + 10,000 RGB 32x32 images of 10 classes (5 shapes x 2 colour families on noisy
backgrounds, at random places and sizes), generated here from a seed: CIFAR's size and shape,
nothing downloaded. Models: params.yaml's defaults, the resnet teacher (40 x 2, 1.09M params)
and the cnn student (32 x 3), built by `families.build_model`; trained by `fit.fit` (AdamW,
OneCycle, best val epoch) with `data.augment: crop_flip` views, as the pipeline trains them.

Rows: each model on each device and precision (CPU fp32; CUDA fp32 and bf16 with channels-last).
The CPU trains a subset (`--cpu-samples`) since one CPU epoch of the full set takes minutes; its
samples/s still compare. Figures: seconds per epoch (wall, including the per-epoch val pass),
train samples/s, peak GPU memory, test accuracy of the same recipe (the GPU rows train the full
set, so their accuracy is the one to quote). Writes `<out>.md` and `<out>.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from slimline.compression.data.dataset import Split
from slimline.compression.models.families import build_model, count_params
from slimline.compression.scores import accuracy
from slimline.compression.training.augment import from_mode
from slimline.compression.training.device import accelerator
from slimline.compression.training.fit import fit, predict_logits, seed_everything
from slimline.compression.training.setup import Setup
from slimline.core.atomic import write_json, write_text
from slimline.core.params.models import ModelSpec

BENCH = Path(__file__).resolve().parent
CLASSES = 10
SHAPES = 5  # x 2 colour families = 10 classes


def shapes(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n RGB images (n, 3, size, size) in [0, 1] and their labels, vectorized."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    shape, family = y % SHAPES, y // SHAPES
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    cy, cx = (rng.uniform(9, size - 9, (2, n, 1, 1))).astype(np.float32)
    r = rng.uniform(4, 8, (n, 1, 1)).astype(np.float32)
    dy, dx = yy - cy, xx - cx
    masks = np.stack(
        [
            dy**2 + dx**2 <= r**2,  # disc
            (abs(dy) <= r) & (abs(dx) <= r),  # square
            (abs(dy) <= 2) & (abs(dx) <= r + 3),  # bar
            abs(dy) + abs(dx) <= r,  # diamond
            (abs(dy) <= r) & (abs(dx) <= 2) | (abs(dx) <= r) & (abs(dy) <= 2),  # cross
        ]
    )[shape, np.arange(n)]  # (n, size, size)
    x = rng.uniform(0, 0.35, (n, 3, size, size)).astype(np.float32)
    warm = rng.uniform([0.6, 0.2, 0.0], [1.0, 0.6, 0.3], (n, 3))  # reds and oranges
    cool = rng.uniform([0.0, 0.3, 0.6], [0.3, 0.8, 1.0], (n, 3))  # blues and teals
    colour = np.where(family[:, None] == 0, warm, cool).astype(np.float32)
    x = np.where(masks[:, None], colour[:, :, None, None], x)
    return x, y.astype(np.int64)


def splits(train_n: int, test_n: int, seed: int = 0) -> tuple[Split, Split, Split]:
    x, y = shapes(train_n + 2 * test_n, seed=seed)
    mean = x[:train_n].mean(axis=(0, 2, 3))
    std = x[:train_n].std(axis=(0, 2, 3))
    x = ((x - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
    names = [str(k) for k in range(CLASSES)]
    parts = [(0, train_n), (train_n, train_n + test_n), (train_n + test_n, len(x))]
    return tuple(Split(x[a:b], y[a:b], names, mean, std, 1.0) for a, b in parts)  # type: ignore[return-value]


def run(role: str, device: str, precision: str, data, epochs: int, batch: int, seed: int) -> dict:
    train, val, test = data
    acc = accelerator(device, precision)  # type: ignore[arg-type]
    spec = ModelSpec(arch="resnet" if role == "teacher" else "cnn", epochs=epochs, lr=0.003,
                     batch_size=batch).sized(role)  # fmt: skip
    seed_everything(seed, torch.get_num_threads())
    model = build_model(spec, train.input_shape, CLASSES, role)
    if acc.cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    start = time.perf_counter()
    setup = Setup(train, val, epochs=epochs, lr=spec.lr, batch_size=batch, weight_decay=5e-4,
                  seed=seed, acc=acc, augment=from_mode("crop_flip"))  # fmt: skip
    fit(model, setup, desc=f"{role} {device} {precision}")
    if acc.cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "model": role, "params": count_params(model), "device": acc.name, "kind": device,
        "precision": precision, "train_samples": len(train.y), "epochs": epochs, "batch": batch,
        "s_per_epoch": seconds / epochs, "samples_per_s": len(train.y) * epochs / seconds,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if acc.cuda else None,
        "test_accuracy": accuracy(predict_logits(model, test.x), test.y),
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    head = ("| model | device | precision | train samples | epochs | batch | s / epoch | "
            "samples/s | peak GPU MB | test acc |\n" + "| --- " * 10 + "|\n")  # fmt: skip
    lines = []
    for r in rows:
        peak = "-" if r["peak_gpu_mb"] is None else f"{r['peak_gpu_mb']:,.0f}"
        lines.append(
            f"| {r['model']} ({r['params']:,}) | {r['device']} | {r['precision']} | "
            f"{r['train_samples']:,} | {r['epochs']} | {r['batch']} | {r['s_per_epoch']:.2f} | "
            f"{r['samples_per_s']:,.0f} | {peak} | {r['test_accuracy']:.4f} |\n"
        )
    return head + "".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=50_000, help="train samples (GPU rows)")
    ap.add_argument("--test", type=int, default=10_000, help="val and test samples each")
    ap.add_argument("--cpu-samples", type=int, default=4_096, help="train samples (CPU rows)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=512, help="GPU batch (the CPU uses 64)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for the CPU rows")
    ap.add_argument("--quick", action="store_true", help="2,048 samples, 1 epoch")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "gpu")
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.test, args.cpu_samples, args.epochs = 2048, 512, 1024, 1
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    full = splits(args.samples, args.test)
    small = (Split(full[0].x[: args.cpu_samples], full[0].y[: args.cpu_samples],
                   full[0].class_names, full[0].mean, full[0].std, 1.0), *full[1:])  # fmt: skip
    rows = []
    for role in ("teacher", "student"):
        rows.append(run(role, "cpu", "fp32", small, args.epochs, 64, seed=0))
        for precision in ("fp32", "bf16") if cuda else ():
            rows.append(run(role, "cuda", precision, full, args.epochs, args.batch, seed=0))
        print(table(rows), flush=True)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    host = f"{platform.node()}, torch {torch.__version__}, Python {sys.version.split()[0]}"
    md = f"# GPU benchmark ({when}; {host})\n\n" + table(rows)
    if not cuda:
        md += "\nNo CUDA device here: CPU rows only.\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out.with_suffix(".md"), md)
    write_json(args.out.with_suffix(".json"), {"when": when, "host": host, "rows": rows})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
