"""Read what the DVC stages wrote, as MLflow-ready figures: metrics, curves, lineage hashes.

Pure reading: nothing here writes a file or talks to MLflow, so tracking can never damage a
stage's outputs. Formats are those of docs/outputs.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimline.core.params.schema import Params
from slimline.records.rounding import json_for_people

# stage -> outputs logged on its child run, as `params.paths` fields. The first is the stage's
# metrics file (a missing one is tagged); a `*_curve` is also read as per-epoch step metrics.
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "prepare": ("data_report",),
    "train_teacher": ("teacher_metrics", "teacher_curve", "teacher_onnx"),
    "distill": ("student_metrics", "student_curve", "student_onnx"),
    "prune": ("pruned_metrics", "pruned_curve", "pruned_onnx"),
    "quantize": ("quantize_metrics", "quantized_onnx"),
    "export": ("export_metrics",),
    "validate": ("gates_report",),
    "benchmark": ("benchmark_report", "benchmark_table", "tradeoff_plot"),
}
CURVE_PREFIX = "curve/"  # keeps `val_accuracy` per epoch apart from the best `val_accuracy`


@dataclass
class StageFigures:
    """One stage's figures: scalars, text settings, and series keyed by step."""

    metrics: dict[str, float] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))


def stage_files(params: Params, stage: str) -> list[str]:
    return [getattr(params.paths, name) for name in STAGE_OUTPUTS.get(stage, ())]


def read_stage(root: Path, params: Params, stage: str) -> tuple[StageFigures, list[str]]:
    """The stage's figures and the relative paths of its outputs that are missing."""
    figures = StageFigures()
    files = stage_files(params, stage)
    missing = [f for f in files if not (root / f).exists()]
    for rel in files:
        path = root / rel
        if rel in missing:
            continue
        if rel.endswith(".json"):
            report = json.loads(path.read_text())
            if stage == "prepare":
                report = data_summary(report)
            flatten(report, "", figures)
        elif rel.endswith(".csv"):
            read_curve(path, figures)
    return figures, missing


def data_summary(report: dict) -> dict:
    """The data report without its per-expectation detail (that stays in the artifact), with
    the degenerate-data checks' figures: the learnability verdict and its probes' accuracies
    against the majority class, the share of conflicting labels."""
    checks = report.get("expectations", [])
    splits = report.get("splits", {})
    learn = report.get("learnability", {})
    return {
        "learnability": {
            key: learn[key]
            for key in ("verdict", "accuracy", "p_value", "majority_accuracy")
            if key in learn
        },
        "conflicting_labels": report.get("conflicting_labels", {}),
        "success": report.get("success"),
        "source": report.get("source"),
        "sha256": report.get("sha256"),
        "duplicates_dropped": report.get("duplicates_dropped"),
        "expectations": len(checks),
        "expectations_failed": sum(not c.get("success", False) for c in checks),
        **{f"{name}.samples": s.get("samples") for name, s in splits.items()},
    }


def flatten(obj: Any, prefix: str, out: StageFigures) -> None:
    """Numbers become metrics (full precision), strings text; a list of named items is keyed
    by each name (gates, benchmark variants); a list of unnamed records becomes step series
    (prune steps); any other list is text, its floats to 4 significant digits (a gate's
    `interval`, read by people as a param)."""
    if isinstance(obj, bool | int | float):
        if math.isfinite(obj):  # MLflow rejects NaN/inf; the artifact keeps them
            out.metrics[_key(prefix)] = float(obj)
    elif isinstance(obj, str):
        out.text[_key(prefix)] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, _join(prefix, k), out)
    elif isinstance(obj, list) and obj and all(isinstance(i, dict) and "name" in i for i in obj):
        for item in obj:
            rest = {k: v for k, v in item.items() if k != "name"}
            flatten(rest, _join(prefix.rpartition(".")[0], str(item["name"])), out)
    elif isinstance(obj, list) and obj and all(isinstance(i, dict) for i in obj):
        for step, item in enumerate(obj):
            one = StageFigures()
            flatten(item, prefix, one)
            for key, value in one.metrics.items():
                out.series[key].append((step, value))
    elif isinstance(obj, list):  # an MLflow param: its floats rounded for people
        out.text[_key(prefix)] = json_for_people(prefix, obj)


def read_curve(path: Path, out: StageFigures) -> None:
    """`epoch, train_loss, val_loss, val_accuracy, lr` rows -> `curve/<column>` at step epoch."""
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.pop("epoch", 0) or 0))
            for column, value in row.items():
                try:
                    out.series[_key(CURVE_PREFIX + column)].append((step, float(value)))
                except (TypeError, ValueError):
                    continue  # a blank cell (no val loss that epoch) is no figure


def dvc_lock_hashes(root: Path) -> dict[str, str]:
    """md5 of each stage's dvc.lock entry (deps, params and outs): equal hashes, equal stage."""
    import yaml

    path = root / "dvc.lock"
    if not path.exists():
        return {}
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    return {
        name: hashlib.md5(json.dumps(entry, sort_keys=True).encode()).hexdigest()
        for name, entry in stages.items()
    }


def data_sha256(root: Path, params: Params) -> str:
    path = root / params.paths.data_report
    try:
        return str(json.loads(path.read_text()).get("sha256") or "unknown")
    except (OSError, ValueError):
        return "unknown"


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _key(key: str) -> str:
    # MLflow keys allow letters, digits, _ - . space and /; anything else would be rejected
    return re.sub(r"[^\w\-. /]", "_", key) or "value"
