"""The tables and the figure of bench/scale.py, from its measurements (no measuring here)."""

from __future__ import annotations

import math
from pathlib import Path

from slimline.core.atomic import atomic_path

LINEAR, BOUNDED = 4.0 * 1.1, 1.25  # per x4 of data: CPU time within 10% of 4x; RSS under +25%
# issue 15's goal, largest against smallest run: peak RSS at most 1.5x, time per sample no worse
# (10% of slack for a machine shared with other work)
RSS_GOAL, PER_SAMPLE_GOAL = 1.5, 1.1


def per_x4(a: float, b: float, ma: int, mb: int) -> float:
    """Growth of a value per x4 of data between multipliers ma < mb."""
    return (b / a) ** (math.log(4) / math.log(mb / ma)) if a > 0 else float("nan")


def tables(runs: list[dict]) -> str:
    ms = [r["multiplier"] for r in runs]
    pairs = list(zip(runs, runs[1:], strict=False))
    stages = list(runs[0]["stages"])

    def value(run: dict, stage: str, key: str) -> float:
        if stage == "total":
            return sum(s[key] for s in run["stages"].values())
        return run["stages"][stage][key]

    def growth(stage: str, key: str) -> list[str]:
        out = []
        for a, b in pairs:
            ratio = per_x4(
                value(a, stage, key), value(b, stage, key), a["multiplier"], b["multiplier"]
            )
            out.append(f"{ratio:.2f}x")
        return out

    head = [f"x{m}" for m in ms]
    span = [f"x{a['multiplier']}->x{b['multiplier']}" for a, b in pairs]
    lines = [
        "| multiplier | samples (train/val/test) | x (MB) | teacher acc | final INT8 acc | gates "
        "| DVC no-op repro (s) | 1-min load during stages |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        o, loads = r["outcome"], [s["load_1min"] for s in r["stages"].values()]
        split = "/".join(str(o["split_samples"][k]) for k in ("train", "val", "test"))
        gates = {True: "passed", False: "FAILED", None: "-"}[o["gates_passed"]]
        lines.append(
            f"| x{r['multiplier']} | {r['samples']} ({split}) "
            f"| {r['x_mb']:.1f} | {_acc(o['teacher_accuracy'])} "
            f"| {_acc(o['final_int8_accuracy'])} "
            f"| {gates} | {r['dvc_noop']['wall_s']:.1f} "
            f"| {min(loads):.1f}-{max(loads):.1f} |"
        )
    lines += goal(runs)
    lines += [
        "",
        "Time per stage: wall seconds (CPU seconds of the process tree), growth per x4.",
        "",
    ]
    lines.append(
        "| stage | "
        + " | ".join(head)
        + " | "
        + " | ".join(f"wall {s}" for s in span)
        + " | "
        + " | ".join(f"CPU {s}" for s in span)
        + " | time |"
    )
    lines.append("|" + " --- |" * (2 + len(ms) + 2 * len(pairs)))
    for stage in [*stages, "total"]:
        cells = [f"{value(r, stage, 'wall_s'):.1f} ({value(r, stage, 'cpu_s'):.1f})" for r in runs]
        cpu = [
            per_x4(
                value(a, stage, "cpu_s"), value(b, stage, "cpu_s"), a["multiplier"], b["multiplier"]
            )
            for a, b in pairs
        ]
        verdict = "at most linear" if all(g <= LINEAR for g in cpu) else "SUPERLINEAR"
        verdict = verdict if pairs else "n/a (one size)"
        row = [stage, *cells, *growth(stage, "wall_s"), *growth(stage, "cpu_s"), verdict]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Peak memory per stage: kernel peak RSS of the largest process (MB), the "
        "sampled peak of the whole tree in brackets, growth per x4.",
        "",
    ]
    lines.append("| stage | " + " | ".join(head) + " | " + " | ".join(span) + " | memory |")
    lines.append("|" + " --- |" * (2 + len(ms) + len(pairs)))
    for stage in stages:
        cells = [
            f"{r['stages'][stage]['peak_rss_mb']:.0f} ({r['stages'][stage]['tree_rss_mb']:.0f})"
            for r in runs
        ]
        ratios = [
            per_x4(
                a["stages"][stage]["peak_rss_mb"],
                b["stages"][stage]["peak_rss_mb"],
                a["multiplier"],
                b["multiplier"],
            )
            for a, b in pairs
        ]
        verdict = "bounded" if all(g <= BOUNDED for g in ratios) else "GROWS"
        verdict = verdict if pairs else "n/a (one size)"
        lines.append(
            "| " + " | ".join([stage, *cells, *(f"{g:.2f}x" for g in ratios), verdict]) + " |"
        )
    return "\n".join(lines) + "\n"


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def goal(runs: list[dict]) -> list[str]:
    """Issue 15's goal, largest run against the smallest: peak RSS ratio, time per sample."""
    if len(runs) < 2:
        return []
    a, b = runs[0], runs[-1]
    span = f"x{b['multiplier']}/x{a['multiplier']}"
    lines = [
        "",
        f"The goal, {span}: peak RSS (kernel, largest process) at most {RSS_GOAL}x, and time per "
        f"sample at most {PER_SAMPLE_GOAL}x (CPU seconds of the tree / samples; wall in brackets).",
        "",
        f"| stage | RSS x{a['multiplier']} (MB) | RSS x{b['multiplier']} (MB) | RSS {span} "
        f"| time/sample {span} | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for stage in a["stages"]:
        sa, sb = a["stages"][stage], b["stages"][stage]
        rss = sb["peak_rss_mb"] / sa["peak_rss_mb"]
        cpu = (sb["cpu_s"] / b["samples"]) / (sa["cpu_s"] / a["samples"])
        wall = (sb["wall_s"] / b["samples"]) / (sa["wall_s"] / a["samples"])
        verdict = [
            "RSS ok" if rss <= RSS_GOAL else "RSS OVER",
            "time ok" if cpu <= PER_SAMPLE_GOAL else "time SUPERLINEAR",
        ]
        lines.append(
            f"| {stage} | {sa['peak_rss_mb']:.0f} | {sb['peak_rss_mb']:.0f} | {rss:.2f}x "
            f"| {cpu:.3f}x ({wall:.3f}x) | {', '.join(verdict)} |"
        )
    return lines


def plot(runs: list[dict], path: Path) -> None:
    """CPU seconds per stage against samples (log-log), with a linear-growth guide."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    n = [r["samples"] for r in runs]
    for stage in runs[0]["stages"]:
        ax.plot(n, [r["stages"][stage]["cpu_s"] for r in runs], marker="o", label=stage)
    total = [sum(s["cpu_s"] for s in r["stages"].values()) for r in runs]
    ax.plot(n, total, marker="o", color="black", lw=2, label="total")
    ax.plot(n, [total[0] * k / n[0] for k in n], ls="--", color="gray", label="linear from x1")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="samples (log)",
        ylabel="CPU seconds (log)",
        title="pipeline stages: CPU time against data size",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
