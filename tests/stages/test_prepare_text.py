"""The prepare stage on text: token-id splits with their vocabulary, the tokenizer beside them,
and the refusals tables get (one class, conflicting duplicates, labels unrelated to the text),
each exit 2 naming the file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from slimline.compression.data.store import load_split
from slimline.compression.data.tokenizer import load_tokenizer, save_tokenizer, train_wordpiece
from tests.support.data import make_texts, write_texts
from tests.support.params import write_params
from tests.support.processes import run_stage

TEXT = {"source": "text", "path": "data/texts.csv", "target": "label", "vocab_size": 200,
        "max_len": 16}  # fmt: skip
# text data takes the text families (params refuse the rest)
ARCHS = {"teacher": {"arch": "transformer"}, "student": {"arch": "boe"}}


def text_project(root: Path, texts: list[str], labels: list[str], **data) -> Path:
    write_texts(root / "data/texts.csv", texts, labels)
    return write_params(root / "params.yaml", data=TEXT | data, **ARCHS)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("text")
    texts, labels = make_texts(300)
    done = run_stage("prepare", text_project(root, texts, labels))
    assert done.returncode == 0, done.stderr
    return root


def test_texts_become_int32_ids_with_their_vocabulary_and_tokenizer(prepared):
    splits = {
        name: load_split(prepared / "data/prepared", name) for name in ("train", "val", "test")
    }
    train = splits["train"]
    assert train.x.dtype == np.int32 and train.input_shape == (16,)
    assert train.layout == "text" and train.class_names == ["food", "sport", "travel"]
    assert sum(len(s.y) for s in splits.values()) == 300
    tok = load_tokenizer(prepared / "data/prepared/tokenizer.json", "tokenizer")
    assert train.vocab == (tok.get_vocab_size(), tok.token_to_id("[PAD]"))
    assert tok.get_vocab_size() <= 200
    assert int(train.x.max()) < train.vocab.size
    # every row starts with [CLS]; padding is the pad id
    assert (train.x[:, 0] == tok.token_to_id("[CLS]")).all()
    report = json.loads((prepared / "reports/data_validation.json").read_text())
    assert report["tokenizer"]["vocab_size"] == train.vocab.size
    assert report["learnability"]["verdict"] == "learnable"
    assert all(e["success"] for e in report["expectations"])


def test_the_tokenizer_learns_from_the_train_split_only(tmp_path):
    texts, labels = make_texts(240)
    # rare words, each in 3 texts: some land in train only partly or not at all
    texts = [f"{t} rare{i // 3}" for i, t in enumerate(texts)]
    assert (
        run_stage("prepare", text_project(tmp_path, texts, labels, vocab_size=400)).returncode == 0
    )
    tok = load_tokenizer(tmp_path / "data/prepared/tokenizer.json", "tokenizer")
    train = load_split(tmp_path / "data/prepared", "train")
    pad = train.vocab.pad_id
    decoded = " ".join(tok.decode([i for i in row if i != pad]) for row in train.x)
    in_train = set(re.findall(r"rare\d+", decoded.replace(" ##", "")))
    learned = {w for w in tok.get_vocab() if re.fullmatch(r"rare\d+", w)}
    assert learned, "no rare word was learned: the check below would prove nothing"
    assert len(in_train) < 80  # some rare words were seen by val / test alone
    assert learned <= in_train, f"learned from val / test: {sorted(learned - in_train)}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("one class", "a single class"),
        ("conflicting duplicates", "conflicting labels"),
        ("labels unrelated to the text", "unrelated"),
    ],
)
def test_text_that_cannot_teach_is_refused_naming_the_file(tmp_path, change, message):
    texts, labels = make_texts(240)
    if change == "one class":
        labels = ["food"] * len(labels)
    elif change == "conflicting duplicates":
        texts = texts[:120] + texts[:120]
        labels = labels[:120] + [{"food": "sport", "sport": "travel", "travel": "food"}[v]
                                 for v in labels[:120]]  # fmt: skip
    else:
        labels = list(np.random.default_rng(0).permutation(labels))
    done = run_stage("prepare", text_project(tmp_path, texts, labels))
    assert done.returncode == 2, done.stderr
    assert "texts.csv" in done.stderr and message in done.stderr, done.stderr
    assert not (tmp_path / "data/prepared").exists()


def test_a_missing_text_column_is_named(tmp_path):
    texts, labels = make_texts(60)
    done = run_stage("prepare", text_project(tmp_path, texts, labels, text="body"))
    assert done.returncode == 2
    assert "no data.text column 'body'" in done.stderr


def test_an_imported_teachers_own_ids_are_stored_beside_the_students(tmp_path):
    texts, labels = make_texts(300)
    write_texts(tmp_path / "data/texts.csv", texts, labels)
    teacher_tok = train_wordpiece(texts[:50], 120)  # another vocabulary than the student's
    save_tokenizer(teacher_tok, tmp_path / "teacher_tokenizer.json")
    teacher = {"source": "onnx", "path": "t.onnx", "tokenizer": "teacher_tokenizer.json"}
    params = write_params(tmp_path / "params.yaml", data=TEXT, teacher=teacher,
                          student=ARCHS["student"])  # fmt: skip
    done = run_stage("prepare", params)
    assert done.returncode == 0, done.stderr
    test = load_split(tmp_path / "data/prepared", "test", lazy=True)
    student_tok = load_tokenizer(tmp_path / "data/prepared/tokenizer.json", "tokenizer")
    assert test.teacher_vocab == (teacher_tok.get_vocab_size(), 0)
    assert test.vocab == (student_tok.get_vocab_size(), 0) != test.teacher_vocab
    # the same texts, row for row: decoded from either, the words agree
    own = np.asarray(test.for_teacher().x)
    for row in (0, len(own) - 1):
        theirs = teacher_tok.decode(own[row].tolist())
        assert theirs == student_tok.decode(np.asarray(test.x[row]).tolist())
    report = json.loads((tmp_path / "reports/data_validation.json").read_text())
    assert report["teacher_tokenizer"]["vocab_size"] == teacher_tok.get_vocab_size()


@pytest.mark.parametrize("student_vocab", ["own", "shared"])
def test_the_student_reads_a_smaller_vocabulary_of_its_own_unless_shared(tmp_path, student_vocab):
    texts, labels = make_texts(300)
    params = text_project(tmp_path, texts, labels, student_vocab=student_vocab,
                          student_vocab_size=100)  # fmt: skip
    done = run_stage("prepare", params)
    assert done.returncode == 0, done.stderr
    train = load_split(tmp_path / "data/prepared", "train")
    shipped = load_tokenizer(tmp_path / "data/prepared/tokenizer.json", "tokenizer")
    assert train.vocab.size == shipped.get_vocab_size()  # the student's: the one dist ships
    teacher_tokenizer = tmp_path / "data/prepared/teacher_tokenizer.json"
    if student_vocab == "shared":
        assert train.teacher_x is None and train.vocab.size > 100
        assert not teacher_tokenizer.exists()
        return
    teacher_tok = load_tokenizer(teacher_tokenizer, "tokenizer")
    assert teacher_tok.get_vocab_size() == train.teacher_vocab.size
    assert train.vocab.size <= 100 < train.teacher_vocab.size <= 200
    assert train.teacher_x.shape == train.x.shape and not np.array_equal(train.teacher_x, train.x)
    report = json.loads((tmp_path / "reports/data_validation.json").read_text())
    assert report["teacher_tokenizer"]["vocab_size"] == train.teacher_vocab.size
    assert report["tokenizer"]["source"].startswith("trained on the train split")
