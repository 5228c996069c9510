"""slimline against the quantizers a user would pick instead, on the same teacher and test split.

Run by hand from the repo root (not by CI):

    .venv/bin/python bench/peers.py [--project PATH] [--no-olive]

Peers, each applied to the teacher: onnxruntime `quantize_dynamic` and `quantize_static` with
their defaults (after ORT's recommended `quant_pre_process`; static calibrates on the same
stratified train samples as slimline's quantize stage), PyTorch dynamic INT8 (nn.Linear) run in
torch, and Microsoft Olive's static quantization workflow (bench/olive_peer.py, its own venv).

Everything is scored and timed in this one process with slimline's own code: accuracy by
`scores.accuracy` over `onnx_io.run_logits`, speed by `latency.measure_many` (all variants
round-robin, same warm-up and repetitions) at 1 and 2 threads. Torch models go through
`TorchSession`, which offers the slice of `ort.InferenceSession` those functions call.
Writes bench/results/peers.{md,json,png} (tables and figure: bench/peers_report.py); missing
pipeline outputs are made with `dvc repro` first.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import numpy as np
import olive_peer
from peers_report import THREADS, plot, report

from slimline.compression.data.store import load_split
from slimline.compression.release import latency
from slimline.compression.release.latency import measure_many
from slimline.compression.runtime.calibration import batch_reader, stratified_sample
from slimline.compression.runtime.onnx_io import file_feeds, run_logits
from slimline.compression.scores import accuracy
from slimline.core.atomic import write_json, write_text
from slimline.core.env import quiet_telemetry
from slimline.core.params.loading import load_params
from slimline.core.params.schema import Params

BENCH = Path(__file__).resolve().parent


class TorchSession:
    """A torch module behind the InferenceSession calls measure_many and run_logits make."""

    def __init__(self, model: Any, threads: int, num_classes: int):
        import torch

        torch.set_num_threads(threads)  # process-wide: the torch variants of a round share it
        self._torch, self.model = torch, model
        self._in = SimpleNamespace(name="input")
        self._out = SimpleNamespace(name="logits", shape=[None, num_classes])

    def get_inputs(self) -> list[SimpleNamespace]:
        return [self._in]

    def get_outputs(self) -> list[SimpleNamespace]:
        return [self._out]

    def get_modelmeta(self) -> SimpleNamespace:
        # onnx_io.feeds reads a text model's pad id here; a torch image model has none
        return SimpleNamespace(custom_metadata_map={})

    def run(self, output_names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._torch.inference_mode():
            return [self.model(self._torch.from_numpy(feed["input"])).numpy()]


@contextlib.contextmanager
def torch_sessions(models: dict[str, Any], num_classes: int) -> Iterator[Any]:
    """Within: `latency.session("torch:<name>", threads)` is a TorchSession, files stay ORT."""
    real = latency.session

    def session_or_torch(path: Any, threads: int = 1) -> Any:
        model = models.get(str(path))
        return real(path, threads) if model is None else TorchSession(model, threads, num_classes)

    with mock.patch.object(latency, "session", session_or_torch):
        yield session_or_torch


def ensure_outputs(root: Path, params: Params) -> None:
    p = params.paths
    needed = [p.teacher, p.teacher_onnx, p.student_onnx, p.pruned_onnx, f"{p.dist}/model.onnx"]
    needed += [f"{p.prepared}/{split}.npz" for split in ("train", "test")]
    missing = [name for name in needed if not (root / name).is_file()]
    if missing:
        print(f"peers: {', '.join(missing)} missing: running `dvc repro` in {root}", flush=True)
        bin_dir = Path(sys.executable).parent
        env = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        subprocess.run([str(bin_dir / "dvc"), "repro"], cwd=root, check=True, env=env)


def ort_peers(teacher_onnx: Path, calib_x: np.ndarray, tmp: Path) -> dict[str, Path]:
    """quantize_dynamic and quantize_static, every setting left at its default."""
    from onnxruntime.quantization import quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = tmp / "teacher_pre.onnx"
    quant_pre_process(str(teacher_onnx), str(pre))
    dynamic, static = tmp / "ort_dynamic.onnx", tmp / "ort_static_default.onnx"
    quantize_dynamic(str(pre), str(dynamic))
    quantize_static(str(pre), str(static), batch_reader(calib_x, file_feeds(pre)))
    return {"ort_dynamic": dynamic, "ort_static_default": static}


def torch_peers(checkpoint: Path, tmp: Path) -> dict[str, tuple[Any, int]]:
    """The teacher in eager torch, FP32 and dynamic INT8: {name: (module, state_dict size)}."""
    import torch
    from torch import nn

    from slimline.compression.models.checkpoints import load_checkpoint

    fp32 = load_checkpoint(checkpoint)
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in 2.13 (still runs)
        warnings.simplefilter("ignore")
        int8 = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(fp32), {nn.Linear}, dtype=torch.qint8
        )
    out = {}
    for name, model in (("teacher_fp32_torch", fp32), ("torch_dynamic_int8", int8)):
        torch.save(model.state_dict(), tmp / f"{name}.pt")
        out[name] = (model, (tmp / f"{name}.pt").stat().st_size)
    return out


def int8_kernels(path: Path, tmp: Path) -> str:
    """Conv/Gemm kernels that run in INT8 once ORT has optimized (fused) the graph."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp / f"{path.stem}.optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
    int8 = sum(
        ops[k]
        for k in (
            "QLinearConv",
            "ConvInteger",
            "QGemm",
            "DynamicQuantizeMatMul",
            "MatMulInteger",
            "MatMulIntegerToFloat",
            "QLinearMatMul",
        )
    )
    fp32 = sum(ops[k] for k in ("Conv", "FusedConv", "NchwcConv", "Gemm", "FusedGemm", "MatMul"))
    return f"{int8} of {int8 + fp32}"


def collect_variants(args: argparse.Namespace, root: Path, params: Params, tmp: Path) -> dict:
    """Every variant as {name: {kind, what, ref, size_bytes}}, plus the Olive status."""
    p = params.paths
    train = load_split(root / p.prepared, "train")
    calib_x, _ = stratified_sample(
        train.x, train.y, params.quantize.calibration_samples, params.seed
    )
    onnx_files = {
        "teacher_fp32": ("reference", "the teacher, FP32 ONNX", root / p.teacher_onnx),
        "student_fp32": ("slimline", "distilled student, FP32", root / p.student_onnx),
        "pruned_fp32": ("slimline", "pruned student, FP32", root / p.pruned_onnx),
        "final_int8": ("slimline", "dist/model.onnx: pruned, INT8", root / p.dist / "model.onnx"),
    }
    ort = ort_peers(root / p.teacher_onnx, calib_x, tmp)
    onnx_files["ort_dynamic"] = ("peer", "ORT quantize_dynamic, defaults", ort["ort_dynamic"])
    onnx_files["ort_static_default"] = (
        "peer",
        f"ORT quantize_static, defaults (S8S8 per-tensor QDQ, {len(calib_x)} calib)",
        ort["ort_static_default"],
    )
    olive_status = "skipped (--no-olive)"
    if not args.no_olive:
        try:
            olive = olive_peer.olive_peers(root / p.teacher_onnx, calib_x, tmp / "olive")
            what = {name: olive_peer.CONFIGS[name][0] for name in olive}
            onnx_files |= {name: ("peer", what[name], path) for name, path in olive.items()}
            olive_status = f"ran olive-ai {olive_peer.OLIVE_VERSION} from bench/.venv-olive"
        except olive_peer.OliveUnavailable as e:
            olive_status = f"not run: {e}"
        print(f"peers: Olive {olive_status}", flush=True)
    variants = {
        name: {
            "kind": kind,
            "what": what,
            "ref": str(path),
            "size_bytes": path.stat().st_size,
            "int8_kernels": int8_kernels(path, tmp),
        }
        for name, (kind, what, path) in onnx_files.items()
    }
    torch_models = torch_peers(root / p.teacher, tmp)
    variants["teacher_fp32_torch"] = {"kind": "reference", "what": "the teacher, FP32, eager torch"}
    variants["torch_dynamic_int8"] = {
        "kind": "peer",
        "what": "torch.ao quantize_dynamic({nn.Linear}, qint8), eager torch",
    }
    for name, (_, size) in torch_models.items():
        variants[name] |= {"ref": f"torch:{name}", "size_bytes": size, "int8_kernels": "fc only"}
    models = {f"torch:{name}": model for name, (model, _) in torch_models.items()}
    return {
        "variants": variants,
        "torch_models": models,
        "olive": olive_status,
        "calibration_samples": len(calib_x),
    }


def measure(found: dict, test: Any, b: argparse.Namespace) -> None:
    """Accuracy (test split) and timings at every thread count, written into the variants."""
    variants = found["variants"]
    refs = {name: v["ref"] for name, v in variants.items()}
    with torch_sessions(found["torch_models"], test.num_classes) as open_session:
        for v in variants.values():
            v["accuracy"] = accuracy(run_logits(open_session(v["ref"], 1), test.x), test.y)
        for threads in THREADS:
            print(f"peers: timing {len(refs)} variants, {threads} thread(s)", flush=True)
            timings = measure_many(
                refs,
                test.x[:1],
                test.x[: b.throughput_batch],
                threads=threads,
                warmup=b.warmup,
                runs=b.runs,
                throughput_runs=b.throughput_runs,
            )
            for name, t in timings.items():
                variants[name].setdefault("timing", {})[threads] = t
    teacher = variants["teacher_fp32"]["accuracy"]
    for v in variants.values():
        v["accuracy_drop"] = teacher - v["accuracy"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=BENCH.parent, help="slimline checkout")
    parser.add_argument("--no-olive", action="store_true", help="skip the Olive peer")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="results folder")
    for flag in ("warmup", "runs", "throughput-runs"):
        parser.add_argument(f"--{flag}", type=int, help="default: params.yaml benchmark section")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    quiet_telemetry()
    args = parse_args(argv)
    root = args.project.resolve()
    params = load_params(root / "params.yaml")
    ensure_outputs(root, params)
    b = argparse.Namespace(**params.benchmark.model_dump())
    for key in ("warmup", "runs", "throughput_runs"):
        b.__dict__[key] = getattr(args, key) if getattr(args, key) is not None else b.__dict__[key]
    test = load_split(root / params.paths.prepared, "test")
    with tempfile.TemporaryDirectory(prefix="slimline-peers-") as tmp:
        found = collect_variants(args, root, params, Path(tmp))
        measure(found, test, b)
    text = report(found, b, len(test.y))
    print(text)
    variants = found["variants"]
    write_text(args.out / "peers.md", text)
    kept = {n: {k: x for k, x in v.items() if k != "ref"} for n, v in variants.items()}
    document = {"olive": found["olive"], "order": list(kept), "variants": kept}  # keys get sorted
    write_json(args.out / "peers.json", document)
    plot(variants, args.out / "peers.png")
    print(f"peers: wrote {args.out / 'peers.md'}, peers.json and peers.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
