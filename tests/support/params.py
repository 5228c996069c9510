"""Params files for tests: the project's params.yaml with sections merged in."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.paths import ROOT


def write_params(path: Path, **sections) -> Path:
    """A valid params file: the project's params.yaml with `sections` merged in."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in sections.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
