"""Microsoft Olive's ONNX static quantization of the teacher, run in its own venv.

Olive is never a project dependency: `olive-ai` brings its own torch and ~45 packages, so it
lives in `bench/.venv-olive` (git-ignored), made on first use with the project's torch and
onnxruntime versions pinned (unpinned, pip takes a 5.9 GB CUDA torch; pinned, the local CPU
wheel: ~1.5 GB, ~70 s). `requests` is needed before `olive` starts (olive imports it first).

Olive runs a workflow JSON (`olive run --config`): one `OnnxStaticQuantization` pass fed by a
dataset registered in `olive_user_script.py` that reads the same calibration samples slimline
uses. Passes listed together are chained, so each configuration is its own workflow run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-olive"
USER_SCRIPT = BENCH / "olive_user_script.py"
OLIVE_VERSION = "0.13.0"  # the version checked on this stack
PASS, PROVIDER = "OnnxStaticQuantization", "CPUExecutionProvider"
# CI=1 keeps Olive's telemetry from sending its heartbeat; OLIVE_DISABLE_TELEMETRY is its own switch
QUIET = {
    "CI": "1",
    "OLIVE_DISABLE_TELEMETRY": "1",
    "ORT_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "true",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}
# name -> (what it is, OnnxStaticQuantization settings beyond data_config)
CONFIGS = {
    # the pass's defaults: QDQ, int8 activations and weights, per tensor, MinMax, pre-processing
    "olive_static_default": ("Olive OnnxStaticQuantization, pass defaults (S8S8 per tensor)", {}),
    # what was measured fastest on this AVX2 CPU (and what slimline uses): U8S8, per channel
    "olive_static_u8s8": (
        "Olive OnnxStaticQuantization, uint8 activations, per channel",
        {"activation_type": "uint8", "per_channel": True},
    ),
}


class OliveUnavailable(RuntimeError):
    """Olive could not be installed or run; the message says why, for the report."""


def olive_peers(teacher_onnx: Path, calib_x: np.ndarray, workdir: Path) -> dict[str, Path]:
    """Quantize teacher_onnx with every CONFIGS entry; {name: quantized .onnx}."""
    olive = ensure_venv()
    teacher_onnx, workdir = teacher_onnx.resolve(), workdir.resolve()  # olive runs elsewhere
    workdir.mkdir(parents=True, exist_ok=True)
    calib = workdir / "calibration.npz"
    np.savez(calib, x=np.ascontiguousarray(calib_x, dtype=np.float32))
    return {
        name: _run(olive, teacher_onnx, calib, workdir / name, settings)
        for name, (_, settings) in CONFIGS.items()
    }


def ensure_venv() -> Path:
    """The `olive` executable of bench/.venv-olive, installing it first if needed."""
    python, olive = VENV / "bin" / "python", VENV / "bin" / "olive"
    if olive.is_file() and _works(python):
        return olive
    pins = [
        f"olive-ai=={OLIVE_VERSION}",
        "requests",
        f"torch=={metadata.version('torch').split('+')[0]}",
        f"onnxruntime=={metadata.version('onnxruntime')}",
        f"onnx=={metadata.version('onnx')}",
    ]
    print(f"peers: installing {' '.join(pins)} into {VENV} (first run only, ~1-2 min)")
    try:
        if not python.is_file():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *pins],
            capture_output=True,
            text=True,
            timeout=1800,
            env=os.environ | QUIET,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise OliveUnavailable(f"creating {VENV} failed: {type(e).__name__}: {e}") from e
    if proc.returncode != 0 or not (olive.is_file() and _works(python)):
        raise OliveUnavailable(f"pip install {' '.join(pins)} failed: {_tail(proc.stderr)}")
    return olive


def _works(python: Path) -> bool:
    probe = [str(python), "-c", "import olive, requests, onnxruntime"]
    return subprocess.run(probe, capture_output=True, timeout=120).returncode == 0


def _run(olive: Path, teacher_onnx: Path, calib: Path, out: Path, settings: dict) -> Path:
    """One workflow: the teacher through OnnxStaticQuantization; returns the output model."""
    workflow = {
        "input_model": {"type": "ONNXModel", "model_path": str(teacher_onnx)},
        "systems": {
            "local": {
                "type": "LocalSystem",
                "accelerators": [{"device": "cpu", "execution_providers": [PROVIDER]}],
            }
        },
        "data_configs": [
            {
                "name": "calib",
                "user_script": str(USER_SCRIPT),
                "load_dataset_config": {
                    "type": "slimline_calibration",
                    "params": {"data_path": str(calib)},
                },
                "dataloader_config": {"params": {"batch_size": 64}},  # slimline's batch_reader's
            }
        ],
        "passes": {"quantize": {"type": PASS, "data_config": "calib", **settings}},
        "host": "local",
        "target": "local",
        "output_dir": str(out / "output"),
        "cache_dir": str(out / "cache"),
        "log_severity_level": 3,
    }
    out.mkdir(parents=True, exist_ok=True)
    config = out / "workflow.json"
    config.write_text(json.dumps(workflow, indent=2))
    env = os.environ | QUIET | {"OLIVE_TELEMETRY_CACHE_DIR": str(out / "telemetry")}
    try:
        proc = subprocess.run(
            [str(olive), "run", "--config", str(config)],
            cwd=out,
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        raise OliveUnavailable(f"olive run ({out.name}) timed out after 900 s") from e
    model = out / "output" / "model.onnx"
    if proc.returncode != 0 or not model.is_file():
        raise OliveUnavailable(f"olive run ({out.name}) failed: {_tail(proc.stderr + proc.stdout)}")
    return model


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(kept[-lines:]) or "no output"
