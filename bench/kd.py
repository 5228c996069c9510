"""Distillation that earns its place: the same student from labels and with KD, measured.

Run by hand from the repo root (not by CI):

    .venv/bin/python bench/kd.py                # pairs: 3 seeds + temperature / alpha sweep
    .venv/bin/python bench/kd.py --quick        # 1 seed, a quarter of the epochs, no sweep
    .venv/bin/python bench/kd.py --task digits  # the 10-class variant (KD gains < 1 point)

Tasks (nothing downloaded; scikit-learn's bundled 8x8 digits, procedurally warped). The 1797
originals are split stratified first (train / val / test, `compression.data.split`), so no view
of a val or test digit is ever trained on; val and test are fixed warped views of their
originals (VIEWS per original, twice that for pairs), train originals are re-warped on every
draw. Each digit sits on a 12x12 canvas and is seen through a random affine warp (rotation,
scale, shift, bilinear), optionally a random occluding square, and pixel noise.

- pairs (default): two warped digits side by side (12x24), label "00".."99": 100 classes. An
  epoch is every train original on the left once beside each right-hand class (10 x 987
  samples: one fit epoch is ten of the configured epochs, which count passes over the train
  originals); the right-hand partner is a fresh random train original of that class every time
  the sample is drawn.
- digits: one digit (12x12), 10 classes, a harder warp with occlusion.

Models: a cnn teacher (translation-equivariant, plenty of capacity) and a small mlp student
(no convolution: it must learn every shift and rotation from the data, so it is capacity- and
data-limited here). All built by `slimline.compression.models.build_model`.

Every model trains through the library's own path: `train.fit` with `augment=` the warp below
(a `train.Views` callable: raw originals in, standardized warped views out, drawn from fit's
seeded views generator), on training batches only. Protocol per seed: the teacher trains once
(labels, augmented views); then two students of the same init (`seed_everything` before each
build), fit with the same seed, so the same batch order and the very same augmented views,
differ only in the loss:

- labels: fit's default cross-entropy on the view's label
- KD (online): `train.make_online_kd_loss`, the teacher's logits on that same augmented batch,
  computed on the fly, so the soft target always describes the image the student sees.

For reference the library's offline path is measured too (`train.fit` + `make_kd_loss`: teacher
logits cached once for a fixed train set, here one fixed warped view per train original, no
augmentation), against `fit` from labels on the same fixed set.

Every fit is `train.fit`: AdamW + OneCycle, val scored each epoch, the best val-accuracy epoch
kept; the test split is only scored, never selected on. A temperature / alpha sweep (one seed,
selected on val, test reported beside it) follows. Writes bench/results/kd.md and kd.json
(atomically; tasks not rerun keep their previous sections; --quick: bench/.scratch).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimline.compression.data import Dataset, Split, split
from slimline.compression.evaluate import accuracy, agreement
from slimline.compression.models import build_model, count_params
from slimline.compression.train import (
    History,
    LossFn,
    fit,
    fit_spec,
    make_kd_loss,
    make_online_kd_loss,
    predict_logits,
    seed_everything,
)
from slimline.core.atomic import write_json, write_text
from slimline.core.params import Data, ModelSpec

BENCH = Path(__file__).resolve().parent
CANVAS = 12  # the 8x8 digit centred on a 12x12 canvas: room to move without cropping
VIEWS = 4  # fixed warped views per val / test original
TEMPERATURES, ALPHAS = [1.0, 2.0, 4.0, 8.0], [0.3, 0.5, 0.7, 0.9]  # the sweep
DATA_SEED = 0  # the split and the val / test views; training seeds vary everything else
LOOP = "train.fit"  # what trained the models (results of the earlier, own-loop version lack it)
OLD_NOTE = (
    "measured by the earlier version of bench/kd.py (its own training loop, before the port to "
    "train.fit with augment=); not rerun since"
)


@dataclass(frozen=True)
class Warp:
    degrees: float = 20.0
    scale: tuple[float, float] = (0.85, 1.1)
    shift: float = 1.5  # pixels, each axis
    erase: int = 3  # side of the occluding square (pixels set to 0)
    erase_p: float = 0.3
    noise: float = 0.08  # std of Gaussian pixel noise; raw pixels are in [0, 1]


@dataclass(frozen=True)
class Config:
    teacher: ModelSpec
    student: ModelSpec
    temperature: float
    alpha: float
    warp: Warp
    train_per_class: int | None  # None: every train original
    pairs: bool = False  # two digits side by side, 100 classes


TASKS = {
    # the default: two digits side by side, 100 classes; mild warp, no occlusion
    "pairs": Config(
        # epochs count passes over the train originals: a fit epoch of pairs is ten of them
        teacher=ModelSpec(arch="cnn", width=32, depth=3, epochs=60, lr=0.005, batch_size=64),
        student=ModelSpec(arch="mlp", width=256, depth=2, epochs=150, lr=0.005, batch_size=64),
        temperature=4.0,
        alpha=0.7,
        warp=Warp(degrees=15.0, erase_p=0.0, noise=0.05),
        train_per_class=None,
        pairs=True,
    ),
    # one digit, 10 classes, harder warp with occlusion: KD gains stay under a point here
    "digits": Config(
        teacher=ModelSpec(arch="cnn", width=64, depth=3, epochs=60, lr=0.005, batch_size=64),
        student=ModelSpec(arch="mlp", width=256, depth=2, epochs=200, lr=0.005, batch_size=64),
        temperature=4.0,
        alpha=0.7,
        warp=Warp(),
        train_per_class=None,
    ),
}


def warp(x: Tensor, w: Warp, gen: torch.Generator) -> Tensor:
    """Random affine warp, occlusion and noise of raw images (N, 1, H, W) in [0, 1]."""
    n, _, h, wd = x.shape

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=gen)

    angle = uniform(-w.degrees, w.degrees) * math.pi / 180
    scale = uniform(*w.scale)
    shift = uniform(-w.shift, w.shift, 2) * 2 / wd  # pixels -> normalized coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )  # (N, 2, 3): output grid -> input coordinates
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if w.erase and w.erase_p:
        top = torch.randint(0, h - w.erase + 1, (n, 1), generator=gen)
        left = torch.randint(0, wd - w.erase + 1, (n, 1), generator=gen)
        on = torch.rand(n, 1, 1, generator=gen) < w.erase_p
        rows, cols = torch.arange(h)[None], torch.arange(wd)[None]
        box = ((rows >= top) & (rows < top + w.erase))[:, :, None] & (
            (cols >= left) & (cols < left + w.erase)
        )[:, None, :]
        out = out.masked_fill((box & on)[:, None], 0.0)
    out = out + w.noise * torch.randn(out.shape, generator=gen)
    return out.clamp(0, 1)


@dataclass(frozen=True, eq=False)
class WarpViews:
    """The bench's augmentation as a `train.Views` callable for `fit(augment=...)`: raw train
    samples (B, 1, 12, 12 or 24) in [0, 1] in, standardized warped views out.

    Pairs: the train split holds each original on the left beside a placeholder on the right,
    the first train original of the pair's right-hand class (`slots`); each draw swaps it for a
    random train original of that class (`pool`), so the label ("ab") stays the split's and the
    partner is fresh every time."""

    warp: Warp
    mean: float
    std: float
    pool: Tensor | None = None  # pairs: the raw train originals, sorted by class
    starts: Tensor | None = None  # (10,) each class's first row in pool
    counts: Tensor | None = None  # (10,) its rows
    slots: Tensor | None = None  # (10, 1, 12, 12) the right-hand placeholders

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        if self.pool is None:
            out = warp(x, self.warp, gen)
        else:
            assert self.starts is not None and self.counts is not None and self.slots is not None
            left, right = x[..., :CANVAS], x[..., CANVAS:]
            hit = (right[:, None] == self.slots[None]).flatten(2).all(2)  # (B, 10)
            assert bool(hit.sum(1).eq(1).all()), "pairs: right half is not a class placeholder"
            c = hit.int().argmax(1)
            pick = (torch.rand(len(x), generator=gen) * self.counts[c]).long()
            partner = self.pool[self.starts[c] + pick.minimum(self.counts[c] - 1)]
            out = torch.cat([warp(left, self.warp, gen), warp(partner, self.warp, gen)], dim=3)
        return (out - self.mean) / self.std


@dataclass
class Task:
    y: Tensor  # (N,) the train originals' digits
    train: Split  # raw train samples; `views` warps and standardizes them batch by batch
    views: WarpViews
    fixed: Split  # one fixed warped view per train original (the offline / no-aug set)
    val: Split
    test: Split


def render(
    raw: Tensor, y: Tensor, idx: Tensor, w: Warp, gen: torch.Generator, pairs: bool
) -> tuple[Tensor, Tensor]:
    """Warped views of originals idx (raw, [0, 1]); pairs: each beside a random partner."""
    x = warp(raw[idx], w, gen)
    if not pairs:
        return x, y[idx]
    partner = torch.randint(0, len(raw), (len(idx),), generator=gen)
    return torch.cat([x, warp(raw[partner], w, gen)], dim=3), 10 * y[idx] + y[partner]


def make_task(w: Warp, train_per_class: int | None, pairs: bool) -> Task:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pad = (CANVAS - 8) // 2
    x = np.pad(bunch.images / 16.0, ((0, 0), (pad, pad), (pad, pad)))[:, None]
    ds = Dataset(x.astype(np.float32), bunch.target.astype(np.int64), list("0123456789"), 16.0)
    # split the originals first: no view of a val / test digit is ever trained on
    parts = split(ds, Data(val_fraction=0.15, test_fraction=0.3), DATA_SEED)
    xt, yt = parts["train"]
    if train_per_class:  # data-limited variant: the first k train originals of each class
        keep = np.sort(
            np.concatenate([np.flatnonzero(yt == c)[:train_per_class] for c in range(10)])
        )
        xt, yt = xt[keep], yt[keep]
    names = [f"{a}{b}" for a in range(10) for b in range(10)] if pairs else ds.class_names
    gen = torch.Generator().manual_seed(DATA_SEED)

    def views(x: np.ndarray, y: np.ndarray, k: int) -> tuple[Tensor, Tensor]:
        raw, labels = torch.from_numpy(x), torch.from_numpy(y)
        idx = torch.arange(len(raw)).repeat(k)
        return render(raw, labels, idx, w, gen, pairs)

    fixed_x, fixed_y = views(xt, yt, 1)
    mean, std = float(fixed_x.mean()), float(fixed_x.std())

    def as_split(xy: tuple[Tensor, Tensor]) -> Split:
        x = ((xy[0] - mean) / std).numpy()
        return Split(x, xy[1].numpy(), names, np.array([mean]), np.array([std]), 1.0)

    k = VIEWS * (2 if pairs else 1)  # 100 classes: twice the views for a steadier score
    fixed, val, test = (
        as_split((fixed_x, fixed_y)), as_split(views(*parts["val"], k)),
        as_split(views(*parts["test"], k)),
    )  # fmt: skip
    raw, labels = torch.from_numpy(xt), torch.from_numpy(yt)
    if not pairs:
        train_x, train_y, aug = raw, labels, WarpViews(w, mean, std)
    else:
        order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels, minlength=10)
        starts = torch.cumsum(counts, 0) - counts
        slots = raw[order[starts]]  # (10, 1, 12, 12): the first original of each class
        left = torch.arange(len(raw)).repeat_interleave(10)
        right = torch.arange(10).repeat(len(raw))
        train_x = torch.cat([raw[left], slots[right]], dim=3)
        train_y = 10 * labels[left] + right
        aug = WarpViews(w, mean, std, raw[order], starts, counts, slots)
    train = Split(
        train_x.numpy(), train_y.numpy(), fixed.class_names, np.array([mean]), np.array([std]), 1.0
    )
    return Task(labels, train, aug, fixed, val, test)


def train_online(
    model: nn.Module, spec: ModelSpec, task: Task, seed: int, loss_fn: LossFn | None = None
) -> History:
    """`train.fit` on fresh augmented views every epoch (`augment=task.views`); `loss_fn`:
    None for labels, `make_online_kd_loss(teacher, ...)` for KD on the same views. spec.epochs
    counts passes over the train originals (pairs: a fit epoch is ten of them)."""
    spec = spec.model_copy(update={"epochs": fit_epochs(spec, task)})
    return fit_spec(
        model, spec, task.train, task.val, seed=seed, loss_fn=loss_fn, augment=task.views,
        desc="labels" if loss_fn is None else "KD",
    )  # fmt: skip


def fit_epochs(spec: ModelSpec, task: Task) -> int:
    return max(1, spec.epochs * len(task.y) // len(task.train.y))


def new_model(spec: ModelSpec, task: Task, seed: int, threads: int, role: str) -> nn.Module:
    seed_everything(seed, threads)  # identical init for every student of this seed
    return build_model(spec, task.fixed.input_shape, task.fixed.num_classes, role)


def test_acc(model: nn.Module, task: Task) -> float:
    return accuracy(predict_logits(model, task.test.x), task.test.y)


def run_seed(cfg: Config, task: Task, seed: int, threads: int, offline: bool) -> dict:
    t0 = time.perf_counter()
    teacher = new_model(cfg.teacher, task, seed, threads, "teacher")
    h = train_online(teacher, cfg.teacher, task, seed)
    out = {"seed": seed, "teacher": test_acc(teacher, task), "teacher_epoch": h.best_epoch}
    t_teacher = time.perf_counter() - t0
    student = new_model(cfg.student, task, seed, threads, "student")
    h = train_online(student, cfg.student, task, seed)
    out["labels_val"], out["labels_epoch"] = h.best.val_accuracy, h.best_epoch
    out["labels"] = test_acc(student, task)
    student = new_model(cfg.student, task, seed, threads, "student")
    kd = make_online_kd_loss(teacher, cfg.temperature, cfg.alpha)
    h = train_online(student, cfg.student, task, seed, kd)
    out["kd_val"], out["kd_epoch"] = h.best.val_accuracy, h.best_epoch
    out["kd"] = test_acc(student, task)
    out["kd_agreement"] = agreement(
        predict_logits(student, task.test.x), predict_logits(teacher, task.test.x)
    )
    out["gain"] = out["kd"] - out["labels"]
    if offline:  # the library's path as it is: fixed train set, cached teacher logits
        kw = {k: getattr(cfg.student, k) for k in ("epochs", "lr", "batch_size", "weight_decay")}
        student = new_model(cfg.student, task, seed, threads, "student")
        fit(student, task.fixed, task.val, seed=seed, desc="labels (fixed)", **kw)
        out["offline_labels"] = test_acc(student, task)
        cached = predict_logits(teacher, task.fixed.x)
        loss = make_kd_loss(cached, cfg.temperature, cfg.alpha)
        student = new_model(cfg.student, task, seed, threads, "student")
        fit(student, task.fixed, task.val, seed=seed, loss_fn=loss, desc="KD (fixed)", **kw)
        out["offline_kd"] = test_acc(student, task)
        out["offline_gain"] = out["offline_kd"] - out["offline_labels"]
    out["teacher_s"] = t_teacher
    out["seconds"] = time.perf_counter() - t0
    print(
        f"kd: seed {seed}: teacher {out['teacher']:.4f}, labels {out['labels']:.4f}, "
        f"KD {out['kd']:.4f} (gain {out['gain']:+.4f})"
        + (f"; offline {out['offline_labels']:.4f} -> {out['offline_kd']:.4f}" if offline else "")
        + f" [{out['seconds']:.0f} s]",
        flush=True,
    )
    return out | {"_teacher": teacher}


def sweep(cfg: Config, task: Task, first: dict, threads: int, temps, alphas):
    """T over `temps` at cfg.alpha, then alpha over `alphas` at the T best on val, on the seed
    of the first run (`first`, whose teacher is reused and whose KD run is the (T, alpha) of
    the config: training is deterministic, so it is not trained again)."""
    teacher, seed = first["_teacher"], first["seed"]
    rows = {
        (cfg.temperature, cfg.alpha): {
            "temperature": cfg.temperature, "alpha": cfg.alpha,
            "val": first["kd_val"], "test": first["kd"],
        }
    }  # fmt: skip

    def one(t: float, a: float) -> dict:
        if (t, a) not in rows:
            student = new_model(cfg.student, task, seed, threads, "student")
            h = train_online(student, cfg.student, task, seed, make_online_kd_loss(teacher, t, a))
            rows[(t, a)] = {"temperature": t, "alpha": a, "val": h.best.val_accuracy}
            rows[(t, a)]["test"] = test_acc(student, task)
            print(f"kd: sweep T={t:g} alpha={a:g}: val {rows[(t, a)]['val']:.4f}, "
                  f"test {rows[(t, a)]['test']:.4f}", flush=True)  # fmt: skip
        return rows[(t, a)]

    best_t = max(temps, key=lambda t: (one(t, cfg.alpha)["val"], -abs(t - cfg.temperature)))
    for a in alphas:
        one(best_t, a)
    return sorted(
        rows.values(), key=lambda r: (r["alpha"] != cfg.alpha, r["temperature"], r["alpha"])
    ), best_t


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def pm(values: list[float]) -> str:
    m, s = mean_std([100 * v for v in values])
    return f"{m:.2f} ± {s:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks", nargs="+", choices=sorted(TASKS), default=["pairs"], help="default pairs"
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, few epochs, no sweep")
    parser.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (quick: 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--no-offline", action="store_true", help="skip the library's offline KD")
    parser.add_argument("--student", help="arch:width:depth, default: the task's")
    parser.add_argument("--teacher", help="arch:width:depth, default: the task's")
    parser.add_argument("--student-epochs", type=int)
    parser.add_argument("--teacher-epochs", type=int)
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--alpha", type=float)
    parser.add_argument("--train-per-class", type=int)
    parser.add_argument("--out", type=Path, help="default bench/results (quick: bench/.scratch)")
    args = parser.parse_args(argv)
    out_dir = args.out or (BENCH / ".scratch" if args.quick else BENCH / "results")
    started = time.perf_counter()
    results = {name: measure(name, args) for name in args.tasks}
    print("\n".join(report(r) for r in results.values()))
    # tasks not rerun keep their previous results (marked when an older version measured them)
    previous = out_dir / "kd.json"
    if previous.exists():
        for name, r in json.loads(previous.read_text())["tasks"].items():
            if name in TASKS and name not in results:
                if r.get("loop") != LOOP:
                    r["note"] = OLD_NOTE
                results[name] = r
    results = {name: results[name] for name in TASKS if name in results}
    text = "\n".join(report(r) for r in results.values())
    write_json(out_dir / "kd.json", {"tasks": results})
    write_text(out_dir / "kd.md", text)
    took = (time.perf_counter() - started) / 60
    print(f"kd: wrote {out_dir / 'kd.md'} and kd.json ({took:.1f} min)")
    return 0


def measure(name: str, args: argparse.Namespace) -> dict:
    """Every seed and the sweep of one task, as kd.json holds it."""
    cfg = TASKS[name]
    updates = {}
    for role in ("student", "teacher"):
        spec = getattr(cfg, role)
        if getattr(args, role):
            arch, width, depth = getattr(args, role).split(":")
            spec = spec.model_copy(update={"arch": arch, "width": int(width), "depth": int(depth)})
        epochs = getattr(args, f"{role}_epochs") or (spec.epochs // 4 if args.quick else None)
        if epochs:
            spec = spec.model_copy(update={"epochs": epochs})
        updates[role] = spec
    cfg = Config(
        updates["teacher"], updates["student"],
        args.temperature or cfg.temperature, cfg.alpha if args.alpha is None else args.alpha,
        cfg.warp, args.train_per_class or cfg.train_per_class, cfg.pairs,
    )  # fmt: skip
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    started, t0 = dt.datetime.now(dt.UTC), time.perf_counter()
    task = make_task(cfg.warp, cfg.train_per_class, cfg.pairs)
    shape, classes = task.fixed.input_shape, task.fixed.num_classes
    sizes = {
        role: count_params(build_model(getattr(cfg, role), shape, classes, role))
        for role in ("teacher", "student")
    }
    print(
        f"kd: {name} {shape}, train {len(task.y)} originals (re-warped), "
        f"val {len(task.val.y)}, test {len(task.test.y)} views; "
        f"teacher {sizes['teacher']:,} params, student {sizes['student']:,}",
        flush=True,
    )
    runs = [run_seed(cfg, task, s, args.threads, not args.no_offline) for s in seeds]
    sweep_rows, best_t = [], None
    if not (args.quick or args.no_sweep):
        sweep_rows, best_t = sweep(cfg, task, runs[0], args.threads, TEMPERATURES, ALPHAS)
    runs = [{k: v for k, v in r.items() if k != "_teacher"} for r in runs]
    elapsed = time.perf_counter() - t0
    return {
        "measured": f"{started:%Y-%m-%d %H:%M} UTC",
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "elapsed_s": elapsed,
        "loop": LOOP,
        "task": name,
        "config": {
            "pairs": cfg.pairs,
            "teacher": cfg.teacher.model_dump(),
            "student": cfg.student.model_dump(),
            "temperature": cfg.temperature,
            "alpha": cfg.alpha,
            "warp": cfg.warp.__dict__,
            "train_per_class": cfg.train_per_class,
            "canvas": CANVAS,
            "views": VIEWS,
            "data_seed": DATA_SEED,
        },
        "params": sizes,
        "fit_epochs": {r: fit_epochs(getattr(cfg, r), task) for r in ("teacher", "student")},
        "samples": {
            "train": len(task.y),
            "epoch": len(task.train.y),
            "val": len(task.val.y),
            "test": len(task.test.y),
        },
        "runs": runs,
        "sweep": {"seed": seeds[0], "best_temperature": best_t, "rows": sweep_rows},
    }


TITLES = {
    "pairs": "digit pairs (100 classes, procedurally generated)",
    "digits": "hard digits (10 classes, procedurally warped)",
}


def report(r: dict) -> str:
    runs, c = r["runs"], r["config"]
    s, t = c["student"], c["teacher"]
    gains = [x["gain"] for x in runs]
    gm, gs = mean_std([100 * g for g in gains])
    lines = [
        f"# Knowledge distillation on {TITLES[r['task']]}: labels vs KD, same student",
        "",
        f"Measured {r['measured']}, {r['cpus']} cores (shared), torch threads {r['threads']}; "
        f"whole run {r['elapsed_s'] / 60:.1f} min. "
        f"Seeds {', '.join(str(x['seed']) for x in runs)}."
        + (f" Note: {r['note']}." if r.get("note") else ""),
        "",
        f"Teacher {t['arch']} {t['width']}x{t['depth']} ({r['params']['teacher']:,} params, "
        f"{t['epochs']} epochs); student {s['arch']} {s['width']}x{s['depth']} "
        f"({r['params']['student']:,} params, {s['epochs']} epochs); KD T={c['temperature']:g}, "
        f"alpha={c['alpha']:g}. Train {r['samples']['train']} originals"
        + (
            f", {r['samples']['epoch']} pairs a fit epoch (each original beside each right-hand "
            "class, fresh partners and views every draw; the epochs above count passes over the "
            f"originals: {r['fit_epochs']['teacher']} and {r['fit_epochs']['student']} fit "
            "epochs)"
            if c["pairs"] and "fit_epochs" in r
            else " (fresh views every epoch)"
        )
        + ", val "
        f"{r['samples']['val']} / test {r['samples']['test']} fixed warped views. "
        "Test accuracy (%), mean ± std over seeds:",
        "",
        "| | teacher | student, labels | student, KD | KD gain (points) |",
        "|---|---|---|---|---|",
        f"| online KD, augmented views ({r.get('loop', 'own loop')}) | "
        f"{pm([x['teacher'] for x in runs])} | "
        f"{pm([x['labels'] for x in runs])} | {pm([x['kd'] for x in runs])} | "
        f"**{gm:+.2f} ± {gs:.2f}** |",
    ]
    if "offline_kd" in runs[0]:
        om, os_ = mean_std([100 * x["offline_gain"] for x in runs])
        lines.append(
            f"| offline KD, fixed train set (train.fit + make_kd_loss) | (same) | "
            f"{pm([x['offline_labels'] for x in runs])} | {pm([x['offline_kd'] for x in runs])} | "
            f"{om:+.2f} ± {os_:.2f} |"
        )
    lines += [
        "",
        "Per seed (test %):",
        "",
        "| seed | teacher | labels | KD | gain |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {x['seed']} | {100 * x['teacher']:.2f} | {100 * x['labels']:.2f} | {100 * x['kd']:.2f} "
        f"| {100 * x['gain']:+.2f} |"
        for x in runs
    ]
    met = gm >= 1 and gm > gs
    lines += [
        "",
        f"Goal (mean gain >= +1 point and larger than its std): **{'met' if met else 'not met'}** "
        f"({gm:+.2f} ± {gs:.2f}).",
    ]
    sw = r["sweep"]
    if sw["rows"]:
        lines += [
            "",
            f"Temperature / alpha sweep (seed {sw['seed']}, online KD; T varied at alpha="
            f"{c['alpha']:g}, then alpha at the T best on val, T={sw['best_temperature']:g}); "
            f"labels-only on this seed: test {100 * runs[0]['labels']:.2f}:",
            "",
            "| T | alpha | val % | test % | test gain vs labels |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {x['temperature']:g} | {x['alpha']:g} | {100 * x['val']:.2f} | "
            f"{100 * x['test']:.2f} | {100 * (x['test'] - runs[0]['labels']):+.2f} |"
            for x in sw["rows"]
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
