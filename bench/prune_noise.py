"""How much of the default's final drop is the pruning fine-tune's luck, and does a recipe
remove it?

`bench/robustness.py` found the drop against the teacher above 0.5 points in two native-kernel
runs (seeds 42 and 1234, with the 30-epoch student of the time), the loss in the student and
the prune stage, not INT8. One run per seed is one draw. This bench distils those students
once (`dvc repro distill` in a temp copy, the seed's params with `reproducible: false`), then
reruns the prune stage's work in-process for each recipe below and each of `--shuffles`
fine-tune shuffles (the setup's seed + 1000 k: the batch order differs, and with it the
weights that later steps rank; the first step prunes the same channels every time) and counts
the test samples the pruned FP32 model loses against the teacher (torch, argmax). One sample
is 0.28 points of digits' 360. Means are given per seed, and the sd within a seed: the
shuffles' spread, apart from the students' difference.

    .venv/bin/python bench/prune_noise.py [--seeds 42 1234] [--shuffles 5]

Takes about 10 min on 2 cores. Writes bench/results/prune_noise.{md,json}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from pipeline import copy_project, set_params, timed
from published import publish, table_head

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from slimline.core.cpu import cpu_info, describe  # noqa: E402

# each a set of prune overrides on params.yaml's recipe
RECIPES = {
    "no pruning": {"ratio": 0.0},  # the distilled student's own loss (nothing shuffled: run once)
    "default": {},
    "ratio 0.3": {"ratio": 0.3},
    "lr 0.01": {"lr": 0.01},
    "lr 0.002": {"lr": 0.002},
    "20 epochs": {"finetune_epochs": 20},
    "3 steps": {"steps": 3},
    "taylor": {"importance": "taylor"},
}
SHUFFLE_STRIDE = 1000  # seeds apart: prune step k uses seed + k, so shuffles never meet
WORKERS = 2  # one single-threaded fine-tune per core of the 2-core machines this runs on


def trained(seed: int, workdir: Path) -> Path:
    """A copy of the project with the seed's student distilled (native kernels)."""
    project = copy_project(workdir / f"seed{seed}")
    set_params(project, seed=seed, reproducible=False)
    timed(["dvc", "repro", "distill"], project)
    return project


def samples_lost(project: Path, recipe: str, shuffle: int) -> tuple[int, int]:
    """The teacher's test errors subtracted from the pruned model's, for one recipe and shuffle,
    and the test split's size."""
    # imported here, in the forked worker: the parent never loads torch, so each worker's
    # first kernel runs after its own seeding
    from slimline.compression.data.store import load_splits
    from slimline.compression.models.checkpoints import load_checkpoint
    from slimline.compression.models.teacher import load_teacher
    from slimline.compression.training.fit import distill_loss, loss_and_accuracy, seed_everything
    from slimline.compression.training.pruning import prune_and_finetune
    from slimline.compression.training.setup import finetune_setup
    from slimline.core.params.loading import load_params

    params = load_params(project / "params.yaml")
    params = params.model_copy(update={"prune": params.prune.model_copy(update=RECIPES[recipe])})
    seed_everything(params.seed, params.threads, params.reproducible)
    train, val, test = load_splits(project / params.paths.prepared)
    setup = finetune_setup(params, train, val)
    setup = dataclasses.replace(setup, seed=setup.seed + SHUFFLE_STRIDE * shuffle)
    teacher = load_teacher(project / params.paths.teacher)
    student = load_checkpoint(project / params.paths.student)
    pruned, _ = prune_and_finetune(student, setup, distill_loss(teacher, setup, params.distill),
                                   params.prune)  # fmt: skip
    n = len(test.y)
    pruned_right = round(loss_and_accuracy(pruned, test)[1] * n)
    teacher_right = round(loss_and_accuracy(teacher, test)[1] * n)
    return teacher_right - pruned_right, n


def page(runs: list[dict], seeds: list[int], shuffles: int) -> tuple[list[str], dict]:
    """The markdown page and the summary by recipe; a run is over the drop gate when its loss,
    as a fraction of the test split, exceeds params.yaml's `gates.max_accuracy_drop`."""
    gate = yaml.safe_load((ROOT / "params.yaml").read_text())["gates"]["max_accuracy_drop"]
    n = runs[0]["test_samples"]
    lines = ["# Pruning's share of the drop, by recipe", "", f"CPU: {describe(cpu_info())}.", "",
             f"Students of seeds {', '.join(map(str, seeds))} (native kernels); {shuffles} "
             "fine-tune shuffles each; test samples the pruned FP32 model loses against the "
             f"teacher (of {n}; 0.5 points is {n / 200:.1f}; the drop gate, {gate:.0%}, "
             f"{gate * n:.1f}).", "",
             *table_head(["recipe", "prune overrides", "mean", "mean by seed",
                          "sd within a seed", "max", "runs at most 1",
                          "runs over the drop gate"])]  # fmt: skip
    summary = {}
    for recipe, overrides in RECIPES.items():
        by_seed = [np.array([r["samples_lost"] for r in runs
                             if r["recipe"] == recipe and r["seed"] == seed])
                   for seed in seeds]  # fmt: skip
        got = np.concatenate(by_seed)
        within = [g - g.mean() for g in by_seed if len(g) > 1]
        sd = (float(np.sqrt((np.concatenate(within) ** 2).sum()
                            / sum(len(w) - 1 for w in within))) if within else None)  # fmt: skip
        summary[recipe] = {"overrides": overrides, "mean": float(got.mean()),
                           "mean_by_seed": [float(g.mean()) for g in by_seed],
                           "sd_within_seed": sd, "max": int(got.max()),
                           "at_most_1": int((got <= 1).sum()),
                           "over_gate": int((got / n > gate).sum()), "runs": len(got)}  # fmt: skip
        row = summary[recipe]
        runs_of = f"of {row['runs']}"
        lines.append(f"| {recipe} | {json.dumps(overrides)} | {row['mean']:.1f} | "
                     f"{' / '.join(f'{m:.1f}' for m in row['mean_by_seed'])} | "
                     f"{'-' if sd is None else f'{sd:.1f}'} | {row['max']} | "
                     f"{row['at_most_1']} {runs_of} | {row['over_gate']} {runs_of} |")  # fmt: skip
    return lines, summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1234])
    parser.add_argument("--shuffles", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slimline-prune-noise-") as tmp:
        projects = {seed: trained(seed, Path(tmp)) for seed in args.seeds}
        jobs = [(seed, recipe, k) for recipe, overrides in RECIPES.items() for seed in args.seeds
                for k in range(1 if overrides.get("ratio") == 0 else args.shuffles)]  # fmt: skip
        with ProcessPoolExecutor(WORKERS) as pool:
            lost = list(pool.map(samples_lost, [projects[s] for s, _, _ in jobs],
                                 [r for _, r, _ in jobs], [k for _, _, k in jobs]))  # fmt: skip
    runs = [{"seed": s, "recipe": r, "shuffle": k, "samples_lost": got, "test_samples": n}
            for (s, r, k), (got, n) in zip(jobs, lost, strict=True)]  # fmt: skip
    lines, summary = page(runs, args.seeds, args.shuffles)
    publish("prune_noise", lines, {"cpu": cpu_info(), "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
