"""Dotted keys: `section.field=value` overrides applied to a params document, and params
flattened to dotted keys (MLflow's params, DVC's `-S`)."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import yaml

from slimline.core.params.schema import Params


def apply_override(doc: MutableMapping, item: str) -> list[str]:
    """Set `a.b.c=value` in the nested mapping `doc` (the value parsed as YAML, an empty one is
    null), creating missing sections; the problems with `item`, none when it was applied."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        return [f"override {item!r}: key=value, e.g. prune.ratio=0.5"]
    *parents, leaf = key.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, MutableMapping):
            return [f"{key}: {part!r} is not a section (override {item!r})"]
    node[leaf] = yaml.safe_load(value) if value else None
    return []


def to_flat_dict(params: Params) -> dict[str, Any]:
    """Dotted keys (`prune.ratio`) for MLflow params and settings files."""
    return flat_dict(params.model_dump(mode="json"))


def flat_dict(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys: `{"prune": {"ratio": 0.5}}` ->
    `{"prune.ratio": 0.5}`; lists are values, an empty mapping leaves no key."""
    if not isinstance(obj, Mapping):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        out |= flat_dict(v, f"{prefix}.{k}" if prefix else str(k))
    return out
