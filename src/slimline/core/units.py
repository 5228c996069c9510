"""One size unit for people: the decimal kilobyte (1 kB = 1000 bytes, as `ls -l --si` and
`du --si` count), in every table, plot and listing, always labelled `kB`."""

from __future__ import annotations

KB = 1000  # bytes in a kB
KB_LABEL = "kB"


def kilobytes(size_bytes: float) -> float:
    return size_bytes / KB


def format_kb(size_bytes: float, spec: str = ",.1f") -> str:
    """`20,000` bytes -> `20.0 kB`."""
    return f"{kilobytes(size_bytes):{spec}} {KB_LABEL}"
