"""The rule that picks the shipped variant, on hand-made candidate tables: each objective, the
tie order (accuracy, size, latency), the latency tie band, failing candidates, none passing."""

from __future__ import annotations

import pytest

from slimline.compression.release.gates import Evidence, Gate, model_gates
from slimline.compression.release.objective import LATENCY_TIE, Variant, markdown, select
from slimline.core.params.release import Gates


def cand(name: str, acc: float, size: int, latency: float | None = None, fails: bool = False):
    gate = Gate("min_compression", 44.1 if fails else 160.0, 50.0, "min")
    return Variant(name, acc, 0.99 - acc, size, (gate,), latency)


INT8 = cand("pruned_int8", 0.986, 26_815, 0.0154)
FP32 = cand("pruned_fp32", 0.990, 98_616, 0.0115)


@pytest.mark.parametrize(
    ("objective", "shipped", "why"),
    [
        ("size", "pruned_int8", "smallest (pruned_int8 26,815 bytes, pruned_fp32 98,616 bytes)"),
        ("latency", "pruned_fp32", "fastest at batch 1 (pruned_int8 0.0154 ms, pruned_fp32 "),
        ("accuracy", "pruned_fp32", "most accurate (pruned_int8 0.9860, pruned_fp32 0.9900)"),
    ],
)
def test_each_objective_picks_its_best(objective, shipped, why):
    choice = select([INT8, FP32], objective)
    assert choice.chosen.name == shipped and choice.objective == objective
    assert choice.reason.startswith(f"{shipped}: {why}")
    record = choice.as_dict()
    assert record["variant"] == shipped and record["reason"] == choice.reason
    assert [c["name"] for c in record["candidates"]] == ["pruned_int8", "pruned_fp32"]


def test_an_accuracy_tie_goes_to_size_then_latency():
    tied = cand("pruned_fp32", INT8.accuracy, 98_616, 0.0115)
    choice = select([INT8, tied], "accuracy")
    assert choice.chosen.name == "pruned_int8"
    assert choice.reason == (
        "pruned_int8: tie on accuracy (pruned_int8 0.9860, pruned_fp32 0.9860); "
        "smallest (pruned_int8 26,815 bytes, pruned_fp32 98,616 bytes)"
    )
    same_size = cand("pruned_fp32", INT8.accuracy, INT8.size_bytes, 0.0115)
    assert select([INT8, same_size], "accuracy").chosen.name == "pruned_fp32"  # latency last
    assert select([INT8, same_size], "size").chosen.name == "pruned_fp32"


def test_latencies_within_the_tie_band_go_to_accuracy():
    close = cand("pruned_fp32", 0.990, 98_616, INT8.latency_ms * (1 - LATENCY_TIE / 2))
    choice = select([INT8, close], "latency")
    assert choice.chosen.name == "pruned_fp32"  # the more accurate, not the faster by noise
    assert choice.reason.startswith("pruned_fp32: tie on latency")
    slower_but_accurate = cand("pruned_fp32", 0.990, 98_616, INT8.latency_ms * 1.02)
    assert select([INT8, slower_but_accurate], "latency").chosen.name == "pruned_fp32"
    clearly_slower = cand("pruned_fp32", 0.990, 98_616, INT8.latency_ms * 1.2)
    assert select([INT8, clearly_slower], "latency").chosen.name == "pruned_int8"


def test_untimed_latency_ties_and_a_full_tie_keeps_the_first_candidate():
    twin = cand("pruned_fp32", INT8.accuracy, INT8.size_bytes)
    first = cand("pruned_int8", INT8.accuracy, INT8.size_bytes)
    choice = select([first, twin], "latency")
    assert choice.chosen is first
    assert choice.reason.endswith(
        "a tie on every figure keeps the first candidate, the quantized model"
    )
    assert "tie on latency (pruned_int8 not timed, pruned_fp32 not timed)" in choice.reason


def test_a_failing_candidate_is_never_shipped_however_good():
    fast_but_big = cand("pruned_fp32", 0.999, 98_616, 0.001, fails=True)
    for objective in ("size", "latency", "accuracy"):
        choice = select([INT8, fast_but_big], objective)
        assert choice.chosen.name == "pruned_int8"
        assert choice.reason == (
            "pruned_int8: the only candidate that passes every gate; pruned_fp32 fails "
            "min_compression: 44.10 < 50.00 (off by 5.90)"
        )


def test_none_passing_keeps_the_quantized_model_and_says_why():
    bad_int8 = cand("pruned_int8", 0.5, 26_815, fails=True)
    bad_fp32 = cand("pruned_fp32", 0.6, 98_616, fails=True)
    choice = select([bad_int8, bad_fp32], "accuracy")
    assert choice.chosen is bad_int8
    assert choice.reason.startswith("pruned_int8: no candidate passes every gate (pruned_int8 ")
    assert choice.reason.endswith("the quantized model goes on and validate reports its gates")
    assert [c["passed"] for c in choice.as_dict()["candidates"]] == [False, False]


def test_markdown_marks_the_shipped_variant_and_failures():
    table = markdown(select([INT8, cand("pruned_fp32", 0.99, 98_616, fails=True)], "latency"))
    assert "| **pruned_int8** (shipped) | 0.9860 | 0.0040 | 26,815 | 0.0154 | pass |" in table
    assert "| pruned_fp32 | 0.9900 | 0.0000 | 98,616 | not timed | fail: min_compression" in table


def test_model_gates_are_validates_five_with_their_thresholds():
    # 1,000 test rows: the teacher right on 990, the model on 985 (5 fewer), agreeing on all
    e = Evidence(both=985, teacher_only=5, model_only=0, neither=10, agree=1_000)
    gates = model_gates(Gates(), e, size_bytes=98_616, teacher_size_bytes=4_348_809)
    assert [(g.name, g.passed) for g in gates] == [
        ("min_accuracy", True), ("max_accuracy_drop", True), ("min_agreement", True),
        ("max_size_bytes", True), ("min_compression", False),
    ]  # fmt: skip
    assert gates[4].value == pytest.approx(4_348_809 / 98_616)
    assert [g.value for g in gates[:3]] == pytest.approx([0.985, 0.005, 1.0])
    assert [g.samples for g in gates] == [1_000, 1_000, 1_000, None, None]
