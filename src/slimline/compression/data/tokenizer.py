"""The text tokenizer: a WordPiece vocabulary made from the train split, or a user's own
`tokenizer.json`, and texts turned into fixed-length int32 token ids.

The vocabulary is built here, not by `tokenizers`' WordPieceTrainer: that trainer breaks ties
between equally frequent merges in hash order, so two runs on the same texts gave different
vocabularies (28 of 8,000 tokens, 3,942 ids shifted, on TREC-6), and dvc.lock could never
reproduce. This one is a pure function of the texts: every character of the train split
(alone and as a `##` continuation), then the most frequent words and word endings, ties broken
by the text of the token. The file is an ordinary `tokenizers` WordPiece `tokenizer.json`
(BERT normalizer and pre-tokenizer, `[CLS] text [SEP]`), so any runtime that reads those can
tokenize for the deployed model.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slimline.compression.data.dataset import DataError, Vocab

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TOKENIZER_FILE = "tokenizer.json"  # its name beside the prepared splits and in the bundle
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")  # ids 0..3 of every vocabulary built here
# Share of the learned vocabulary given to whole words; the rest goes to `##` word endings,
# which let an unseen word (`jumping`) still read as known pieces (`jump`, `##ing`).
WORD_SHARE = 0.75
# word endings worth a token: `##ing`, `##tion`; longer ones are better kept as whole words
ENDING_LENGTHS = range(2, 6)


def normalized(text: str) -> str:
    """The form duplicates are found by: Unicode NFKC, lower case, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def _pipeline() -> Tokenizer:
    """An empty WordPiece tokenizer with BERT's normalizer and pre-tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordPiece({"[UNK]": 1}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok


def train_wordpiece(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A WordPiece tokenizer whose vocabulary of at most `vocab_size` tokens comes from
    `texts` (the train split only: the val and test texts must stay unseen)."""
    from tokenizers import decoders, models, processors

    base = _pipeline()
    assert base.normalizer is not None and base.pre_tokenizer is not None
    words: Counter[str] = Counter()
    for text in texts:
        cleaned = base.normalizer.normalize_str(text)
        words.update(word for word, _ in base.pre_tokenizer.pre_tokenize_str(cleaned))
    vocab = _vocabulary(words, vocab_size)
    tok = _pipeline()
    tok.model = models.WordPiece(vocab, unk_token="[UNK]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[(s, vocab[s]) for s in ("[CLS]", "[SEP]")]
    )
    tok.decoder = decoders.WordPiece()
    return tok


def _vocabulary(words: Counter[str], size: int) -> dict[str, int]:
    alphabet = sorted({c for word in words for c in word})
    fixed = [*SPECIALS, *alphabet, *(f"##{c}" for c in alphabet)]
    room = size - len(fixed)
    if room < 0:
        raise DataError(
            f"data.vocab_size: at least {len(fixed)} for this text ({len(alphabet)} distinct "
            f"characters, each alone and as a continuation, and {len(SPECIALS)} special "
            f"tokens; got {size})"
        )
    endings: Counter[str] = Counter()
    for word, n in words.items():
        for length in ENDING_LENGTHS:
            if len(word) > length:
                endings[f"##{word[-length:]}"] += n
    taken = set(fixed)
    ranked_words = [w for w in _ranked(words) if w not in taken]
    ranked_endings = [e for e in _ranked(endings) if e not in taken]
    n_words = min(len(ranked_words), max(room - len(ranked_endings), round(room * WORD_SHARE)))
    learned = ranked_words[:n_words] + ranked_endings[: room - n_words]
    return {token: i for i, token in enumerate(fixed + learned)}


def _ranked(counts: Counter[str]) -> list[str]:
    """Most frequent first; equal counts in the order of the token's text."""
    return [token for token, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def save_tokenizer(tok: Tokenizer, path: Path) -> None:
    """tokenizer.json, byte-identical for the same vocabulary (written by the caller's
    atomic path)."""
    path.write_text(tok.to_str(pretty=True) + "\n")


def load_tokenizer(path: Path, field: str) -> Tokenizer:
    """A user's `tokenizer.json`, refused (naming `field` and the file) when it cannot be read
    or has no padding token."""
    from tokenizers import Tokenizer

    where = f"{field}: {path}"
    if not path.is_file():
        raise DataError(f"{where}: file not found (expected a Hugging Face tokenizer.json)")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises its own exception type for every problem
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise DataError(f"{where}: not a readable tokenizer.json ({first})") from None
    pad_id(tok, where)
    return tok


def vocab_of(tok: Tokenizer, where: str) -> Vocab:
    """What a model over `tok`'s ids is sized by: its vocabulary size and pad id."""
    return Vocab(tok.get_vocab_size(), pad_id(tok, where))


def pad_id(tok: Tokenizer, where: str) -> int:
    """The id that pads a sequence: the tokenizer's padding setting, else [PAD] or <pad>."""
    if tok.padding is not None:
        return int(tok.padding["pad_id"])
    for token in ("[PAD]", "<pad>"):
        found = tok.token_to_id(token)
        if found is not None:
            return int(found)
    raise DataError(f"{where}: no padding token (expected [PAD] or <pad> in the vocabulary)")


def encode(tok: Tokenizer, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, max_len) int32 token ids, each text tokenized, cut to max_len and padded with the
    padding id (the attention mask is `ids != pad`); and (N,) bool: which texts were cut.
    `tok` itself is left as it was (its truncation and padding settings are the caller's)."""
    from tokenizers import Tokenizer

    pad = pad_id(tok, "tokenizer")
    work = Tokenizer.from_str(tok.to_str())
    work.enable_truncation(max_len)
    work.no_padding()
    ids = np.full((len(texts), max_len), pad, np.int32)
    cut = np.zeros(len(texts), bool)
    for row, encoding in enumerate(work.encode_batch(list(texts))):
        ids[row, : len(encoding.ids)] = encoding.ids
        cut[row] = bool(encoding.overflowing)
    return ids, cut
