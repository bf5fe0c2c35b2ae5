"""embedding: a semantic vector of the prompt, for prompt diversity and topic coverage per account.

A vector provider, not a score: `embed(texts)` returns L2-normalised float32 rows. The model is
wordllama's static embeddings, whose weights ship inside the wheel; it is loaded offline (never a
download) and lazily, on the first `embed`.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from distillguard.compiled import compiled
from distillguard.events.call_view import CallView
from distillguard.signals.base import Signal, SignalResult

MODEL_CONFIG = "l2_supercat"
DIMENSIONS = 256
# Tokenisation dominates the cost and grows with length; the head of a prompt carries its topic.
TRUNCATE_CHARS = 400
BATCH_SIZE = 64
# The tokenizer (Llama 2's: a BPE over the whole text, no pre-tokenizer, so nothing it computes is
# reused) costs most of an `embed`. The text is tokenised word by word instead, each word once and
# remembered, which gives the same ids: see `_word_keys`. Words remembered, and the longest word
# remembered: a text without spaces (Chinese, Japanese, a URL) is one "word" of up to TRUNCATE_CHARS
# with hundreds of ids (~17 KB as Python ints), which would make the memo gigabytes; such words are
# tokenised afresh. With words of at most WORD_CHARS: a few tens of MB.
WORD_MEMO = 262_144
WORD_CHARS = 32
ENCODE_CHUNK = 256
_SPACE = "\u2581"  # what the normaliser turns each space into, and puts in front of the text
# a run of spaces and the word after it: the pieces the BPE can never merge across
_WORD = re.compile(f"{_SPACE}+[^{_SPACE}]*")
# added tokens, matched in the raw text before normalisation: a text with one is tokenised whole
_ADDED = ("<s>", "</s>", "<unk>")


def _cache_dir() -> Path:
    """$DISTILLGUARD_CACHE/wordllama, else the user cache directory ($XDG_CACHE_HOME or ~/.cache)."""
    if os.environ.get("DISTILLGUARD_CACHE"):
        return Path(os.environ["DISTILLGUARD_CACHE"]) / "wordllama"
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "distillguard" / "wordllama"


def load_wordllama(cache_dir: Path | None = None) -> Any:
    """Load wordllama without network access.

    wordllama 0.4 ships its tokenizer config under `wordllama/tokenizers/` but looks for it under
    `wordllama/tokenizer/` and would then download it; copying it into `<cache>/tokenizers/` and
    passing `disable_download=True` makes the load local (see ../shared/NOTES.md).
    """
    import wordllama
    from wordllama import WordLlama

    cache = cache_dir or _cache_dir()
    name = f"{MODEL_CONFIG}_tokenizer_config.json"
    shipped = Path(wordllama.__file__).resolve().parent / "tokenizers" / name
    if not shipped.is_file():
        raise FileNotFoundError(
            f"wordllama {wordllama.__version__} does not ship {shipped}; pin wordllama 0.4"
        )
    target = cache / "tokenizers" / name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        shutil.copyfile(shipped, tmp)
        tmp.replace(target)  # atomic: concurrent workers never read half a file
    return WordLlama.load(config=MODEL_CONFIG, cache_dir=cache, dim=DIMENSIONS, disable_download=True)


class Embedding(Signal):
    name = "embedding"
    version = "1"
    description = (
        f"A {DIMENSIONS}-dimensional semantic vector of the prompt (wordllama {MODEL_CONFIG}, first "
        f"{TRUNCATE_CHARS} characters) for diversity and coverage features; provides vectors, not a score."
    )
    known_false_positives = ()
    reads = "input"
    inline = False  # ~0.1 ms per prompt: embed a sample per account off the request path
    reads_columns = ("prompt",)

    def __init__(self, *, cache_dir: Path | None = None) -> None:
        self._cache_dir = cache_dir
        self._model: Any = None
        self._lock = threading.Lock()
        self._words: dict[str, list[int]] = {}  # word key -> token ids of SPACE + key

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = load_wordllama(self._cache_dir)
            return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised float32 row of DIMENSIONS per text (an all-zero row for empty text).

        Bit for bit wordllama's `embed(..., norm=False)` normalised here, at a fraction of the cost:
        the ids come word by word from a memo (`_token_ids`), and each text's token vectors are summed
        in token order in float32 and divided by the token count, as wordllama's average pool does
        (its padding adds only zeros): `_pooled_sums`."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        table = self.model.embedding
        flat, lengths = self._token_ids([t[:TRUNCATE_CHARS] for t in texts])
        if len(flat) and (flat.min() < 0 or flat.max() >= len(table)):
            np.clip(flat, 0, len(table) - 1, out=flat)  # as wordllama does (never with its own vocabulary)
        starts = np.cumsum(lengths) - lengths
        sums = _pooled_sums()(table, flat, starts, lengths)
        # an empty text's sum is all +0.0, and stays so divided by 1
        vectors = sums / np.maximum(lengths, 1).astype(np.float32)[:, None]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)

    def _token_ids(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The ids wordllama's tokenizer gives each text (`encode(text, add_special_tokens=False)`),
        all texts' one after another, and each text's count.

        A word key k is tokenised as the BPE sees it in a text: SPACE + k (the normaliser's output
        for the text k, but for the empty key, whose word is SPACE alone), by the tokenizer's own
        model, skipping the normaliser, padding and post-processing a word does not need. The ids
        are gathered with NumPy: each distinct word's ids once, then every text's words as indices
        into them (one dictionary look-up per word, no Python list per text)."""
        tokenizer = self.model.tokenizer
        bpe = tokenizer.model
        keyed = [_word_keys(t) for t in texts]
        # the batch's distinct words, then its texts with an added token (each one "word": the whole)
        words = dict.fromkeys(chain.from_iterable(keys for keys in keyed if keys is not None))
        memo = self._words
        fresh = {key: [token.id for token in bpe.tokenize(_SPACE + key)] for key in words if key not in memo}
        kept = {key: ids for key, ids in fresh.items() if len(key) <= WORD_CHARS}
        if len(memo) + len(kept) > WORD_MEMO:  # full: keep only this batch's words
            memo = self._words = {key: memo[key] for key in words if key in memo}
        memo.update(kept)
        # long words are this call's only
        pieces = [ids if (ids := memo.get(key)) is not None else fresh[key] for key in words]
        whole = [t for t, keys in zip(texts, keyed, strict=True) if keys is None]
        pieces += _unpadded_ids(tokenizer, whole)
        index = dict(zip(words, range(len(words)), strict=True))
        at_whole = iter(range(len(words), len(pieces)))
        counts = np.fromiter(
            (1 if keys is None else len(keys) for keys in keyed), dtype=np.intp, count=len(keyed)
        )
        # each text's pieces, in order: indices into `pieces`
        of_text = np.fromiter(
            chain.from_iterable(
                (next(at_whole),) if keys is None else map(index.__getitem__, keys) for keys in keyed
            ),
            dtype=np.intp,
            count=int(counts.sum()),
        )
        piece_lengths = np.fromiter(map(len, pieces), dtype=np.intp, count=len(pieces))
        piece_ids = np.fromiter(chain.from_iterable(pieces), dtype=np.intp, count=int(piece_lengths.sum()))
        # the texts' ids: each piece's ids copied in turn, from where they sit in `piece_ids` to
        # where they go in the output
        sizes = piece_lengths[of_text]
        ends = np.cumsum(sizes)
        shift = (np.cumsum(piece_lengths) - piece_lengths)[of_text] - (ends - sizes)
        gather = np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(shift, sizes)
        # a text's count: the sum of its pieces' (consecutive in `of_text`)
        lengths = np.diff(np.concatenate(([0], ends))[np.cumsum(counts)], prepend=0)
        return piece_ids[gather], lengths

    def embed_calls(self, calls: list[CallView]) -> np.ndarray:
        return self.embed([call.prompt for call in calls])

    def analyze(self, call: CallView) -> SignalResult | None:
        return None  # a vector provider: use `embed`; there is no per-call score to give


def _pooled_sums_python(
    table: np.ndarray, ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Each text's sum of `table[id]` over its ids, in float32, from +0.0 and in token order: the
    additions NumPy makes for wordllama's pool, `table[tokens].sum(axis=1, dtype=np.float32)` over
    a (texts, tokens, dims) array (the dims are its innermost loop, so each dim's sum runs along the
    tokens one by one, from the identity +0.0). Row by row here, without the gathered array."""
    out = np.zeros((starts.shape[0], table.shape[1]), dtype=np.float32)
    for t in range(starts.shape[0]):
        row = out[t]
        for j in range(starts[t], starts[t] + lengths[t]):
            vector = table[ids[j]]
            for d in range(row.shape[0]):
                row[d] += vector[d]
    return out


_pooled_sums = compiled(_pooled_sums_python)


def _unpadded_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """`tokenizer.encode_batch` without the padding wordllama turns on for its batches (texts go in
    by length, ENCODE_CHUNK at a time, so that little padding is made and dropped)."""
    out: list[list[int]] = [[] for _ in texts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), ENCODE_CHUNK):
        chunk = order[start : start + ENCODE_CHUNK]
        encoded = tokenizer.encode_batch([texts[i] for i in chunk], add_special_tokens=False)
        for i, encoding in zip(chunk, encoded, strict=True):
            ids, mask = encoding.ids, encoding.attention_mask
            out[i] = ids if all(mask) else [token for token, real in zip(ids, mask, strict=True) if real]
    return out


def _word_keys(text: str) -> list[str] | None:
    """The words of `text` as the tokenizer's BPE sees them, each without its first space (it sees
    SPACE + key); None for a text with an added token in it (tokenised whole).

    The normaliser gives SPACE + text with each space turned into SPACE, and the BPE runs over all of
    it at once. No token in the vocabulary has SPACE after another character (checked in the tests),
    so no merge joins a word to the spaces before the next one: cut before each run of spaces, the
    pieces' BPEs give together the ids of the whole (merges of equal rank go left to right in both)."""
    if any(token in text for token in _ADDED):
        return None
    if not text:
        return []
    if _SPACE in text:
        text = text.replace(_SPACE, " ")
    keys = text.split(" ")
    if "" in keys:  # runs of spaces, or a space at either end: cut where a run starts
        return [word[1:] for word in _WORD.findall(_SPACE + text.replace(" ", _SPACE))]
    return keys
