"""A finished pipeline workspace made by hand in the formats of docs/outputs.md.

Tracking and registry tests need what the eight stages leave behind, not the training: a
linear ONNX classifier (input `input`, output `logits`) that really scores the accuracy the
reports claim on a prepared test split, plus every metrics, curve, report and bundle file.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from slimline.core.params import Params, load_params
from slimline.records.tracking import sqlite_path, tracking_uri
from tests.conftest import make_images, write_params

STAGES = [
    "prepare",
    "train_teacher",
    "distill",
    "prune",
    "quantize",
    "export",
    "validate",
    "benchmark",
]
CLASSES = ["a", "b", "c"]
_template: list[Path] = []  # an empty, migrated MLflow SQLite store, made once per session


def build(
    root: Path,
    *,
    accuracy: float | None = None,
    latency_ms: float = 0.05,
    gates_pass: bool = True,
    speedup_pass: bool = True,
    model_name: str = "slimline-test",
    omit: tuple[str, ...] = (),
) -> Params:
    """Write a finished run into `root`; `accuracy` overrides the measured one in the reports."""
    root.mkdir(parents=True, exist_ok=True)
    params = load_params(
        write_params(
            root / "params.yaml", tracking={"experiment": "test", "model_name": model_name}
        )
    )
    if db := sqlite_path(tracking_uri(root)):
        fresh_store(db)
    x, y = make_images(n_per_class=10, classes=len(CLASSES))
    _prepared(root / params.paths.prepared, x, y)
    model = root / params.paths.dist / "model.onnx"
    measured = _onnx_model(model, x, y)
    acc = measured if accuracy is None else accuracy
    onnx_copies = ("teacher_onnx", "student_onnx", "pruned_onnx", "quantized_onnx")
    for rel in (getattr(params.paths, name) for name in onnx_copies):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(model, root / rel)
    files = _reports(acc, latency_ms, gates_pass, speedup_pass) | _metrics(acc)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
    for rel in omit:
        path = root / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return params


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
    from slimline.compression.data import load_split

    split = load_split(root / params.paths.prepared, "test")
    return float((predict(split.x).argmax(1) == split.y).mean())


def _prepared(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    from slimline.compression.data import Dataset, save_split

    folder.mkdir(parents=True, exist_ok=True)
    ds = Dataset(x=x, y=y, class_names=CLASSES, scale=1.0)
    zero, one = np.zeros(1, np.float32), np.ones(1, np.float32)
    for split in ("train", "val", "test"):
        save_split(folder / f"{split}.npz", x, y, ds, zero, one)


def _onnx_model(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Flatten -> Gemm whose class-k weights sum band k of rows (where make_images draws
    class k); returns its accuracy on (x, y), measured with onnxruntime."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    size, k = x.shape[-1], len(CLASSES)
    band = size // k
    w = np.zeros((k, size, size), np.float32)
    for c in range(k):
        w[c, c * band : (c + 1) * band] = 1.0
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"]),
            helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], transB=1),
        ],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", k])],
        [
            numpy_helper.from_array(w.reshape(k, -1), "w"),
            numpy_helper.from_array(np.zeros(k, np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    for key, value in {"class_names": json.dumps(CLASSES), "git_commit": "unknown"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": x})[0]
    return float((logits.argmax(1) == y).mean())


def _png() -> bytes:
    """A small real PNG: the plots only need to exist and open."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _metrics(acc: float) -> dict[str, object]:
    curve = "epoch,train_loss,val_loss,val_accuracy,lr\n" + "".join(
        f"{e},{1 / e:.4f},{1.2 / e:.4f},{min(acc, 0.5 + e / 10):.4f},0.001\n" for e in range(1, 6)
    )
    model = {
        "accuracy": acc,
        "loss": 0.1,
        "val_accuracy": acc,
        "best_epoch": 4,
        "params": 195,
        "macs": 192,
        "onnx_size_bytes": 1000,
        "onnx_parity_max_abs_diff": 1e-7,
    }
    step = {"params": 100, "macs": 90, "accuracy_before": 0.4, "accuracy_after": acc}
    return {
        "metrics/teacher.json": model,
        "metrics/student.json": model | {"baseline_accuracy": acc, "kd_gain": 0.0, "alpha": 0.7},
        "metrics/pruned.json": {"accuracy": acc, "params_ratio": 0.5, "steps": [step, step]},
        "metrics/quantize.json": {
            "mode": "static",
            "int8_accuracy": acc,
            "agreement": 0.99,
            "excluded_nodes": ["Gemm_0"],
            "size_ratio": 3.5,
        },
        "metrics/export.json": {"size_bytes": 1000, "sha256": "0" * 64, "parity_max_abs_diff": 0},
        "plots/teacher_curve.csv": curve,
        "plots/student_curve.csv": curve,
        "plots/pruned_curve.csv": curve,
        "plots/tradeoff.png": _png(),
        "plots/confusion.png": _png(),
        "dist/model_card.md": "# slimline model card\n",
        "dist/settings.json": {"quantize": {"mode": "static"}},
        "dvc.lock": "schema: '2.0'\nstages:\n"
        + "".join(f"  {s}:\n    cmd: python stages/{s}.py\n" for s in STAGES),
    }


def _reports(acc: float, latency: float, gates_pass: bool, speedup_pass: bool) -> dict:
    gates = [
        {"name": "min_accuracy", "value": acc, "threshold": 0.9 if gates_pass else 1.01},
        {"name": "max_size_bytes", "value": 1000, "threshold": 100000},
    ]
    for g in gates:
        g["passed"] = g["value"] >= g["threshold"] if g["name"] == "min_accuracy" else True
    variant = {
        "accuracy": acc,
        "size_bytes": 1000,
        "params": 195,
        "latency_ms_b1_p50": latency,
        "latency_ms_b1_p95": latency * 1.5,
        "throughput_b64": 1e4,
    }
    return {
        "reports/data_validation.json": {
            "success": True,
            "source": "test",
            "sha256": "d" * 64,
            "duplicates_dropped": 0,
            "splits": {"test": {"samples": 30, "sha256": "e" * 64, "class_counts": [10] * 3}},
            "expectations": [{"expectation": "x", "success": True}],
        },
        "reports/gates.json": {"passed": all(g["passed"] for g in gates), "gates": gates},
        "reports/benchmark.json": {
            "threads": 1,
            "variants": [
                variant | {"name": "teacher_fp32", "latency_ms_b1_p50": 1.0},
                variant | {"name": "final_int8"},
            ],
            "speedup": 1.0 / latency,
            "speedup_gate": {
                "name": "min_speedup",
                "value": 1.0 / latency,
                "threshold": 5.0 if speedup_pass else 1e9,
                "passed": speedup_pass,
            },
        },
        "reports/benchmark.md": "| variant | accuracy |\n",
    }
