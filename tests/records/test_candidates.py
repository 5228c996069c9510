"""A sweep's candidates: the Pareto front and its plot."""

from __future__ import annotations

from slimline.records.candidates import Candidate, pareto_front, plot_pareto


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


def test_the_plot_marks_the_front_and_the_promoted_candidate(tmp_path):
    cands = [cand("a", 0.99, 0.3, 9000), cand("b", 0.95, 0.1, 4000), cand("c", 0.9, 0.5, 9900)]
    pareto_front(cands)
    plot_pareto(cands, cands[0], tmp_path / "reports" / "pareto.png")
    data = (tmp_path / "reports" / "pareto.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000
