"""Finished pipeline workspaces for the tracking and registry tests, made from ONE real run.

The source is the session's `pipeline_once` (tests/conftest.py): a real `dvc repro` on TRAINED
params. `build` copies what its eight stages wrote, then applies the variation a test needs by
editing the real reports in their real format: a gate is re-judged with the library's own
`Gate` (threshold, value, margin and passed change together, and so does the report's
`passed`), an accuracy or a latency is put where the stages put it. No report is written whole
by hand, so a test can only assert on figures the pipeline really produces.

Tests using it run the pipeline once per session: they are `slow`.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import yaml

from slimline.compression.release.gates import Gate
from slimline.core.atomic import read_json, write_json
from slimline.core.params.loading import load_params
from slimline.core.params.schema import Params
from slimline.records.tracking import sqlite_path, tracking_uri
from tests.support import outputs

STAGES = list(outputs.STAGES)  # in dvc.yaml's order
MODEL_NAME = "slimline-test"
RUN_FILES = ("params.yaml", "dvc.yaml", "dvc.lock")
_template: list[Path] = []  # an empty, migrated MLflow SQLite store, made once per session


def build(
    source: Path,
    root: Path,
    *,
    accuracy: float | None = None,
    latency_ms: float | None = None,
    thresholds: dict[str, float] | None = None,
    model_name: str = MODEL_NAME,
    omit: tuple[str, ...] = (),
) -> Params:
    """Copy the finished run at `source` into `root` (over an earlier build there, if any);
    then `accuracy` replaces the final model's measured test accuracy, `latency_ms` its
    batch-1 p50 latency, `thresholds` re-judges gates by name (`min_speedup` included), and
    the `omit` outputs are deleted. Returns the workspace's params."""
    root.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        shutil.copy2(source / name, root / name)
    for folder in outputs.OUTPUT_DIRS:
        shutil.copytree(source / folder, root / folder, dirs_exist_ok=True)
    _set_tracking(root / "params.yaml", experiment="test", model_name=model_name)
    params = load_params(root / "params.yaml")
    if db := sqlite_path(tracking_uri(root)):
        fresh_store(db)
    if accuracy is not None:
        set_accuracy(root, params, accuracy)
    if latency_ms is not None:
        set_latency(root, params, latency_ms)
    if thresholds:
        set_thresholds(root, params, thresholds)
    for rel in omit:
        path = root / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return params


def set_accuracy(root: Path, params: Params, accuracy: float) -> None:
    """The final INT8 model's test accuracy becomes `accuracy` wherever validate and benchmark
    report it: the two accuracy gates (re-judged) and the `final_int8` variant."""
    teacher = read_json(root / params.paths.teacher_metrics)["accuracy"]
    drops = {"min_accuracy": accuracy, "max_accuracy_drop": teacher - accuracy}
    _rejudge(root / params.paths.gates_report, "gates", values=drops)
    bench = read_json(root / params.paths.benchmark_report)
    final(bench)["accuracy"] = accuracy
    write_json(root / params.paths.benchmark_report, bench)


def set_latency(root: Path, params: Params, latency_ms: float) -> None:
    """The final model's batch-1 p50 becomes `latency_ms`; the speed-up against the teacher
    and its gate follow, as the benchmark stage computes them."""
    path = root / params.paths.benchmark_report
    bench = read_json(path)
    variant = final(bench)
    variant["latency_ms_b1_p50"] = latency_ms
    variant["latency_ms_b1_p95"] = max(variant["latency_ms_b1_p95"], latency_ms)
    teacher = next(v for v in bench["variants"] if v["name"] == "teacher_fp32")
    bench["speedup"] = teacher["latency_ms_b1_p50"] / latency_ms
    write_json(path, bench)
    _rejudge(path, "speedup_gate", values={"min_speedup": bench["speedup"]})


def set_thresholds(root: Path, params: Params, thresholds: dict[str, float]) -> None:
    """Re-judge the named gates of reports/gates.json and reports/benchmark.json (min_speedup)
    against new thresholds; every named gate must exist."""
    found = _rejudge(root / params.paths.gates_report, "gates", thresholds=thresholds)
    found |= _rejudge(root / params.paths.benchmark_report, "speedup_gate", thresholds=thresholds)
    assert found == set(thresholds), f"no such gate: {set(thresholds) - found}"


def final(bench: dict) -> dict:
    """The deployable model's variant of a benchmark report."""
    return next(v for v in bench["variants"] if v["name"] == "final_int8")


def _rejudge(
    path: Path,
    key: str,
    values: dict[str, float] | None = None,
    thresholds: dict[str, float] | None = None,
) -> set[str]:
    """Rewrite the gates under `key` of the report at `path` that `values` or `thresholds`
    name, as `Gate.as_dict()` (what validate and benchmark write); `passed` at the top of the
    report follows. Returns the names of the gates changed."""
    values, thresholds = values or {}, thresholds or {}
    report = read_json(path)
    listed = report[key] if isinstance(report[key], list) else [report[key]]
    changed = set()
    for i, g in enumerate(listed):
        if g["name"] in values or g["name"] in thresholds:
            value = values.get(g["name"], g["value"])
            threshold = thresholds.get(g["name"], g["threshold"])
            listed[i] = Gate(g["name"], value, threshold, g["kind"]).as_dict()
            changed.add(g["name"])
    if isinstance(report[key], list):
        report[key] = listed
        report["passed"] = all(g["passed"] for g in listed)
    else:
        report[key] = listed[0]
    write_json(path, report)
    return changed


def _set_tracking(path: Path, **tracking: str) -> None:
    raw = yaml.safe_load(path.read_text())
    raw["tracking"].update(tracking)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def fresh_store(db: Path) -> None:
    """Put an empty MLflow store at `db` unless one is there: migrating a new SQLite store
    costs 1-3 s, copying a migrated one 0.03 s."""
    if not _template:
        import mlflow

        folder = Path(tempfile.mkdtemp(prefix="slimline-mlflow-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        mlflow.MlflowClient(f"sqlite:///{folder}/mlflow.db").search_experiments()
        _template.append(folder / "mlflow.db")
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(_template[0], db)


def scored_accuracy(root: Path, params: Params, predict) -> float:
    """`predict`'s accuracy on the workspace's prepared test split."""
    from slimline.compression.data.store import load_split

    split = load_split(root / params.paths.prepared, "test")
    return float((predict(split.x).argmax(1) == split.y).mean())


def reported(root: Path, params: Params) -> dict:
    """The run's own reports and metrics, by their params.paths name, for assertions."""
    names = ("gates_report", "benchmark_report", "data_report", "teacher_metrics",
             "student_metrics", "pruned_metrics", "quantize_metrics", "export_metrics")  # fmt: skip
    return {name: json.loads((root / getattr(params.paths, name)).read_text()) for name in names}
