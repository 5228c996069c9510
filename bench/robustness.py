"""Does the default pass its gates with a margin, whatever the seed, the kernels and the CPU?

Runs the default pipeline (`dvc repro` in a fresh temp copy, nothing cached) for 3 seeds, each
with torch's kernels pinned (`reproducible: true`: AVX2 level, MKL CNR, no oneDNN) and at this
CPU's native level (`reproducible: false`), plus one pinned run at 2 threads. Each run's final
INT8 model is then evaluated natively and under `qemu-x86_64 -cpu Haswell` (an AVX2-only CPU,
no AVX-512 / VNNI). Prints one row per run: teacher, pruned FP32 and final accuracy, the drop
against the teacher, the INT8 loss against its FP32 source (in test samples), the gate
verdict, the Haswell result, and whether the run's dvc.lock output hashes (every stage's but
export's and the benchmark's, which record the params hash and timings) equal the pinned
1-thread run of the same seed.

    .venv/bin/python bench/robustness.py [--seeds 42 7 1234] [--no-qemu]

Takes about 25 min on 2 cores. Writes bench/results/robustness.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from pipeline import copy_project, set_params, timed
from published import publish, python, table_head

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from slimline.core.cpu import cpu_info, describe  # noqa: E402
from tests.support.outputs import lock_output_hashes  # noqa: E402

# the final model's top-1 predictions on the test split, in a process that may run under qemu
PREDICT = """
import sys
from slimline.compression.data.store import load_split
from slimline.compression.runtime.onnx_io import run_logits, session
test = load_split(sys.argv[1] + "/data/prepared", "test", lazy=True)
print(" ".join(map(str, run_logits(session(sys.argv[1] + "/dist/model.onnx"), test.x).argmax(1))))
"""


def predictions(project: Path, qemu: bool) -> list[int]:
    return [int(v) for v in python(["-c", PREDICT, str(project)], haswell=qemu).split()]


# their outputs carry what differs by design: export's the params hash (which covers `seed`,
# `threads`, `reproducible`), the benchmark's timings
NOT_COMPARED = ("export", "benchmark")


def one_run(seed: int, reproducible: bool, threads: int, qemu: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="slimline-robust-") as tmp:
        project = copy_project(Path(tmp))
        set_params(project, seed=seed, reproducible=reproducible, threads=threads)
        seconds = timed(["dvc", "repro"], project)

        def load(name: str) -> dict:
            return json.loads((project / name).read_text())

        teacher, quant, gates = (load("metrics/teacher.json"), load("metrics/quantize.json"),
                                 load("reports/gates.json"))  # fmt: skip
        with np.load(project / "data/prepared/test.npz") as z:
            y = z["y"]
        native = np.asarray(predictions(project, qemu=False))
        row = {
            "seed": seed,
            "kernels": "pinned AVX2" if reproducible else "native",
            "threads": threads,
            "seconds": round(seconds, 1),
            "teacher": teacher["accuracy"],
            "pruned_fp32": quant["fp32_accuracy"],
            "final": float(np.mean(native == y)),
            "drop": teacher["accuracy"] - float(np.mean(native == y)),
            "int8_samples_lost": int(
                round((quant["fp32_accuracy"] - quant["int8_accuracy"]) * len(y))
            ),  # fmt: skip
            "gates_passed": gates["passed"],
            "failed_gates": [g["name"] for g in gates["gates"] if not g["passed"]],
            "hashes": lock_output_hashes(project, NOT_COMPARED),
        }
        if qemu:
            row["haswell_same"] = bool(np.array_equal(predictions(project, qemu=True), native))
        return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 1234])
    parser.add_argument("--no-qemu", action="store_true")
    args = parser.parse_args()
    qemu = not args.no_qemu and shutil.which("qemu-x86_64") is not None
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    plan = [(s, r, 1) for s in args.seeds for r in (True, False)] + [(args.seeds[0], True, 2)]
    rows = []
    for seed, reproducible, threads in plan:
        rows.append(one_run(seed, reproducible, threads, qemu))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "hashes"}), flush=True)
    pinned = {r["seed"]: r["hashes"] for r in rows if r["kernels"] == "pinned AVX2"
              and r["threads"] == 1}  # fmt: skip
    for r in rows:
        r["same_bytes_as_pinned_1_thread"] = r["hashes"] == pinned[r["seed"]]
    columns = ["seed", "kernels", "threads", "teacher", "pruned FP32", "final INT8", "drop",
               "INT8 samples lost", "gates", "Haswell same", "bytes = pinned 1 thread",
               "seconds"]  # fmt: skip
    lines = ["# Robustness of the default pipeline", "", f"CPU: {describe(cpu_info())}.", "",
             *table_head(columns)]  # fmt: skip
    for r in rows:
        verdict = "pass" if r["gates_passed"] else "FAIL " + ", ".join(r["failed_gates"])
        lines.append(
            f"| {r['seed']} | {r['kernels']} | {r['threads']} | {r['teacher']:.4f} | "
            f"{r['pruned_fp32']:.4f} | {r['final']:.4f} | {r['drop']:+.4f} | "
            f"{r['int8_samples_lost']} | {verdict} | {r.get('haswell_same', '-')} | "
            f"{r['same_bytes_as_pinned_1_thread']} | {r['seconds']:.0f} |"
        )
    publish("robustness", lines, {"cpu": cpu_info(), "runs": rows})


if __name__ == "__main__":
    main()
