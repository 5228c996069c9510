"""Hostile input for the security tests."""

from __future__ import annotations

from pathlib import Path


class Payload:
    """Unpickling this opens (so creates) a marker file: a stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))
