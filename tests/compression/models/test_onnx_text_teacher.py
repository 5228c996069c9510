"""A pretrained text teacher as users bring one: a BERT-shaped classifier exported to ONNX
with Hugging Face's three int64 inputs and its own tokenizer.json, whose vocabulary is not the
student's. It reads its own ids of each text (`Split.for_teacher`) wherever it runs, and every
file that cannot serve the data is refused by name (exit 2)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from onnx import TensorProto, helper

from slimline.compression.data.dataset import Vocab
from slimline.compression.data.tokenizer import encode, load_tokenizer, pad_id
from slimline.compression.models.onnx_teacher import TeacherError, TeacherFeed, inspect_teacher
from slimline.compression.models.teacher import OnnxTeacher, load_teacher, save_teacher
from slimline.compression.release.latency import measure_many
from slimline.compression.release.preflight import check_before_run
from slimline.compression.scores import accuracy
from slimline.compression.training.fit import as_read_by, predict_logits
from slimline.core.errors import InputError
from slimline.core.params.loading import load_params
from tests.support.data import make_texts, write_texts
from tests.support.params import write_params
from tests.support.text import MAX_LEN, bert_like_teacher, text_splits

NONE = (np.zeros(1, np.float32), np.ones(1, np.float32), 1.0)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """(onnx path, tokenizer path, its vocab, train and test splits holding its ids)."""
    texts, labels = make_texts(360)
    folder = tmp_path_factory.mktemp("bert")
    onnx_path, tok_path = bert_like_teacher(folder, texts[:240], labels[:240])
    tok = load_tokenizer(tok_path, "teacher.tokenizer")
    vocab = Vocab(tok.get_vocab_size(), pad_id(tok, "teacher.tokenizer"))
    train, _, test, _ = text_splits()

    def with_teacher_ids(split, rows):
        ids, _ = encode(tok, texts[rows], MAX_LEN)
        return dataclasses.replace(split, teacher_x=ids, teacher_vocab=vocab)

    return (onnx_path, tok_path, vocab, with_teacher_ids(train, slice(0, 240)),
            with_teacher_ids(test, slice(300, 360)))  # fmt: skip


def refused(path, ids, vocab, num_classes=3) -> str:
    with pytest.raises(TeacherError) as e:
        inspect_teacher(path, ids, num_classes, "prepared", NONE, vocab)
    assert isinstance(e.value, InputError)  # exit 2
    assert str(path) in str(e.value)
    return str(e.value)


def test_a_bert_like_teacher_is_called_with_its_own_ids_mask_and_zero_token_types(bert, tmp_path):
    path, _, vocab, train, test = bert
    assert vocab.size != train.vocab.size  # two tokenizers: the ids differ
    own = train.for_teacher()
    interface, data = inspect_teacher(path, own.x[:8], 3, "prepared", NONE, vocab)
    assert (interface.input_name, interface.mask_name, interface.type_ids_name) == (
        "input_ids", "attention_mask", "token_type_ids")  # fmt: skip
    assert interface.input_dtype == "int64" and interface.pad_id == vocab.pad_id
    teacher = OnnxTeacher(data, TeacherFeed(interface, *NONE))
    logits = predict_logits(teacher, as_read_by(teacher, test).x)
    assert accuracy(logits, test.y) >= 0.9
    # read through the student's ids instead, the same texts mean something else to it
    assert not np.array_equal(as_read_by(teacher, test).x, test.x)
    # its checkpoint alone is the teacher, with the text interface
    save_teacher(tmp_path / "teacher.pt", data, TeacherFeed(interface, *NONE))
    again = load_teacher(tmp_path / "teacher.pt")
    np.testing.assert_array_equal(predict_logits(again, test.for_teacher().x), logits)


def test_shorter_sequences_and_padding_leave_its_answers_alone(bert):
    path, _, vocab, _, test = bert
    own = test.for_teacher()
    interface, data = inspect_teacher(path, own.x[:8], 3, "prepared", NONE, vocab)
    feed = TeacherFeed(interface, *NONE)
    teacher = OnnxTeacher(data, feed)
    full = feed.logits(teacher.session, np.asarray(own.x))
    used = int((np.asarray(own.x) != vocab.pad_id).sum(axis=1).max())
    short = feed.logits(teacher.session, np.ascontiguousarray(np.asarray(own.x)[:, :used]))
    np.testing.assert_allclose(short, full, atol=1e-5)


def test_only_the_teacher_checkpoint_reads_the_teachers_ids(bert, tmp_path):
    from slimline.compression.models.checkpoints import save_checkpoint
    from slimline.compression.models.text_families import TEXT_CLASSES

    _, _, vocab, train, _ = bert
    # an online peer or a student generation teaching the next: a module as built
    generation = TEXT_CLASSES["boe"]((MAX_LEN,), 3, vocab_size=vocab.size, dim=8, hidden=8,
                                     pad_id=vocab.pad_id)  # fmt: skip
    assert as_read_by(generation, train) is train
    # the same network saved as the teacher and loaded as one reads the teacher's ids
    save_checkpoint(tmp_path / "teacher.pt", generation)
    loaded = load_teacher(tmp_path / "teacher.pt")
    assert np.array_equal(as_read_by(loaded, train).x, train.teacher_x)


def test_a_tokenizer_bigger_than_the_embedding_is_refused(bert):
    path, _, vocab, train, _ = bert
    # the student's own vocabulary (193 tokens) against the teacher's 130-row embedding
    message = refused(path, np.asarray(train.x[:8]), train.vocab)
    assert f"has {train.vocab.size} tokens" in message and "rows" in message
    assert "not the tokenizer this model was trained with" in message
    bigger = Vocab(vocab.size + 40, vocab.pad_id)
    assert f"has {bigger.size} tokens" in refused(path, train.for_teacher().x[:8], bigger)


def test_inputs_a_text_teacher_cannot_have_are_refused(bert, tmp_path):
    _, _, vocab, train, _ = bert
    ids = np.asarray(train.for_teacher().x[:8])

    def model(*inputs):
        values = [helper.make_tensor_value_info(n, e, ["n", "s"]) for n, e in inputs]
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])
        nodes = [helper.make_node("Constant", [], ["y"], value_floats=[0.0, 0.0, 0.0])]
        graph = helper.make_graph(nodes, "g", values, [out])
        path = tmp_path / f"{'-'.join(n for n, _ in inputs)}.onnx"
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        path.write_bytes(proto.SerializeToString())
        return path

    floats = model(("input_ids", TensorProto.FLOAT))
    assert "must be an int64 or int32 tensor of token ids" in refused(floats, ids, vocab)
    twice = model(("input_ids", TensorProto.INT64), ("other_ids", TensorProto.INT64))
    assert "hold two of one kind" in refused(twice, ids, vocab)
    masks_only = model(("attention_mask", TensorProto.INT64))
    assert "no input_ids input" in refused(masks_only, ids, vocab)


def test_an_int_input_teacher_on_numeric_data_says_it_is_a_text_teacher(bert):
    path, _, _, _, _ = bert
    with pytest.raises(TeacherError) as e:
        inspect_teacher(path, np.zeros((2, 1, 8, 8), np.float32), 10, "prepared", NONE)
    assert "a text teacher, for data.source text" in str(e.value)


def test_params_ask_for_the_teachers_tokenizer_on_text_and_only_there(tmp_path):
    data = {"source": "text", "path": "texts.csv", "target": "label"}
    archs = {"student": {"arch": "boe"}}
    teacher = {"source": "onnx", "path": "t.onnx"}
    with pytest.raises(InputError, match="teacher.tokenizer: the tokenizer.json the ONNX"):
        load_params(write_params(tmp_path / "a.yaml", data=data, teacher=teacher, **archs))
    with pytest.raises(InputError, match="teacher.input: prepared for text data"):
        raw = teacher | {"tokenizer": "t.json", "input": "raw"}
        load_params(write_params(tmp_path / "r.yaml", data=data, teacher=raw, **archs))
    with pytest.raises(InputError, match="data.tokenizer: null with an imported teacher"):
        both = teacher | {"tokenizer": "t.json"}
        load_params(write_params(tmp_path / "d.yaml", data=data | {"tokenizer": "s.json"},
                                 teacher=both, **archs))  # fmt: skip
    with pytest.raises(InputError, match="teacher.tokenizer: only for data.source text"):
        load_params(write_params(tmp_path / "b.yaml", teacher=teacher | {"tokenizer": "t.json"}))
    with pytest.raises(InputError, match="teacher.tokenizer: only for source 'onnx'"):
        trained = {"arch": "transformer", "tokenizer": "t.json"}
        load_params(write_params(tmp_path / "c.yaml", data=data, teacher=trained, **archs))


def test_slimline_run_checks_a_text_teacher_in_its_own_tokens_before_it_starts(bert, tmp_path):
    path, tok_path, _, _, _ = bert
    texts, labels = make_texts(60)
    write_texts(tmp_path / "texts.csv", texts, labels)
    data = {
        "source": "text",
        "path": "texts.csv",
        "target": "label",
        "max_len": MAX_LEN,
        "vocab_size": 100,
    }
    teacher = {"source": "onnx", "path": str(path), "tokenizer": str(tok_path)}
    student = {"arch": "boe", "width": 4, "depth": 1}
    params = load_params(write_params(tmp_path / "params.yaml", data=data, teacher=teacher,
                                      student=student))  # fmt: skip
    check_before_run(params, tmp_path)  # accepted: its ids fit, its output is 3 scores
    # the student's bigger vocabulary given as the teacher's: refused before anything runs
    other = tmp_path / "student_tokenizer.json"
    other.write_text(text_splits()[3].to_str())
    wrong = load_params(write_params(tmp_path / "wrong.yaml", data=data,
                                     teacher=teacher | {"tokenizer": str(other)},
                                     student=student))  # fmt: skip
    with pytest.raises(TeacherError, match="not the tokenizer this model was trained with"):
        check_before_run(wrong, tmp_path)


def test_the_benchmark_times_it_on_its_own_ids_at_each_token_length(bert):
    path, _, vocab, _, test = bert
    own = test.for_teacher()
    interface, _ = inspect_teacher(path, own.x[:8], 3, "prepared", NONE, vocab)
    result = measure_many({"teacher_fp32": path}, test.x[:1], test.x[:8], threads=1, warmup=2,
                          runs=10, throughput_runs=3, feeds={"teacher_fp32": TeacherFeed(
                              interface, *NONE)}, own_x={"teacher_fp32": own.x},
                          token_lengths=(8,))  # fmt: skip
    assert result["teacher_fp32"]["latency_ms_b1_p50_8tok"] > 0
