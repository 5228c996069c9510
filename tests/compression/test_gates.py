from slimline.compression.gates import Gate, describe_failures, report


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
    assert describe_failures(gates) == ["min_accuracy: 0.9 < 0.95 (off by 0.05)"]
    assert report(gates[1:])["passed"] is True
