"""What `slimline run`, `sweep` and `check` verify before anything starts, and what `check`
reports: the params as `run` would take them, the preflight, the teacher's and the student's
sizes, and the stages DVC would rerun.

Nothing here trains and nothing is written to the project: `check` asks `dvc status` (which
keeps only DVC's own state under .dvc/tmp) and, where `--params` or `-S` make the params differ
from the project's params.yaml, compares them itself with what dvc.lock recorded, as DVC
would once `run` had written them into params.yaml.
"""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from slimline.compression.models.sizing import check_sizes, source_shape
from slimline.compression.release.preflight import check_before_run, check_onnx_teacher
from slimline.core.errors import InputError
from slimline.core.params.loading import ParamsError, load_params
from slimline.core.params.models import ModelSpec
from slimline.core.params.overrides import apply_override
from slimline.core.params.schema import Params
from slimline.orchestration import dvc_run, overrides

PARAMS = "params.yaml"  # the file the stages of dvc.yaml read
MISSING = object()
INTERPOLATION = re.compile(r"\$\{\s*([\w.-]+)\s*\}")


def validated(params_file: Path, sets: list[str], root: Path) -> Params:
    """The params `slimline run` runs with: `params_file` with `sets` (`overrides.single`'s)
    applied, valid, and past the preflight (a student not smaller than its teacher, an
    unusable ONNX teacher). Bad input raises `InputError` (exit 2), naming the field."""
    params = load_params(params_file, sets, base=root)
    check_before_run(params, root)
    return params


def candidates(root: Path, sets: list[str]) -> list[list[str]]:
    """A sweep's candidates (`overrides.grid`), each valid and past the preflight."""
    combos = overrides.grid(sets)
    for combo in combos:
        try:
            params = load_params(root / PARAMS, combo)
        except ParamsError as e:
            flags = " ".join(f"-S {item}" for item in combo)
            raise InputError(f"candidate {flags}: {e}{overrides.comma_hint(sets)}") from None
        check_before_run(params, root)
    return combos


def report(root: Path, params_file: Path, sets: list[str] | None) -> dict[str, Any]:
    """`slimline check`'s document (docs/cli.md has its shape)."""
    sets = overrides.single(sets)
    params = validated(params_file, sets, root)
    doc = resolved(params_file, sets)
    with ThreadPoolExecutor(1, thread_name_prefix="slimline-check") as pool:
        asked = pool.submit(dvc_status, root)  # its own process, while this one reads the rest
        sizes = model_sizes(params, root)
        try:
            upstreams = dvc_run.stage_upstreams(root)
        except Exception as e:
            asked.result()  # DVC's own words when it cannot read the project
            raise InputError(f"{root / 'dvc.yaml'}: {e}") from None
        status = asked.result()
    stages = plan(root, status, upstreams, doc)
    return {
        "project": str(root),
        "params_file": str(params_file.resolve()),
        "overrides": sets,
        "valid": True,
        "sizes": sizes,
        "stages": stages,
        "rerun": [s["name"] for s in stages if s["status"] == "changed"],
        "may_rerun": [s["name"] for s in stages if s["status"] == "downstream"],
    }


def resolved(params_file: Path, sets: list[str]) -> dict:
    """The document `run` would write into params.yaml (only after `load_params` accepted it)."""
    doc = yaml.safe_load(params_file.read_text()) or {}
    for item in sets:
        apply_override(doc, item)
    return doc


def model_sizes(params: Params, root: Path) -> dict[str, Any] | None:
    """Parameter counts of the teacher and the student for the data's shape, as the preflight
    computes them; None where the data cannot be read cheaply (the prepare stage will say why).
    An image folder counts 3 channels, the most the prepare stage keeps."""
    shape = source_shape(params.data, root)
    if shape is None:
        return None
    imported = params.teacher.source == "onnx"
    weights = check_onnx_teacher(params, root, shape) if imported else None
    counts = check_sizes(params, *shape, weights)
    if counts is None:
        return None
    teacher, student = counts
    described = (
        {"source": "onnx", "path": params.teacher.path}
        if imported
        else {"source": "train"} | _spec(params.teacher, "teacher")
    )
    return {
        "input_shape": list(shape[0]),
        "classes": shape[1],
        "teacher": described | {"params": teacher},
        "student": _spec(params.student, "student") | {"params": student},
        "ratio": round(teacher / student, 2),
    }


def _spec(spec: ModelSpec, role: str) -> dict[str, Any]:
    width, depth = spec.size(role)
    return {"arch": spec.arch, "width": width, "depth": depth}


def dvc_status(root: Path) -> dict[str, list]:
    """`dvc status --json`: each changed stage with what changed. `InputError` naming the
    project when DVC cannot read it; `RuntimeError` when another DVC command holds its lock."""
    proc = subprocess.run(
        dvc_run.dvc_argv("status", "--json"), cwd=root, capture_output=True, text=True, check=False
    )
    said = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR: ") for line in said if line.startswith("ERROR")]
    if proc.returncode != 0:
        why = (errors or said or [f"exit {proc.returncode}"])[-1]
        if "lock" in why.lower():
            raise RuntimeError(f"`dvc status` in {root}: {why} (is a run in progress?)")
        raise InputError(f"{root}: `dvc status` failed: {why}")
    text = proc.stdout
    try:
        found = json.loads(text[text.index("{") :]) if "{" in text else {}
    except ValueError:
        raise RuntimeError(f"`dvc status --json` in {root} printed no JSON: {text[:200]}") from None
    return found if isinstance(found, dict) else {}


def plan(
    root: Path, status: dict[str, list], upstreams: dict[str, list[str]], doc: dict
) -> list[dict[str, Any]]:
    """Each stage in DVC's order: `changed` (DVC reruns it, `reasons` say why), `downstream`
    (after a changed stage: DVC reruns it if that stage's outputs change) or `unchanged`."""
    workspace = _read(root / PARAMS)
    own = None if doc == workspace else params_changes(root, doc, workspace)
    stages: list[dict[str, Any]] = []
    changed: set[str] = set()
    for name, ups in upstreams.items():
        reasons = describe(status.get(name) or [], params=own is None)
        if own is not None:
            reasons += own.get(name, [])
        reasons.sort(key=lambda line: not line.startswith(("param ", "path ")))  # params first
        after = [u for u in ups if u in changed]
        if reasons:
            changed.add(name)
        state = "changed" if reasons else ("downstream" if after else "unchanged")
        stages.append({"name": name, "status": state, "reasons": reasons, "after": after})
    return stages


def describe(entries: list, params: bool = True) -> list[str]:
    """`dvc status --json`'s entries for one stage as short lines (`params`: with the
    changes of params.yaml's keys; without, they are recomputed for other params)."""
    lines: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            lines.append(str(entry))  # "always changed"
            continue
        for kind, changes in entry.items():
            side = kind.removeprefix("changed ").rstrip("s")  # dep, out, checksum
            if not isinstance(changes, dict):
                lines.append(f"{side} {changes}")
                continue
            for path, what in changes.items():
                if not isinstance(what, dict):
                    lines.append(f"{side} {path} {what}")
                elif params or path != PARAMS:
                    lines += [f"param {key} {how} ({path})" for key, how in what.items()]
    return lines


def params_changes(root: Path, doc: dict, workspace: dict) -> dict[str, list[str]]:
    """What would change for each stage of dvc.yaml once params.yaml held `doc`: its params
    against dvc.lock, and the paths dvc.yaml interpolates from params (`${paths.x}`) against
    the project's params.yaml."""
    pipeline = _read(root / "dvc.yaml").get("stages") or {}
    locked = _read(root / "dvc.lock").get("stages") or {}
    out: dict[str, list[str]] = {}
    for name, stage in pipeline.items():
        if not isinstance(stage, dict) or "foreach" in stage or "matrix" in stage:
            continue  # generated stages: DVC's own status stands for them
        lines = out.setdefault(name, [])
        keys = [k for k in stage.get("params") or [] if isinstance(k, str)]
        recorded = ((locked.get(name) or {}).get("params") or {}).get(PARAMS)
        if recorded is None:
            lines += [f"param {k} new ({PARAMS})" for k in keys] if name not in locked else []
        else:
            for key in keys:
                value = lookup(doc, key)
                if key not in recorded:
                    lines.append(f"param {key} new ({PARAMS})")
                elif value is MISSING:
                    lines.append(f"param {key} deleted ({PARAMS})")
                elif value != recorded[key]:
                    lines.append(f"param {key} modified ({PARAMS})")
        for key in dict.fromkeys(INTERPOLATION.findall(json.dumps(stage))):
            before, after = lookup(workspace, key), lookup(doc, key)
            if before != after:
                lines.append(f"path ${{{key}}} {_shown(before)} -> {_shown(after)}")
    return out


def lookup(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return MISSING
        doc = doc[part]
    return doc


def _shown(value: Any) -> str:
    return "(unset)" if value is MISSING else str(value)


def _read(path: Path) -> dict:
    try:
        found = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return found if isinstance(found, dict) else {}


def render(doc: dict[str, Any], reasons: int = 3) -> str:
    """`check`'s report for a person: the params, the sizes, each stage and why it reruns."""
    sets = " ".join(f"-S {s}" for s in doc["overrides"])
    lines = [f"params: {doc['params_file']}{' ' + sets if sets else ''}: valid; preflight passed"]
    sizes = doc["sizes"]
    if sizes is None:
        lines.append("sizes: unknown until the prepare stage reads the data")
    else:
        t, s = sizes["teacher"], sizes["student"]
        teacher = t["path"] if t["source"] == "onnx" else f"{t['arch']} {t['width']}x{t['depth']}"
        lines += [
            f"sizes for input {tuple(sizes['input_shape'])}, {sizes['classes']} classes:",
            f"  teacher  {t['params']:>12,}  ({teacher})",
            f"  student  {s['params']:>12,}  ({s['arch']} {s['width']}x{s['depth']}; "
            f"{sizes['ratio']:g}x smaller)",
        ]
    lines.append("stages (dvc status):")
    width = max((len(s["name"]) for s in doc["stages"]), default=0)
    for stage in doc["stages"]:
        said = {"changed": "rerun", "downstream": "may rerun", "unchanged": "unchanged"}
        why = stage["reasons"][:reasons]
        more = len(stage["reasons"]) - len(why)
        if stage["status"] == "downstream":
            why = [f"after {', '.join(stage['after'])}, if its outputs change"]
        detail = "; ".join(why) + (f"; and {more} more" if more > 0 else "")
        lines.append(f"  {stage['name']:<{width}}  {said[stage['status']]:<9}  {detail}".rstrip())
    rerun, maybe = doc["rerun"], doc["may_rerun"]
    lines.append(
        f"would rerun: {', '.join(rerun) or 'nothing'}"
        + (f"; may follow: {', '.join(maybe)}" if maybe else "")
    )
    return "\n".join(lines)
