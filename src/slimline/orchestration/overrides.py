"""`-S key=value`: one grammar for `run`, `check` and `sweep`.

Each `-S` sets one key to one value, parsed as YAML exactly as `load_params` parses it
(`-S prune.ratio=0.5` is a number, `-S data.target=label` a string, `-S key=[64,32]` a list,
`-S key=` null). `run` and `check` take one value per key; `sweep` makes every key given more
than once an axis of its grid, so any value a run takes, lists included, can be swept.

A sweep's candidates run as `dvc exp run --temp -S ...`, whose `-S` is Hydra's override grammar,
not YAML: `dvc_set` writes each value as the Hydra literal that DVC parses back to the same value
(a string quoted, so that a comma in it is not a Hydra choice sweep), with `++` so that a key
params.yaml does not spell out yet is added, as `run` adds it.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

import yaml

from slimline.core.errors import InputError

FLAG = "-S"
KEY = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*$")
HYDRA_KEY = re.compile(r"^[A-Za-z_][\w-]*$")  # a key inside a dict value


def parse(item: str) -> tuple[str, Any]:
    """`key=value` -> (key, the value parsed as YAML); an `InputError` naming `-S` and the
    item when it is not that."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError(f"{FLAG} {item!r}: key=value, e.g. {FLAG} prune.ratio=0.5")
    if not KEY.match(key):
        raise InputError(f"{FLAG} {item!r}: {key!r} is not a dotted params key such as prune.ratio")
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError as e:
        where = str(e).splitlines()[0]
        raise InputError(
            f"{FLAG} {item!r}: the value is not valid YAML ({where}); quote the whole "
            f"argument for the shell when it holds spaces, e.g. {FLAG} '{key}=[64, 32]'"
        ) from None
    return key, value


def single(items: list[str] | None) -> list[str]:
    """The overrides of `run` and `check`: each well formed, each key once, as `key=value`
    with the key's spaces gone (what is validated is what gets written)."""
    seen: dict[str, str] = {}
    for item in items or []:
        key, _ = parse(item)
        if key in seen:
            raise InputError(
                f"{FLAG} {key}: given twice ({seen[key]!r} and {item!r}); one value per key "
                "here (`slimline sweep` makes a repeated key an axis of its grid)"
            )
        seen[key] = f"{key}={item.partition('=')[2].strip()}"
    return list(seen.values())


def axes(items: list[str]) -> dict[str, list[str]]:
    """The grid of `sweep`: each key, in order of first appearance, with its `key=value`
    items in the order given; the same value twice for one key is an error."""
    found: dict[str, list[tuple[str, Any]]] = {}
    for item in items:
        key, value = parse(item)
        values = found.setdefault(key, [])
        if any(_same(value, v) for _, v in values):
            raise InputError(f"{FLAG} {item!r}: {key} already has this value in the grid")
        values.append((f"{key}={item.partition('=')[2].strip()}", value))
    if not found:
        raise InputError(
            f"{FLAG}: at least one key=value to sweep over; repeat a key for each of its "
            f"values, e.g. {FLAG} prune.ratio=0.3 {FLAG} prune.ratio=0.5"
        )
    return {key: [item for item, _ in values] for key, values in found.items()}


def grid(items: list[str]) -> list[list[str]]:
    """Every combination, as lists of `key=value` overrides (one per key, keys in order of
    first appearance): `-S a=1 -S a=2 -S b=x` -> [[a=1, b=x], [a=2, b=x]]."""
    return [list(combo) for combo in itertools.product(*axes(items).values())]


def comma_hint(items: list[str]) -> str:
    """For a params error after a sweep's `-S key=v1,v2` in the old form: how to write it now."""
    for item in items:
        key, value = parse(item)
        if isinstance(value, str) and "," in value:
            first, second = (v.strip() for v in value.split(",")[:2])
            return (
                f"\n  ({FLAG} {item} is one string value; to sweep several values repeat the "
                f"key: {FLAG} {key}={first} {FLAG} {key}={second})"
            )
    return ""


def dvc_set(item: str) -> str:
    """A `key=value` override as `dvc exp run -S` takes it: `++key=<Hydra literal>`."""
    key, value = parse(item)
    return f"++{key}={hydra_literal(value, item)}"


def hydra_literal(value: Any, item: str = "") -> str:
    """`value` written in Hydra's override grammar, which DVC parses back to `value`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if not math.isinf(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_literal(v, item) for v in value) + "]"
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str) or not HYDRA_KEY.match(k):
                raise InputError(
                    f"{FLAG} {item!r}: the mapping key {k!r} cannot pass through "
                    "`dvc exp run -S` (letters, digits, _ and - only)"
                )
        return "{" + ",".join(f"{k}:{hydra_literal(v, item)}" for k, v in value.items()) + "}"
    return _quoted(str(value))  # a string (or a YAML date: DVC then writes its text)


def _quoted(text: str) -> str:
    """A single-quoted Hydra string. Hydra reads a backslash as an escape only before a quote
    and at the end (each then doubled, `\\'` a quote); OmegaConf then resolves `${...}`
    unless it is escaped as `\\${`, with the same doubling of the backslashes before it."""
    out = ""
    for i, ch in enumerate(text):
        if ch == "'" or (ch == "$" and text.startswith("${", i)):
            backslashes = len(out) - len(out.rstrip("\\"))
            out += "\\" * backslashes + "\\" + ch
        else:
            out += ch
    backslashes = len(out) - len(out.rstrip("\\"))
    return "'" + out + "\\" * backslashes + "'"


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b
