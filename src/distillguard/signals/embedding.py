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

from distillguard.events.call_view import CallView
from distillguard.signals.base import Signal, SignalResult

MODEL_CONFIG = "l2_supercat"
DIMENSIONS = 256
# Tokenisation dominates the cost and grows with length; the head of a prompt carries its topic.
TRUNCATE_CHARS = 400
BATCH_SIZE = 64
# The tokenizer (Llama 2's: a BPE over the whole text, no pre-tokenizer, so nothing it computes is
# reused) costs most of an `embed`. The text is tokenised word by word instead, each word once and
# remembered, which gives the same ids: see `_word_keys`. Words remembered (a few tens of MB):
WORD_MEMO = 262_144
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
        self._word_tokenizer: Any = None
        self._text_tokenizer: Any = None

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
        (its padding adds only zeros)."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        table = self.model.embedding
        vectors = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        counts = np.ones(len(texts), dtype=np.float32)
        for row, ids in enumerate(self._token_ids([t[:TRUNCATE_CHARS] for t in texts])):
            if ids:
                tokens = np.asarray(ids, dtype=np.intp)
                np.clip(tokens, 0, len(table) - 1, out=tokens)
                vectors[row] = table.take(tokens, axis=0).sum(axis=0, dtype=np.float32)
                counts[row] = len(ids)
        vectors /= counts[:, None]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)

    def _tokenizers(self) -> tuple[Any, Any]:
        """wordllama's tokenizer without padding (for whole texts), and a copy without the
        normaliser (for words already normalised)."""
        if self._word_tokenizer is None:
            from tokenizers import Tokenizer, normalizers

            config = self.model.tokenizer.to_str()
            text = Tokenizer.from_str(config)
            text.no_padding()
            text.no_truncation()
            word = Tokenizer.from_str(config)
            word.normalizer = normalizers.Sequence([])
            word.no_padding()
            word.no_truncation()
            self._text_tokenizer, self._word_tokenizer = text, word
        return self._text_tokenizer, self._word_tokenizer

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """The ids wordllama's tokenizer gives each text (`encode(text, add_special_tokens=False)`)."""
        text_tokenizer, word_tokenizer = self._tokenizers()
        memo = self._words
        keyed = [_word_keys(t) for t in texts]
        known: dict[str, list[int]] = {}
        missing: dict[str, None] = {}
        for keys in keyed:
            for key in keys or ():
                if key not in known:
                    ids = memo.get(key)
                    if ids is None:
                        missing[key] = None
                    else:
                        known[key] = ids
        if missing:
            fresh = list(missing)
            encoded = word_tokenizer.encode_batch([_SPACE + key for key in fresh], add_special_tokens=False)
            for key, encoding in zip(fresh, encoded, strict=True):
                known[key] = encoding.ids
            if len(memo) + len(fresh) > WORD_MEMO:  # a full memo starts again
                memo.clear()
            memo.update((key, known[key]) for key in fresh)
        whole = [t for t, keys in zip(texts, keyed, strict=True) if keys is None]
        encoded_whole = iter(text_tokenizer.encode_batch(whole, add_special_tokens=False) if whole else ())
        return [
            next(encoded_whole).ids
            if keys is None
            else list(chain.from_iterable(map(known.__getitem__, keys)))
            for keys in keyed
        ]

    def embed_calls(self, calls: list[CallView]) -> np.ndarray:
        return self.embed([call.prompt for call in calls])

    def analyze(self, call: CallView) -> SignalResult | None:
        return None  # a vector provider: use `embed`; there is no per-call score to give


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
