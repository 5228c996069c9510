"""docs/params.md, generated from the schema: every field of every section of params.yaml with
its type, default and meaning (each field's `Field(description=...)`, each section's
docstring). Deterministic: the same schema prints the same bytes.

    python -m slimline.core.params.reference > docs/params.md

tests/core/test_params_reference.py fails when docs/params.md is stale or a field has no
description. No DVC stage imports this module, so editing it reruns nothing.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from slimline.core.params.models import MODEL_SIZES
from slimline.core.params.schema import Params

COMMAND = "python -m slimline.core.params.reference > docs/params.md"
# the sections, in the order a reader meets them; `paths` (written once, rarely changed) last
ORDER = ("data", "teacher", "student", "distill", "prune", "quantize", "export", "gates",
         "benchmark", "tracking", "paths")  # fmt: skip
HEADER = f"""# params.yaml reference

<!-- Generated from the schema in src/slimline/core/params/ by `{COMMAND}`.
     Do not edit by hand: tests/core/test_params_reference.py fails when this file is stale. -->

Every field of every section of `params.yaml`, with its type, its default and what it does.
The default is the schema's: what a field left out of `params.yaml` takes. `required` fields
have none; the bundled `params.yaml` sets them, writes most other fields out too, and sets a
few to other values than these defaults, so read it beside this page. Change a value in
`params.yaml`, or for one run with `slimline run -S section.field=value` (written into
`params.yaml`, as `dvc exp run -S` does). The pipeline reruns only the stages whose params
changed (`dvc params diff` shows them).
"""


def undocumented() -> list[str]:
    """`section.field` of every field without a description (none, when the schema is whole)."""
    return [
        f"{prefix}{name}"
        for prefix, model in models()
        for name, info in model.model_fields.items()
        if not (info.description or "").strip()
    ]


def render() -> str:
    """The whole of docs/params.md."""
    parts = [HEADER, _doc(Params), ""]
    top = [
        (name, info)
        for name, info in Params.model_fields.items()
        if not _section_model(info.annotation)
    ]
    parts += ["## Top level", "", *_table("", top, role=None), ""]
    for name in ORDER:
        info = Params.model_fields[name]
        model = _section_model(info.annotation)
        assert model is not None, name
        parts += [f"## `{name}`", "", _clean(info.description)]
        if doc := _doc(model):
            parts += ["", doc]
        parts += ["", *_table(f"{name}.", list(model.model_fields.items()), role=name), ""]
    return "\n".join(parts).rstrip("\n") + "\n"


def models() -> list[tuple[str, type[BaseModel]]]:
    """(key prefix, model) of the top level and every section."""
    found: list[tuple[str, type[BaseModel]]] = [("", Params)]
    for name, info in Params.model_fields.items():
        if (model := _section_model(info.annotation)) is not None:
            found.append((f"{name}.", model))
    return found


def _section_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _doc(model: type[BaseModel]) -> str:
    """The section's docstring, as one paragraph (pydantic's BaseModel has its own: skipped)."""
    doc = model.__dict__.get("__doc__")
    return " ".join(inspect.cleandoc(doc).split()) if doc else ""


def _table(prefix: str, fields: list[tuple[str, FieldInfo]], role: str | None) -> list[str]:
    rows = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, info in fields:
        cells = [
            f"`{prefix}{name}`",
            _type(info.annotation, info.metadata),
            _default(name, info, role),
            _clean(info.description),
        ]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return rows


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def _type(annotation: Any, metadata: list[Any]) -> str:
    """`int in [1, 256]`, `float in (0, 1)`, `` `a`, `b` ``, `int in [2, 1024] or null`."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [_type(a, []) for a in args if a is not type(None)]
        null = " or null" if type(None) in args else ""
        return " or ".join(kinds) + null
    if typing.get_origin(annotation) is typing.Annotated:
        inner, *extra = args
        found = [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
        return _type(inner, [*metadata, *found])
    if typing.get_origin(annotation) is Literal:
        return ", ".join(f"`{_yaml(a)}`" for a in args)
    base = getattr(annotation, "__name__", str(annotation))
    return base + _bounds(base, metadata)


def _bounds(base: str, metadata: list[Any]) -> str:
    low: tuple[str, Any] | None = next((("[", m.ge) for m in metadata if isinstance(m, Ge)), None)
    low = low or next((("(", m.gt) for m in metadata if isinstance(m, Gt)), None)
    high: tuple[Any, str] | None = next(((m.le, "]") for m in metadata if isinstance(m, Le)), None)
    high = high or next(((m.lt, ")") for m in metadata if isinstance(m, Lt)), None)
    said = ""
    if low and high:
        said = f" in {low[0]}{_number(low[1])}, {_number(high[0])}{high[1]}"
    elif low:
        said = f" {'≥' if low[0] == '[' else '>'} {_number(low[1])}"
    elif high:
        said = f" {'≤' if high[1] == ']' else '<'} {_number(high[0])}"
    notes = []
    if any(isinstance(m, MinLen) and m.min_length == 1 for m in metadata):
        notes.append("not empty")
    notes += [f"at most {m.max_length} long" for m in metadata if isinstance(m, MaxLen)]
    notes += [f"matching `{m.pattern}`" for m in metadata if getattr(m, "pattern", None)]
    if any(getattr(m, "strict", False) for m in metadata):
        notes.append("strict: `true` or `false` only" if base == "bool" else "strict: no `true`")
    return said + "".join(f", {n}" for n in notes)


def _number(value: Any) -> str:
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return _yaml(value)


def _yaml(value: Any) -> str:
    """A value as params.yaml writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return str(value)


def _default(name: str, info: FieldInfo, role: str | None) -> str:
    if info.is_required():
        return "required"
    if role in MODEL_SIZES and name in ("width", "depth") and info.default is None:
        at = 0 if name == "width" else 1
        sizes = ", ".join(f"{arch} {size[at]}" for arch, size in MODEL_SIZES[role].items())
        return f"`null` ({sizes})"
    return f"`{_yaml(info.default)}`"


if __name__ == "__main__":
    print(render(), end="")
