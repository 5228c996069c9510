"""Cold and no-op runs of the default pipeline, with the targets of the compression chain.

Runs `dvc repro -s <stage>` stage by stage in a fresh temp copy of the project (so nothing is
cached), then a no-op `dvc repro`, and prints stage times and the ratios the defaults promise.

    .venv/bin/python bench/pipeline.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIED = ["dvc.yaml", "params.yaml", "stages", "src", "data/raw", "data/pretrained", ".dvc/config",
          ".dvcignore"]  # fmt: skip


def copy_project(dest: Path) -> Path:
    for name in COPIED:
        src, dst = ROOT / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def set_params(project: Path, **top_level: object) -> None:
    """Rewrite the copy's params.yaml with these top-level keys (`seed`, `reproducible`, ...)."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text()) | top_level
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def timed(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "CI": "true", "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - start


def targets(project: Path, total: float, noop: float) -> list[tuple[str, float, str, bool]]:
    def load(name: str) -> dict:
        return json.loads((project / name).read_text())

    teacher, quant, bench = (
        load("metrics/teacher.json"),
        load("metrics/quantize.json"),
        load("reports/benchmark.json"),
    )
    by_name = {v["name"]: v for v in bench["variants"]}
    final, teach = by_name["final_int8"], by_name["teacher_fp32"]
    drop = (teacher["accuracy"] - final["accuracy"]) * 100
    rows = [
        ("final INT8 accuracy drop vs teacher (points)", drop, "<= 1.0", drop <= 1.0),
        ("teacher FP32 size / final INT8 size", teach["size_bytes"] / final["size_bytes"],
         ">= 50", teach["size_bytes"] / final["size_bytes"] >= 50),
        ("batch-1 latency teacher / final (1 thread)",
         teach["latency_ms_b1_p50"] / final["latency_ms_b1_p50"], ">= 5",
         teach["latency_ms_b1_p50"] / final["latency_ms_b1_p50"] >= 5),
        ("pruned FP32 size / INT8 size (same graph)", quant["size_ratio"], ">= 3.7",
         quant["size_ratio"] >= 3.7),
        ("cold dvc repro (s)", total, "<= 120", total <= 120),
        ("no-op dvc repro (s)", noop, "<= 3", noop <= 3),
    ]  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="slimline-bench-"))
    project = copy_project(workdir / "project")
    stages = list(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])
    dvc = [sys.executable, "-m", "dvc", "repro"]
    times = {stage: timed([*dvc, "-s", stage], project) for stage in stages}
    total = sum(times.values())
    noop = timed(dvc, project)
    print(f"{'stage':<16}{'seconds':>9}")
    for stage, seconds in times.items():
        print(f"{stage:<16}{seconds:9.1f}")
    print(f"{'total (cold)':<16}{total:9.1f}\n")
    print(f"{'target':<48}{'measured':>10}  {'goal':<8}met")
    for name, value, goal, met in targets(project, total, noop):
        print(f"{name:<48}{value:10.2f}  {goal:<8}{'yes' if met else 'NO'}")
    if not args.keep:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
