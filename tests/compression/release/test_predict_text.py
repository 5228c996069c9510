"""`slimline predict` on raw text: a .txt of one text per line or a table's text column,
tokenized with the tokenizer.json beside the model, exactly as prepare tokenized."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from slimline.compression.data.tokenizer import TOKENIZER_FILE, save_tokenizer
from slimline.compression.release.predict import predict
from slimline.compression.runtime.onnx_io import add_metadata, run_logits, session
from slimline.core.errors import InputError
from tests.support.data import make_texts, write_texts
from tests.support.text import MAX_LEN, exported_transformer, text_splits


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """dist/ as export writes it for text: the model with its metadata and the tokenizer."""
    dist = tmp_path_factory.mktemp("dist")
    exported = exported_transformer(dist)
    test = text_splits()[2]
    meta = {"class_names": json.dumps(test.class_names), "input_shape": json.dumps([MAX_LEN]),
            "layout": "text", "text_column": "text", "target": "label",
            "normalization": json.dumps({"mean": [0.0], "std": [1.0], "scale": 1.0})}  # fmt: skip
    add_metadata(exported, dist / "model.onnx", meta)
    save_tokenizer(text_splits()[3], dist / TOKENIZER_FILE)
    return dist / "model.onnx"


def test_a_table_of_texts_with_labels_scores_as_the_prepared_ids(bundle, tmp_path):
    texts, labels = make_texts(360)
    csv = write_texts(tmp_path / "new.csv", texts[300:], labels[300:])
    got = predict(bundle, csv)
    test = text_splits()[2]
    np.testing.assert_array_equal(got.labels, test.y)
    want = run_logits(session(bundle), test.x).argmax(1)
    np.testing.assert_array_equal(got.classes, want)
    assert got.accuracy is not None and got.accuracy >= 0.9


def test_a_text_file_is_one_text_per_line(bundle, tmp_path):
    texts, labels = make_texts(360)
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(texts[300:310]) + "\n\n")  # blank lines are not texts
    got = predict(bundle, lines)
    assert got.labels is None and len(got.classes) == 10
    assert np.mean(np.asarray(got.names) == np.asarray(labels[300:310])) >= 0.8


def test_bad_text_inputs_name_the_file_and_what_was_expected(bundle, tmp_path):
    wrong = write_texts(tmp_path / "wrong.csv", ["hello"], ["sport"])
    wrong.write_text(wrong.read_text().replace("text,", "body,"))
    with pytest.raises(InputError, match="wrong.csv: no text column 'text'"):
        predict(bundle, wrong)
    unknown = write_texts(tmp_path / "unknown.csv", ["hello there"], ["weather"])
    with pytest.raises(InputError, match="not the model's classes: \\['weather'\\]"):
        predict(bundle, unknown)
    with pytest.raises(InputError, match="expected .txt"):
        predict(bundle, shutil.copy(unknown, tmp_path / "texts.json"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="empty.txt: no texts"):
        predict(bundle, empty)
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(bundle, alone / "model.onnx")  # the tokenizer left behind
    with pytest.raises(InputError, match="tokenizer.json: file not found"):
        predict(alone / "model.onnx", lines_of(tmp_path, "hello there"))


def lines_of(folder, *texts: str):
    path = folder / "lines.txt"
    path.write_text("\n".join(texts) + "\n")
    return path
