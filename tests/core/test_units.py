"""One size unit: decimal kB, labelled kB."""

from __future__ import annotations

from slimline.core.units import KB_LABEL, format_kb, kilobytes


def test_sizes_are_decimal_kilobytes():
    assert kilobytes(20_000) == 20.0
    assert format_kb(1_234_567) == "1,234.6 kB"
    assert format_kb(26_215, ",.0f") == "26 kB"
    assert KB_LABEL == "kB"
