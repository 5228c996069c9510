"""Text through the real chain with `slimline run`: a CSV of sentences (written here) is
tokenized, a transformer teacher distils a bag-of-embeddings student, which is pruned,
quantized (dynamic INT8 by default for text), exported with its tokenizer, gated, registered
in MLflow as champion; then `slimline predict` answers raw text with the bundled tokenizer.
A BERT-shaped ONNX teacher with its own tokenizer.json teaches the same way."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import slimline
from tests.support.data import make_texts, write_texts
from tests.support.project import make_project
from tests.support.text import bert_like_teacher

pytestmark = pytest.mark.slow

TEXT = {
    # the student's own vocabulary is smaller than the teacher's: two tokenizations
    "data": {"source": "text", "path": "data/raw/texts.csv", "target": "label",
             "vocab_size": 300, "student_vocab_size": 100, "max_len": 24},
    "teacher": {"arch": "transformer", "width": 32, "depth": 1, "epochs": 6, "batch_size": 32,
                "lr": 0.005},
    "student": {"arch": "boe", "width": 8, "depth": 1, "epochs": 8, "batch_size": 32,
                "lr": 0.02},
    "prune": {"ratio": 0.25, "steps": 1, "finetune_epochs": 2, "round_to": 1},
}  # fmt: skip


def test_text_is_compressed_tracked_gated_promoted_and_answers_raw_text(tmp_path):
    project = make_project(tmp_path / "project", **TEXT)
    texts, labels = make_texts(480)
    write_texts(project / "data/raw/texts.csv", texts, labels)
    done = slimline(project, "run", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    quantized = json.loads((project / "metrics/quantize.json").read_text())
    assert quantized["mode"] == "dynamic"  # quantize.mode auto, for text
    teacher = json.loads((project / "metrics/teacher.json").read_text())
    assert teacher["accuracy"] >= 0.9
    report = json.loads((project / "reports/data_validation.json").read_text())
    assert report["tokenizer"]["vocab_size"] <= 100 < report["teacher_tokenizer"]["vocab_size"]
    # the teacher reads its own tokens wherever it runs: trained, distilling, benchmarked
    student = json.loads((project / "metrics/student.json").read_text())
    assert student["teacher_accuracy"] == teacher["accuracy"]
    bench = json.loads((project / "reports/benchmark.json").read_text())
    rows = {v["name"]: v for v in bench["variants"]}
    assert rows["teacher_fp32"]["accuracy"] == teacher["accuracy"]
    gates = json.loads((project / "reports/gates.json").read_text())
    assert gates["passed"], gates
    final = next(g["value"] for g in gates["gates"] if g["name"] == "min_accuracy")
    assert final >= 0.85
    assert (project / "dist/tokenizer.json").read_bytes() == (
        project / "data/prepared/tokenizer.json"
    ).read_bytes()
    card = (project / "dist/model_card.md").read_text()
    assert "A 3-class text classifier" in card and "`tokenizer.json` beside the model" in card
    listed = slimline(project, "models", "--json")
    assert listed.returncode == 0, listed.stderr
    versions = json.loads(listed.stdout)["versions"]
    assert len(versions) == 1 and "champion" in versions[0]["aliases"]
    # raw text, one per line, and the labelled table
    lines = project / "questions.txt"
    lines.write_text("\n".join(texts[:20]) + "\n")
    said = slimline(project, "predict", "dist/model.onnx", str(lines), "--json")
    assert said.returncode == 0, said.stderr
    names = [p["label"] for p in json.loads(said.stdout)["predictions"]]
    assert sum(a == b for a, b in zip(names, labels[:20], strict=True)) >= 16
    said = slimline(project, "predict", "dist/model.onnx", "data/raw/texts.csv", "--json")
    assert said.returncode == 0, said.stderr
    assert json.loads(said.stdout)["accuracy"] >= 0.85


def test_an_onnx_text_teacher_with_its_own_tokenizer_teaches_through_the_chain(tmp_path):
    project = make_project(tmp_path / "project", **TEXT | {
        "teacher": {"source": "onnx", "path": "data/pretrained/teacher.onnx",
                    "tokenizer": "data/pretrained/tokenizer.json"},
        "student": TEXT["student"] | {"width": 4},
    })  # fmt: skip
    texts, labels = make_texts(480)
    write_texts(project / "data/raw/texts.csv", texts, labels)
    bert_like_teacher(project / "data/pretrained", texts[:300], labels[:300], dim=64, max_len=24)
    done = slimline(project, "run", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    teacher = json.loads((project / "metrics/teacher.json").read_text())
    assert teacher["source"] == "onnx" and teacher["accuracy"] >= 0.9
    assert teacher["interface"]["mask_name"] == "attention_mask"
    assert teacher["interface"]["type_ids_name"] == "token_type_ids"
    student = json.loads((project / "metrics/student.json").read_text())
    assert student["teacher_accuracy"] == teacher["accuracy"]  # it read its own ids
    gates = json.loads((project / "reports/gates.json").read_text())
    assert gates["passed"], gates
    bench = json.loads((project / "reports/benchmark.json").read_text())
    rows = {v["name"]: v for v in bench["variants"]}
    assert rows["teacher_fp32"]["accuracy"] == teacher["accuracy"]
    assert all("latency_ms_b1_p50_16tok" in v for v in rows.values())
    listed = json.loads(slimline(project, "models", "--json").stdout)["versions"]
    assert len(listed) == 1 and "champion" in listed[0]["aliases"]
