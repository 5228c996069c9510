"""The prepare recipe for text: source -> dedupe on the normalized text -> stratified split ->
tokenizer (trained on the train split, or the user's) -> token ids -> validate -> write.

The splits hold `x` as (N, data.max_len) int32 token ids padded with the tokenizer's padding
id (the attention mask is `x != pad`), with the vocabulary size and pad id beside them. The
tokenizer is written with them as `<prepared>/tokenizer.json`, so that every later stage, and
the bundle, tokenizes as training did. The teacher reads the same texts through its own
tokenizer (an imported one's `teacher.tokenizer`, or the larger vocabulary a teacher trained
here gets while the student has a smaller one of its own, `data.student_vocab: own`): those
ids are stored beside as `teacher_x`, so the student's vocabulary need not be the teacher's
(offline KD pairs logits per text, not per id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slimline.compression.data.dataset import SPLITS
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
    save_tokenizer,
    train_wordpiece,
    vocab_of,
)
from slimline.core.atomic import atomic_paths
from slimline.core.params.layouts import resolve
from slimline.core.params.schema import Params

if TYPE_CHECKING:
    from tokenizers import Tokenizer


# beside tokenizer.json (the student's, which dist ships) when the teacher reads other tokens
TEACHER_TOKENIZER_FILE = "teacher_tokenizer.json"


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
    # 3. the tokenizers see the train split only: val and test stay unseen text
    (teacher_tok, tok), sources = _tokenizers(params, root, [ds.texts[i] for i in index["train"]])
    vocab = vocab_of(tok, "the student's tokenizer")
    teacher = None
    if teacher_tok is not tok:
        teacher = teacher_tok, vocab_of(teacher_tok, "the teacher's tokenizer")
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
        "source": sources[1],
        "vocab_size": vocab.size,
        "pad_id": vocab.pad_id,
        "max_len": data.max_len,
        "texts_cut": {name: int(p[3].sum()) for name, p in parts.items()},
    }
    if teacher is not None:
        report["teacher_tokenizer"] = {
            "source": sources[0],
            "vocab_size": teacher[1].size,
            "pad_id": teacher[1].pad_id,
        }
    own = tokenizer_path(params, root).with_name(TEACHER_TOKENIZER_FILE)
    targets = [*output_paths(params, root), tokenizer_path(params, root)] + [own] * bool(teacher)
    none = np.zeros(1, np.float32)  # token ids are not standardized: mean 0, std 1
    with atomic_paths(targets) as tmps:
        for tmp, name in zip(tmps, SPLITS, strict=False):
            save_split(tmp, parts[name][0], parts[name][1], ds, none, none + 1, vocab,
                       teacher_ids.get(name))  # fmt: skip
        tmps[3].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        save_tokenizer(tok, tmps[4])
        if teacher is not None:
            save_tokenizer(teacher[0], tmps[5])
    if teacher is None:
        own.unlink(missing_ok=True)  # a previous run's: these splits hold one tokenization
    return report


def _tokenizers(
    params: Params, root: Path, train: list[str]
) -> tuple[tuple[Tokenizer, Tokenizer], tuple[str, str]]:
    """(the teacher's tokenizer, the student's), one object when they are one, and where each
    came from (for the data report). The teacher reads `teacher.tokenizer` (imported),
    `data.tokenizer` or a WordPiece of `data.vocab_size`; the student the teacher's
    (`student_vocab: shared`) or a smaller WordPiece of its own."""
    data, imported = params.data, params.teacher.tokenizer
    made = "trained on the train split (WordPiece)"
    given = imported or data.tokenizer
    if given:
        field = "teacher.tokenizer" if imported else "data.tokenizer"
        teacher = load_tokenizer(resolve(given, root), field)
    else:
        teacher = train_wordpiece(train, data.vocab_size)
    source = given or made
    if data.student_vocab == "shared":
        return (teacher, teacher), (source, source)
    student = train_wordpiece(train, min(data.student_vocab_size, data.vocab_size))
    # a corpus too small to fill either vocabulary gives the two the same tokens: one tokenizer
    if student.to_str() == teacher.to_str():
        return (student, student), (made, made)
    return (teacher, student), (source, made)
