"""The sweep's pure parts: the grid of candidates, the Pareto front, the plot."""

from __future__ import annotations

import pytest

from slimline.core.errors import InputError
from slimline.orchestration.experiments import exp_argv, grid
from slimline.records.candidates import Candidate, pareto_front, plot_pareto


def test_the_grid_is_every_combination_in_order():
    combos = grid(["prune.ratio=0.3,0.5,0.7", "distill.temperature=2,4"])
    assert len(combos) == 6
    assert combos[0] == ["prune.ratio=0.3", "distill.temperature=2"]
    assert combos[-1] == ["prune.ratio=0.7", "distill.temperature=4"]
    assert grid(["seed=1"]) == [["seed=1"]]


@pytest.mark.parametrize("bad", [[], ["prune.ratio"], ["=0.3"], ["prune.ratio=0.3,,0.5"]])
def test_a_bad_grid_names_the_option(bad):
    with pytest.raises(InputError, match="-S"):
        grid(bad)


def cand(name: str, acc: float, ms: float, size: float, ok: bool = True) -> Candidate:
    return Candidate(
        name, [f"x={name}"], ok=ok, figures={"accuracy": acc, "latency_ms": ms, "size_bytes": size}
    )


def test_the_front_keeps_what_no_other_candidate_beats_everywhere():
    cands = [
        cand("best_acc", 0.99, 0.30, 9000),
        cand("fastest", 0.95, 0.10, 9000),
        cand("smallest", 0.95, 0.30, 3000),
        cand("dominated", 0.94, 0.31, 9500),  # worse than best_acc on all three
        cand("twin", 0.99, 0.30, 9000),  # equal to best_acc: neither dominates the other
        cand("failed", 1.0, 0.01, 1, ok=False),  # a failed candidate is never on the front
    ]
    front = {c.name for c in pareto_front(cands)}
    assert front == {"best_acc", "fastest", "smallest", "twin"}
    assert not next(c for c in cands if c.name == "dominated").pareto


def test_exp_argv_is_a_named_temp_experiment_with_every_override_and_copy():
    argv = exp_argv("sweep-1", ["prune.ratio=0.3", "distill.temperature=2"], ["metrics"])
    assert argv[-11:] == [
        "exp",
        "run",
        "--temp",
        "-n",
        "sweep-1",
        "-S",
        "prune.ratio=0.3",
        "-S",
        "distill.temperature=2",
        "-C",
        "metrics",
    ]


def test_the_plot_marks_the_front_and_the_promoted_candidate(tmp_path):
    cands = [cand("a", 0.99, 0.3, 9000), cand("b", 0.95, 0.1, 4000), cand("c", 0.9, 0.5, 9900)]
    pareto_front(cands)
    plot_pareto(cands, cands[0], tmp_path / "reports" / "pareto.png")
    data = (tmp_path / "reports" / "pareto.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000
