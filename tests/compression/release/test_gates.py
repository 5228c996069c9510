import numpy as np
import pytest

from slimline.compression.release.gates import (
    Evidence,
    Gate,
    describe_failures,
    model_gates,
    paired_difference,
    report,
    undecidable_notes,
    wilson,
)
from slimline.core.params.release import Gates

SIZES = {"size_bytes": 30_000, "teacher_size_bytes": 4_000_000}


def test_min_and_max_gates_with_margins():
    ok = Gate("min_accuracy", 0.97, 0.95, "min")
    too_big = Gate("max_size_bytes", 120_000, 100_000, "max")
    at_bound = Gate("max_accuracy_drop", 0.01, 0.01, "max")
    assert ok.passed and abs(ok.margin - 0.02) < 1e-12
    assert not too_big.passed and too_big.margin == -20_000
    assert at_bound.passed  # a threshold is inclusive


def test_report_has_contract_shape_and_names_failures():
    gates = [Gate("min_accuracy", 0.9, 0.95, "min"), Gate("max_size_bytes", 10, 100, "max")]
    out = report(gates)
    assert out["passed"] is False
    assert [(g["name"], g["passed"]) for g in out["gates"]] == [
        ("min_accuracy", False),
        ("max_size_bytes", True),
    ]
    assert {"name", "value", "threshold", "passed"} <= out["gates"][0].keys()
    assert describe_failures(gates) == ["min_accuracy: 0.9000 < 0.9500 (off by 0.0500)"]
    assert report(gates[1:])["passed"] is True


def test_failures_read_like_people_write_them_not_like_floats():
    drop = Gate("max_accuracy_drop", 0.99 - 0.9733333333333334, 0.01, "max")
    assert describe_failures([drop]) == ["max_accuracy_drop: 0.0167 > 0.0100 (off by 0.0067)"]
    big = Gate("max_size_bytes", 120_000, 100_000, "max")
    ratio = Gate("min_compression", 4_348_809 / 98_616, 50.0, "min")
    assert describe_failures([big, ratio]) == [
        "max_size_bytes: 120,000 > 100,000 (off by 20,000)",
        "min_compression: 44.10 < 50.00 (off by 5.90)",
    ]
    # a passing gate, with its interval and samples
    e = Evidence(both=290, teacher_only=0, model_only=0, neither=10, agree=300)
    acc = model_gates(Gates(), e, **SIZES)[0]
    assert acc.describe() == (
        "min_accuracy: 0.9667 >= 0.9500 (95% CI 0.9397 to 0.9818, 300 test samples)"
    )


def test_wilson_and_the_paired_interval_match_published_figures():
    # Newcombe (1998), single proportion 81/263: 0.2553 to 0.3662
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    # contingencytables (Fagerland et al.), Cavo 2012: [[59, 6], [16, 80]], -0.1186 to -0.0046
    assert paired_difference(59, 6, 16, 80) == pytest.approx((-0.1186, -0.0046), abs=5e-5)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0


def test_intervals_contain_the_estimate_and_narrow_with_samples():
    def widths(scale: int) -> list[float]:
        e = Evidence(both=94 * scale, teacher_only=3 * scale, model_only=1 * scale,
                     neither=2 * scale, agree=98 * scale)  # fmt: skip
        gates = model_gates(Gates(), e, **SIZES)[:3]
        for g in gates:
            assert g.interval is not None and g.samples == e.n == 100 * scale
            assert g.interval[0] <= g.value <= g.interval[1], g
        assert [g.value for g in gates] == pytest.approx([0.95, 0.02, 0.98])
        return [g.interval[1] - g.interval[0] for g in gates]

    by_n = [widths(scale) for scale in (1, 4, 16, 64)]  # 100 to 6,400 test samples
    for wide, narrow in zip(by_n, by_n[1:], strict=False):
        assert all(n < w for n, w in zip(narrow, wide, strict=True))
    # width ~ 1/sqrt(n): four times the samples, about half the width
    assert all(0.45 < n / w < 0.55 for n, w in zip(by_n[-1], by_n[-2], strict=True))


def test_a_paired_drop_keeps_its_width_when_no_row_is_scored_differently():
    tiny = paired_difference(10, 0, 0, 0)  # ten rows, both right on all: not proof of no drop
    assert tiny[0] < 0 < tiny[1] and tiny[1] > 0.2


def test_bound_fails_what_the_estimate_passes_when_the_interval_crosses():
    e = Evidence(both=290, teacher_only=2, model_only=0, neither=8, agree=297)
    estimate = {g.name: g for g in model_gates(Gates(), e, **SIZES)}
    bound = {g.name: g for g in model_gates(Gates(decide="bound"), e, **SIZES)}
    for name in ("min_accuracy", "max_accuracy_drop", "min_agreement"):
        assert estimate[name].passed, estimate[name].describe()
        assert not bound[name].passed, bound[name].describe()
        assert estimate[name].as_dict()["decided_on"] == "estimate"
        assert bound[name].as_dict()["decided_on"] == "bound"
    drop = bound["max_accuracy_drop"]
    assert drop.margin == pytest.approx(drop.threshold - drop.interval[1])
    assert describe_failures([drop]) == [
        "max_accuracy_drop: upper bound 0.0242 > 0.0100 (off by 0.0142; estimate 0.0067; "
        "95% CI -0.0083 to 0.0242, 300 test samples)"
    ]
    # size and compression are no samples: the same either way
    assert bound["max_size_bytes"].passed and bound["min_compression"].passed
    # a large enough split clears the bound too
    big = Evidence(both=29_000, teacher_only=20, model_only=0, neither=980, agree=29_900)
    assert all(g.passed for g in model_gates(Gates(decide="bound"), big, **SIZES))


def test_a_tiny_split_is_said_too_small_with_the_size_that_would_do():
    tiny = Evidence(both=28, teacher_only=0, model_only=0, neither=2, agree=30)
    gates = model_gates(Gates(), tiny, **SIZES)
    notes = undecidable_notes(gates)
    assert [n.split(":")[0] for n in notes] == ["min_accuracy", "max_accuracy_drop",
                                                "min_agreement"]  # fmt: skip
    drop = report(gates)["gates"][1]
    needed = drop["undecidable"]["needed_samples"]
    assert drop["undecidable"]["width"] > 2 * 0.01 and needed > 30
    assert f"about {needed:,} test samples would decide it" in notes[1]
    assert "too small to decide it" in drop["undecidable"]["note"]
    # the size it names is about right: the same proportions on that many rows decide it
    k = -(-needed // 30)
    scaled = Evidence(both=28 * k, teacher_only=0, model_only=0, neither=2 * k, agree=30 * k)
    width = np.subtract(*model_gates(Gates(), scaled, **SIZES)[1].interval[::-1])
    assert width <= 2 * 0.01 * 1.1


def test_a_large_split_decides_every_gate_and_says_nothing():
    large = Evidence(both=9_850, teacher_only=30, model_only=20, neither=100, agree=9_960)
    gates = model_gates(Gates(), large, **SIZES)
    assert undecidable_notes(gates) == []
    assert all("undecidable" not in g for g in report(gates)["gates"])
    out = report(gates)["gates"]
    assert out[0]["samples"] == 10_000 and len(out[0]["interval"]) == 2
    assert out[0]["shown"] == "0.9870 (95% CI 0.9846 to 0.9890, 10,000 test samples)"
    assert "interval" not in out[3]  # max_size_bytes: no samples behind it


def test_a_threshold_without_tolerance_is_undecidable_at_any_size():
    e = Evidence(both=1_000, teacher_only=0, model_only=0, neither=0, agree=1_000)
    gate = model_gates(Gates(min_accuracy=1.0), e, **SIZES)[0]
    assert gate.passed and gate.needed_samples == 0
    assert report([gate])["gates"][0]["undecidable"]["needed_samples"] is None
    assert "no split size would do" in undecidable_notes([gate])[0]


def test_evidence_counts_the_paired_table_from_predictions():
    y = np.array([0, 1, 2, 3, 4, 5])
    model = np.array([0, 1, 2, 9, 9, 5])
    teacher = np.array([0, 1, 9, 3, 9, 5])
    source = np.array([0, 1, 2, 9, 4, 4])
    e = Evidence.of(model, teacher, source, y)
    assert (e.both, e.teacher_only, e.model_only, e.neither, e.agree) == (3, 1, 1, 1, 4)
    assert e.accuracy == pytest.approx(4 / 6) and e.teacher_accuracy == pytest.approx(4 / 6)
    assert e.drop == 0 and e.agreement == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="length mismatch"):
        Evidence.of(model[:5], teacher, source, y)
