"""Which distillation mode earns its place: labels only, offline, online and self, measured.

Run by hand from the repo root (not by CI; on a shared machine under `nice -n 10`):

    .venv/bin/python bench/kd.py                # pairs: 3 seeds, every mode (~15 min, 2 cores)
    .venv/bin/python bench/kd.py --quick        # 1 seed, a quarter of the epochs
    .venv/bin/python bench/kd.py --tasks digits # the 10-class variant

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
data-limited here). All built by `slimline.compression.models.families.build_model`.

Every network trains through the distill stage's own code, `training.distillation`, on
one `Setup` per role: `fit.fit` with the warp below as `Setup.augment` (raw originals in,
standardized warped views out, drawn from fit's seeded views generator). Per seed, every
student has the same init (`seed_everything` before each build), the same batch order and the
very same augmented views; the modes differ only in who teaches:

- labels: cross-entropy on the view's label (the stage's baseline; self mode's generation 0)
- offline: the teacher, trained first from labels (its own schedule), frozen; its logits of
  each augmented batch (`teacher_logits: per_batch`)
- online: deep mutual learning, the student and a peer of the teacher's architecture from
  scratch, together, on the student's schedule; no teacher needed
- self: born-again, generation k taught by generation k-1 (2 generations after the labels one)

Nothing is tuned here: T and alpha are the task's, the same for every mode. Each mode's time
is its own training and, in "total", what it needs first (offline: the teacher; self:
generation 0). The test split is only scored, never selected on. Writes bench/results/kd.md
and kd.json (atomically; --quick: bench/.scratch).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimline.compression.data.dataset import Dataset, Split
from slimline.compression.data.split import split
from slimline.compression.models.families import build_model, count_params
from slimline.compression.scores import accuracy
from slimline.compression.training import distillation
from slimline.compression.training.fit import fit, predict_logits, seed_everything
from slimline.compression.training.setup import Setup
from slimline.core.atomic import write_json, write_text
from slimline.core.params.inputs import Data
from slimline.core.params.models import Distill, ModelSpec

BENCH = Path(__file__).resolve().parent
CANVAS = 12  # the 8x8 digit centred on a 12x12 canvas: room to move without cropping
VIEWS = 4  # fixed warped views per val / test original
DATA_SEED = 0  # the split and the val / test views; training seeds vary everything else
MODES = ("labels", "offline", "online", "self")
GENERATIONS = 2  # self: taught generations after generation 0 (params.yaml's default)


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
    """The bench's augmentation as a `loader.Views` callable for `Setup.augment`: raw train
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
    fixed: Split  # one fixed warped view per train original: the input shape and statistics
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


def fit_epochs(spec: ModelSpec, task: Task) -> int:
    return max(1, spec.epochs * len(task.y) // len(task.train.y))


def setup(spec: ModelSpec, task: Task, seed: int) -> Setup:
    """A role's training setup on fresh augmented views every epoch; spec.epochs counts passes
    over the train originals (pairs: a fit epoch is ten of them)."""
    spec = spec.model_copy(update={"epochs": fit_epochs(spec, task)})
    return dataclasses.replace(Setup.of(spec, task.train, task.val, seed), augment=task.views)


def builder(
    spec: ModelSpec, task: Task, seed: int, threads: int, role: str
) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        seed_everything(seed, threads)  # identical init for every student of this seed
        return build_model(spec, task.fixed.input_shape, task.fixed.num_classes, role)

    return build


def test_acc(model: nn.Module, task: Task) -> float:
    return accuracy(predict_logits(model, task.test.x), task.test.y)


def run_seed(cfg: Config, task: Task, seed: int, threads: int) -> dict:
    """Teacher, then each mode's student; test accuracies and seconds per mode."""
    new_student = builder(cfg.student, task, seed, threads, "student")
    new_peer = builder(cfg.teacher, task, seed, threads, "teacher")
    sched = setup(cfg.student, task, seed)
    kd = Distill(temperature=cfg.temperature, alpha=cfg.alpha, generations=GENERATIONS)
    out: dict = {"seed": seed}

    def record(name: str, model: nn.Module, t0: float) -> None:
        out[f"{name}_s"] = time.perf_counter() - t0
        out[name] = test_acc(model, task)

    t0 = time.perf_counter()
    teacher = new_peer()
    fit(teacher, setup(cfg.teacher, task, seed), desc="teacher")
    record("teacher", teacher, t0)
    t0 = time.perf_counter()
    gen0 = new_student()
    history0 = fit(gen0, sched, desc="labels")
    record("labels", gen0, t0)
    t0 = time.perf_counter()
    record("offline", distillation.offline(teacher, new_student, sched, kd).student, t0)
    t0 = time.perf_counter()
    mutual = distillation.online(new_student, new_peer, sched, kd)
    record("online", mutual.student, t0)
    out["online_peer"] = test_acc(mutual.teacher, task)
    t0 = time.perf_counter()
    born = distillation.born_again(gen0, history0, new_student, sched, kd)
    record("self", born.student, t0)
    out["self_generations"] = [test_acc(m, task) for m, _ in born.generations]
    print(
        f"kd: seed {seed}: teacher {out['teacher']:.4f}; "
        + ", ".join(f"{m} {out[m]:.4f} ({out[f'{m}_s']:.0f} s)" for m in MODES),
        flush=True,
    )
    return out


def totals(run: dict) -> dict[str, float]:
    """Seconds each mode costs with what it needs first: offline the teacher, self gen 0."""
    own = {m: run[f"{m}_s"] for m in MODES}
    return own | {"offline": own["offline"] + run["teacher_s"], "self": own["self"] + own["labels"]}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def pm(values: list[float], scale: float = 100, digits: int = 2, sign: str = "") -> str:
    m, s = mean_std([scale * v for v in values])
    return f"{m:{sign}.{digits}f} ± {s:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks", nargs="+", choices=sorted(TASKS), default=["pairs"], help="default pairs"
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, a quarter of the epochs")
    parser.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (quick: 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, help="default bench/results (quick: bench/.scratch)")
    args = parser.parse_args(argv)
    out_dir = args.out or (BENCH / ".scratch" if args.quick else BENCH / "results")
    started = time.perf_counter()
    results = {name: measure(name, args) for name in args.tasks}
    text = "\n".join(report(r) for r in results.values())
    print(text)
    write_json(out_dir / "kd.json", {"tasks": results})
    write_text(out_dir / "kd.md", text)
    took = (time.perf_counter() - started) / 60
    print(f"kd: wrote {out_dir / 'kd.md'} and kd.json ({took:.1f} min)")
    return 0


def measure(name: str, args: argparse.Namespace) -> dict:
    """Every seed of one task, as kd.json holds it."""
    cfg = TASKS[name]
    if args.quick:
        quarter = {r: getattr(cfg, r).epochs // 4 for r in ("teacher", "student")}
        cfg = Config(
            cfg.teacher.model_copy(update={"epochs": quarter["teacher"]}),
            cfg.student.model_copy(update={"epochs": quarter["student"]}),
            cfg.temperature, cfg.alpha, cfg.warp, cfg.train_per_class, cfg.pairs,
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
    runs = [run_seed(cfg, task, s, args.threads) for s in seeds]
    return {
        "measured": f"{started:%Y-%m-%d %H:%M} UTC",
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "elapsed_s": time.perf_counter() - t0,
        "task": name,
        "config": {
            "pairs": cfg.pairs,
            "teacher": cfg.teacher.model_dump(),
            "student": cfg.student.model_dump(),
            "temperature": cfg.temperature,
            "alpha": cfg.alpha,
            "generations": GENERATIONS,
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
    }


TITLES = {
    "pairs": "digit pairs (100 classes, procedurally generated)",
    "digits": "hard digits (10 classes, procedurally warped)",
}
WHO = {
    "labels": "labels only (no teacher)",
    "offline": "offline: frozen teacher, trained first",
    "online": "online: mutual, student + teacher-arch peer from scratch",
    "self": f"self: born-again, {GENERATIONS} generations after labels",
}


def report(r: dict) -> str:
    runs, c, n = r["runs"], r["config"], r["params"]
    s, t = c["student"], c["teacher"]
    fe = r["fit_epochs"]
    lines = [
        f"# Distillation modes on {TITLES[r['task']]}: the same student, four ways",
        "",
        f"Measured {r['measured']}, {r['cpus']} cores (shared with other work, `nice -n 10`), "
        f"torch threads {r['threads']}; whole run {r['elapsed_s'] / 60:.1f} min. "
        f"Seeds {', '.join(str(x['seed']) for x in runs)}. Nothing tuned: every mode uses "
        f"T={c['temperature']:g}, alpha={c['alpha']:g}.",
        "",
        f"Student {s['arch']} {s['width']}x{s['depth']}: {n['student']:,} params "
        f"({4 * n['student']:,} bytes FP32), the same network and size in every mode. Teacher "
        f"(offline) and peer (online) {t['arch']} {t['width']}x{t['depth']}: {n['teacher']:,} "
        f"params. Teacher {t['epochs']} epochs ({fe['teacher']} fit epochs); every student, and "
        f"the online peer, {s['epochs']} ({fe['student']} fit epochs). Train "
        f"{r['samples']['train']} originals, re-warped every draw ({r['samples']['epoch']} "
        f"samples a fit epoch); val {r['samples']['val']} / test {r['samples']['test']} fixed "
        "warped views.",
        "",
        "Test accuracy (%) and gain over labels only (points; paired by seed), mean ± std over "
        "seeds; time in seconds: the mode's own training, and in total with what it needs "
        "first (offline: the teacher; self: generation 0):",
        "",
        "| mode | student test % | gain vs labels | teacher / peer test % | own s | total s |",
        "|---|---|---|---|---|---|",
    ]
    for m in MODES:
        gains = [x[m] - x["labels"] for x in runs]
        taught = {
            "offline": pm([x["teacher"] for x in runs]),
            "online": pm([x["online_peer"] for x in runs]) + " (peer)",
            "self": pm([x["self_generations"][-2] for x in runs]) + f" (gen {GENERATIONS - 1})",
        }.get(m, "-")
        lines.append(
            f"| {WHO[m]} | {pm([x[m] for x in runs])} | "
            f"{'-' if m == 'labels' else pm(gains, sign='+')} | {taught} | "
            f"{pm([x[f'{m}_s'] for x in runs], 1, 0)} | {pm([totals(x)[m] for x in runs], 1, 0)} |"
        )
    lines += [
        "",
        "Per seed (test %; self: generations 0..n):",
        "",
        "| seed | teacher | labels | offline | online (peer) | self generations |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {x['seed']} | {100 * x['teacher']:.2f} | {100 * x['labels']:.2f} | "
        f"{100 * x['offline']:.2f} | {100 * x['online']:.2f} ({100 * x['online_peer']:.2f}) | "
        + " → ".join(f"{100 * g:.2f}" for g in x["self_generations"])
        + " |"
        for x in runs
    ]
    return "\n".join(lines + ["", verdict(runs)]) + "\n"


def verdict(runs: list[dict]) -> str:
    """Which mode wins on mean test accuracy, by how much over the runner-up (paired by seed),
    and whether that margin is larger than its own spread."""
    ranked = sorted(MODES, key=lambda m: -statistics.fmean(x[m] for x in runs))
    best, second = ranked[:2]
    dm, ds = mean_std([100 * (x[best] - x[second]) for x in runs])
    clear = dm > ds and all(x[best] > x[second] for x in runs)
    cost = statistics.fmean(totals(x)[best] / totals(x)[second] for x in runs)
    losers = [m for m in MODES[1:] if statistics.fmean(x[m] - x["labels"] for x in runs) <= 0]
    return (
        f"Winner: **{best}**, {dm:+.2f} ± {ds:.2f} points over {second} (paired by seed; "
        + ("larger than its spread, every seed" if clear else "within the seed-to-seed spread")
        + f"), at {cost:.1f}x its total time. "
        + (
            f"No gain over labels only (mean ≤ 0): {', '.join(losers)}."
            if losers
            else "Every mode beats labels only on the mean."
        )
    )


if __name__ == "__main__":
    sys.exit(main())
