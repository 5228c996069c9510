"""Text sources, the reproducible WordPiece tokenizer, token ids and the text data suite."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slimline.compression.data.dataset import DataError
from slimline.compression.data.expectations import DataValidationError
from slimline.compression.data.text import BOW_BUCKETS, bag_of_words, load_texts
from slimline.compression.data.text_expectations import validate_text
from slimline.compression.data.tokenizer import (
    SPECIALS,
    encode,
    load_tokenizer,
    normalized,
    save_tokenizer,
    train_wordpiece,
)

TEXTS = [
    "How far is the moon from the earth?",
    "Who wrote the play Hamlet?",
    "What is the capital city of France?",
    "When did the Berlin wall fall?",
    "Who painted the Mona Lisa?",
    "How many legs does a spider have?",
    "What colour is the sky on Mars?",
    "When was the telephone invented?",
] * 3


def test_the_vocabulary_is_the_same_on_every_run_and_covers_unseen_words():
    # tokenizers' own WordPieceTrainer breaks ties in hash order: two runs differed
    first, second = train_wordpiece(TEXTS, 120), train_wordpiece(list(reversed(TEXTS)), 120)
    assert first.to_str() == second.to_str()
    vocab = first.get_vocab()
    assert [vocab[s] for s in SPECIALS] == [0, 1, 2, 3] and len(vocab) <= 120
    tokens = first.encode("Who painted Hamlets").tokens
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "[UNK]" not in tokens
    assert "hamlet" in tokens and "##s" in tokens  # an unseen word, read as known pieces


def test_a_vocabulary_too_small_for_the_characters_names_the_field():
    with pytest.raises(DataError, match=r"data.vocab_size: at least \d+ for this text"):
        train_wordpiece(TEXTS, 20)


def test_ids_are_fixed_length_int32_padded_and_cut_at_max_len():
    tok = train_wordpiece(TEXTS, 200)
    exact = "Who wrote the play Hamlet?"  # [CLS] who wrote the play hamlet ? [SEP]: 8 tokens
    ids, cut = encode(tok, ["Who wrote Hamlet?", " ".join(TEXTS), exact], 8)
    assert ids.shape == (3, 8) and ids.dtype == np.int32
    short, long, fits = ids
    assert short[0] == 2 and 3 in short and short[-1] == 0  # [CLS] ... [SEP] [PAD]
    assert long[0] == 2 and long[-1] == 3 and 0 not in long  # cut to max_len, still closed
    assert fits[-1] == 3 and 0 not in fits  # fills max_len exactly: not cut
    assert cut.tolist() == [False, True, False]
    (row,), _ = encode(tok, [TEXTS[0]], 64)  # 11 tokens; the tokenizer was not left cutting at 8
    assert row[row != 0].tolist() == tok.encode(TEXTS[0]).ids and (row != 0).sum() > 8


def test_a_saved_tokenizer_loads_and_bad_files_are_named(tmp_path):
    tok = train_wordpiece(TEXTS, 200)
    encode(tok, TEXTS, 4)  # encoding leaves the tokenizer as it was: the file has no cut at 4
    save_tokenizer(tok, tmp_path / "tokenizer.json")
    assert tok.truncation is None and tok.padding is None
    again = load_tokenizer(tmp_path / "tokenizer.json", "data.tokenizer")
    np.testing.assert_array_equal(encode(again, TEXTS, 16)[0], encode(tok, TEXTS, 16)[0])
    with pytest.raises(DataError, match=r"data.tokenizer: .*absent.json: file not found"):
        load_tokenizer(tmp_path / "absent.json", "data.tokenizer")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match=r"bad.json: not a readable tokenizer.json"):
        load_tokenizer(tmp_path / "bad.json", "data.tokenizer")


def test_a_table_of_texts_reads_labels_sorted_and_refuses_what_it_cannot_use(tmp_path):
    path = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["a b", "c d", "e f"], "label": ["spam", "ham", "spam"]}).to_csv(
        path, index=False
    )
    texts = load_texts(path, "text", "label")
    assert texts.class_names == ["ham", "spam"] and texts.y.tolist() == [1, 0, 1]
    with pytest.raises(DataError, match=r"no data.text column 'body' \(columns found"):
        load_texts(path, "body", "label")
    pd.DataFrame({"text": ["a b", "  ", "e f"], "label": [1, 0, 1]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"texts.csv: 1 empty texts \(first rows: \[1\]"):
        load_texts(path, "text", "label")


def test_a_folder_of_text_files_is_one_class_per_folder_and_bad_files_are_named(tmp_path):
    for name, words in (("ham", "see you soon"), ("spam", "win a prize now")):
        (tmp_path / name).mkdir()
        for i in range(3):
            (tmp_path / name / f"{i}.txt").write_text(f"{words} {i}")
    texts = load_texts(tmp_path, "text", None)
    assert texts.class_names == ["ham", "spam"] and texts.y.tolist() == [0, 0, 0, 1, 1, 1]
    (tmp_path / "spam" / "9.txt").write_bytes(b"\xff\xfe broken")
    with pytest.raises(DataError, match=r"9.txt: not UTF-8 text"):
        load_texts(tmp_path, "text", None)


def test_duplicates_are_found_on_the_normalized_text():
    assert normalized("  Who  wrote\tHAMLET? ") == normalized("who wrote hamlet?")
    texts = load_texts_of(["Who wrote Hamlet?", "who  wrote hamlet?", "Who wrote Macbeth?"])
    keys = texts.keys
    assert (keys[0] == keys[1]).all() and not (keys[0] == keys[2]).all()


def load_texts_of(items: list[str]):
    from slimline.compression.data.text import Texts

    return Texts(items, np.zeros(len(items), np.int64), ["a"])


def test_bag_of_words_counts_tokens_without_the_padding():
    ids = np.array([[2, 7, 7, 3, 0, 0], [2, 7 + BOW_BUCKETS, 3, 0, 0, 0]], np.int32)
    bow = bag_of_words(ids, pad=0)
    assert bow.shape == (2, BOW_BUCKETS) and bow[0, 7] == 2 and bow[1, 7] == 1
    assert bow[:, 0].sum() == 0 and bow.sum() == 7


def _parts(tok, texts_by_split):
    parts = {}
    for name, items in texts_by_split.items():
        t = load_texts_of(items)
        ids, cut = encode(tok, items, 16)
        parts[name] = (ids, np.arange(len(items)) % 2, t.keys, cut)
    return parts


def test_the_text_suite_passes_clean_splits_and_names_leakage_and_ids_outside_the_vocab():
    tok = train_wordpiece(TEXTS, 200)
    clean = {"train": TEXTS[:4], "val": TEXTS[4:6], "test": TEXTS[6:8]}
    entries = validate_text(_parts(tok, clean), 2, tok.get_vocab_size(), 0, 3, 1, "texts.csv")
    assert all(e["success"] for e in entries)
    leaked = {**clean, "test": [TEXTS[0].upper(), TEXTS[7]]}  # the same text, other case
    with pytest.raises(DataValidationError, match=r"leakage: expect_column_values_to_be_unique"):
        validate_text(_parts(tok, leaked), 2, tok.get_vocab_size(), 0, 3, 1, "texts.csv")
    with pytest.raises(DataValidationError, match=r"on max_id"):
        validate_text(_parts(tok, clean), 2, 50, 0, 3, 1, "texts.csv")  # a smaller vocabulary
