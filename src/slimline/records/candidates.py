"""A sweep's candidates and what they are judged by: figures, gates, the accuracy / latency /
size Pareto front, and its plot. Pure: no DVC, no Prefect, no MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimline.core.params.schema import Params
from slimline.core.units import KB_LABEL, kilobytes


@dataclass(frozen=True)
class Checkout:
    """A candidate's experiment checked out (a git worktree at its commit) and the validated
    params it ran with, read once."""

    path: Path
    params: Params


# the objectives: accuracy up, latency and size down
OBJECTIVES = (("accuracy", 1), ("latency_ms", -1), ("size_bytes", -1))


@dataclass
class Candidate:
    name: str
    overrides: list[str]
    ok: bool = False
    error: str = ""
    seconds: float = 0.0
    worker: str = ""  # the Dask worker's address that ran it
    rev: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # dotted keys, from dvc exp show
    metrics: dict[str, float] = field(default_factory=dict)  # `<file stem>.<key>`
    figures: dict[str, float] = field(default_factory=dict)  # the registry's: accuracy, ...
    gates_passed: bool = False
    failing: list[str] = field(default_factory=list)
    pareto: bool = False

    def label(self) -> str:
        return " ".join(self.overrides) or "baseline"


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Marks and returns the candidates no other one beats on every objective (and strictly on
    one): the best accuracy for its latency and size."""
    scored = [c for c in candidates if c.ok and all(k in c.figures for k, _ in OBJECTIVES)]

    def key(c: Candidate) -> tuple[float, ...]:
        return tuple(sign * c.figures[k] for k, sign in OBJECTIVES)  # larger is better

    for c in scored:
        mine = key(c)
        c.pareto = not any(
            all(o >= m for o, m in zip(key(d), mine, strict=True)) and key(d) != mine
            for d in scored
        )
    return [c for c in scored if c.pareto]


def plot_pareto(candidates: list[Candidate], best: Candidate | None, path: Path) -> None:
    """Accuracy against latency and against size; the front in red and joined, the promoted
    candidate starred, every point labelled with its overrides."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from slimline.core.atomic import atomic_path

    scored = [c for c in candidates if c.ok and c.figures.get("accuracy") is not None]
    fig = Figure(figsize=(11, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (x_key, x_label) in zip(
        axes,
        [("latency_ms", "latency, batch 1, p50 (ms)"), ("size_bytes", f"size ({KB_LABEL})")],
        strict=True,
    ):
        scale = kilobytes(1) if x_key == "size_bytes" else 1.0
        points = [
            (c.figures[x_key] * scale, c.figures["accuracy"], c)
            for c in scored
            if x_key in c.figures
        ]
        rest = [(x, y) for x, y, c in points if not c.pareto]
        front = sorted((x, y) for x, y, c in points if c.pareto)
        if rest:
            ax.scatter(*zip(*rest, strict=True), c="0.6", s=30, label="dominated")
        if front:  # no line through them: a 3-objective front is not a curve in 2-D
            ax.scatter(*zip(*front, strict=True), c="tab:red", s=50, label="Pareto front")
        for x, y, c in points:
            if c is best:
                ax.scatter(
                    [x],
                    [y],
                    marker="*",
                    s=260,
                    c="gold",
                    edgecolors="k",
                    zorder=3,
                    label="promoted",
                )
            ax.annotate(c.label(), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7)
        ax.set(xlabel=x_label, title=f"accuracy vs {x_key.split('_')[0]}")
        ax.grid(True, alpha=0.3)
        ax.margins(0.15)
    axes[0].set_ylabel("test accuracy (final INT8)")
    if scored:
        axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("sweep: accuracy (max) / latency (min) / size (min) Pareto front")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
