"""embedding: a semantic vector of the prompt, for prompt diversity and topic coverage per account.

A vector provider, not a score: `embed(texts)` returns L2-normalised float32 rows. The model is
wordllama's static embeddings, whose weights ship inside the wheel; it is loaded offline (never a
download) and lazily, on the first `embed`.
"""

from __future__ import annotations

import os
import shutil
import threading
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

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = load_wordllama(self._cache_dir)
            return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised float32 row of DIMENSIONS per text (an all-zero row for empty text)."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        vectors = np.asarray(
            self.model.embed([t[:TRUNCATE_CHARS] for t in texts], batch_size=BATCH_SIZE, norm=False),
            dtype=np.float32,
        )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)

    def embed_calls(self, calls: list[CallView]) -> np.ndarray:
        return self.embed([call.prompt for call in calls])

    def analyze(self, call: CallView) -> SignalResult | None:
        return None  # a vector provider: use `embed`; there is no per-call score to give
