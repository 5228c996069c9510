"""The prepare recipe for text: source -> dedupe on the normalized text -> stratified split ->
tokenizer (trained on the train split, or the user's) -> token ids -> validate -> write.

The splits hold `x` as (N, data.max_len) int32 token ids padded with the tokenizer's padding
id (the attention mask is `x != pad`), with the vocabulary size and pad id beside them. The
tokenizer is written with them as `<prepared>/tokenizer.json`, so that every later stage, and
the bundle, tokenizes as training did. An imported ONNX teacher reads the same texts through
its own tokenizer (`teacher.tokenizer`): those ids are stored beside as `teacher_x`, so the
student's vocabulary need not be the teacher's (offline KD pairs logits per text, not per id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slimline.compression.data.dataset import SPLITS, Vocab
from slimline.compression.data.degenerate import check_classes, check_split_counts, label_conflicts
from slimline.compression.data.learnability import probe
from slimline.compression.data.report import data_report, digest_of, output_paths, split_entry
from slimline.compression.data.split import sample_groups, split_indices
from slimline.compression.data.store import save_split
from slimline.compression.data.text import bag_of_words, load_texts
from slimline.compression.data.text_expectations import validate_text
from slimline.compression.data.tokenizer import (
    TOKENIZER_FILE,
    encode,
    load_tokenizer,
    pad_id,
    save_tokenizer,
    train_wordpiece,
)
from slimline.core.atomic import atomic_paths
from slimline.core.params.layouts import resolve
from slimline.core.params.schema import Params

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def tokenizer_path(params: Params, root: Path) -> Path:
    """Where prepare writes the tokenizer the models are trained with."""
    return root / params.paths.prepared / TOKENIZER_FILE


def prepare_text(params: Params, root: Path) -> dict:
    """Write the prepared token-id splits, the tokenizer and the data report, all or nothing."""
    data = params.data
    path = resolve(data.path or "", root)
    where = f"data.path: {path}"
    raw = load_texts(path, data.text, data.target)
    # 1. duplicates by normalized text: conflicting labels reported (refused above a share),
    #    then the first of each kept, so that no text can land in two splits
    first, inverse = sample_groups(raw.keys)
    conflicts = label_conflicts(first, inverse, raw, where)
    ds = raw.take(np.sort(first))
    check_classes(ds, where, data.min_per_class)
    # 2. split stratified by label
    index = split_indices(ds, data, params.seed)
    check_split_counts({n: (None, ds.y[i]) for n, i in index.items()}, ds, where,
                       data.min_per_class)  # fmt: skip
    # 3. the tokenizer sees the train split only: val and test stay unseen text
    if data.tokenizer:
        tok = load_tokenizer(resolve(data.tokenizer, root), "data.tokenizer")
    else:
        tok = train_wordpiece((ds.texts[i] for i in index["train"]), data.vocab_size)
    vocab = Vocab(tok.get_vocab_size(), pad_id(tok, f"data.tokenizer: {data.tokenizer}"))
    teacher = _teacher_tokenizer(params, root)
    keys = ds.keys
    parts, teacher_ids = {}, {}
    for name, rows in index.items():
        texts = [ds.texts[i] for i in rows]
        ids, cut = encode(tok, texts, data.max_len)
        parts[name] = (ids, ds.y[rows], keys[rows], cut)
        if teacher is not None:
            teacher_ids[name] = (encode(teacher[0], texts, data.max_len)[0], teacher[1])
    # 4. validate (fail closed), then the labels must say something about the words
    num_classes = len(ds.class_names)
    special = len(tok.encode("").ids)  # what an empty text still holds ([CLS] [SEP])
    entries = validate_text(parts, num_classes, vocab.size, vocab.pad_id, special + 1,
                            data.min_per_class, str(path))  # fmt: skip
    words = {name: (bag_of_words(p[0], vocab.pad_id), p[1]) for name, p in parts.items()}
    learnability = probe(words, num_classes, where, params.seed)
    splits = {n: split_entry(digest_of(p[0], p[1]), p[1], num_classes) for n, p in parts.items()}
    report = data_report(str(path), raw.sha256, ds, len(raw.y) - len(ds.y), conflicts,
                         learnability, splits, entries)  # fmt: skip
    report["tokenizer"] = {
        "source": data.tokenizer or "trained on the train split (WordPiece)",
        "vocab_size": vocab.size,
        "pad_id": vocab.pad_id,
        "max_len": data.max_len,
        "texts_cut": {name: int(p[3].sum()) for name, p in parts.items()},
    }
    if teacher is not None:
        report["teacher_tokenizer"] = {
            "source": params.teacher.tokenizer,
            "vocab_size": teacher[1].size,
            "pad_id": teacher[1].pad_id,
        }
    targets = [*output_paths(params, root), tokenizer_path(params, root)]
    none = np.zeros(1, np.float32)  # token ids are not standardized: mean 0, std 1
    with atomic_paths(targets) as tmps:
        for tmp, name in zip(tmps, SPLITS, strict=False):
            save_split(tmp, parts[name][0], parts[name][1], ds, none, none + 1, vocab,
                       teacher_ids.get(name))  # fmt: skip
        tmps[3].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        save_tokenizer(tok, tmps[4])
    return report


def _teacher_tokenizer(params: Params, root: Path) -> tuple[Tokenizer, Vocab] | None:
    """An imported text teacher's own tokenizer and its vocabulary, if there is one."""
    if params.teacher.source != "onnx" or not params.teacher.tokenizer:
        return None
    path = resolve(params.teacher.tokenizer, root)
    tok = load_tokenizer(path, "teacher.tokenizer")
    return tok, Vocab(tok.get_vocab_size(), pad_id(tok, f"teacher.tokenizer: {path}"))
