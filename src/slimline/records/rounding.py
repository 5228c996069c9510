"""Figures as people read them in MLflow's tags and params: 4 significant digits (an
accuracy of 0.26666666666666666 reads 0.2667), whole numbers for bytes. The metrics keep full
precision, and whatever compares figures (the champion's defence, `aliases.version_figures`)
reads the metrics, never these strings.
"""

from __future__ import annotations

import json
import math
from typing import Any

SIGNIFICANT = 4  # digits: an accuracy on 360 test samples moves in its third decimal


def significant(value: float, digits: int = SIGNIFICANT) -> float:
    """`value` rounded to `digits` significant digits (NaN and infinities as they are)."""
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{digits}g}")


def counts_bytes(key: str) -> bool:
    """Whether the figure named `key` (`size_bytes`, `final.size_bytes`) is a byte count."""
    return key.rpartition(".")[2].endswith("bytes")


def for_people(key: str, value: Any) -> str:
    """One tag or param value: a float named like a byte count as an integer, any other float
    to 4 significant digits; integers, booleans and text unchanged (`str`)."""
    if isinstance(value, float) and not isinstance(value, bool) and math.isfinite(value):
        if counts_bytes(key):
            return str(round(value))
        return repr(significant(value))
    return str(value)


def json_for_people(key: str, obj: Any) -> str:
    """`obj` as JSON with every float in it rounded as `for_people` rounds one (a gate's 95%
    interval `[0.9717834877186631, 0.9956708566568366]` reads `[0.9718, 0.9957]`)."""

    def rounded(item: Any) -> Any:
        if isinstance(item, float) and math.isfinite(item):
            return round(item) if counts_bytes(key) else significant(item)
        if isinstance(item, list | tuple):
            return [rounded(i) for i in item]
        if isinstance(item, dict):
            return {k: rounded(v) for k, v in item.items()}
        return item

    return json.dumps(rounded(obj))
