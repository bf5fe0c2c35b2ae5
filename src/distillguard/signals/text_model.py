"""Small trained text classifiers shipped as plain arrays (.npz, no pickle): hashed byte n-grams of
the lower-cased prompt, and logistic-regression weights over them.

Byte n-grams read every script the same way (CJK needs no word splitter) and hash in a few vectorised
numpy passes; scikit-learn's HashingVectorizer, measured on ShareGPT prompts, cost 75 µs per prompt
in batches and 420 µs for a single prompt, this costs ~10 µs and ~60 µs. Every classifier uses the
same hashing, so a batch is hashed once and scored by all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent / "models"

HASHING: dict[str, Any] = {"scheme": "fnv1a-bytes-v1", "n_features": 2**18, "sizes": [3, 5, 7]}
# The model reads at most this much of a prompt: head and tail, where templates put instructions.
MODEL_HEAD_CHARS = 1200
MODEL_TAIL_CHARS = 400

_FNV_OFFSET = np.uint32(2166136261)
_FNV_PRIME = np.uint32(16777619)
_MIX = np.uint32(0x2C1B3C6D)


def model_text(text: str) -> str:
    if len(text) <= MODEL_HEAD_CHARS + MODEL_TAIL_CHARS:
        return text
    return text[:MODEL_HEAD_CHARS] + " " + text[-MODEL_TAIL_CHARS:]


@dataclass(frozen=True, slots=True)
class HashedGrams:
    """Every n-gram of a batch as (document, feature) pairs, and each document's n-gram count."""

    documents: np.ndarray  # int32, one entry per n-gram
    features: np.ndarray  # uint32 feature index, one entry per n-gram
    counts: np.ndarray  # n-grams per document

    @property
    def scale(self) -> np.ndarray:
        # each n-gram weighs 1/sqrt(n-grams in its document): long and short prompts score alike
        return 1.0 / np.sqrt(np.maximum(self.counts, 1))


def hash_grams(texts: list[str]) -> HashedGrams:
    """FNV-1a hashes of the byte n-grams (HASHING["sizes"]) of each lower-cased text."""
    n_features = int(HASHING["n_features"])
    sizes = tuple(HASHING["sizes"])
    encoded = [model_text(t).lower().encode("utf-8", "surrogatepass") for t in texts]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    total = int(lengths.sum())
    longest = max(sizes)
    buffer = np.zeros(total + longest, dtype=np.uint32)
    buffer[:total] = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    document = np.repeat(np.arange(len(encoded), dtype=np.int32), lengths)
    # bytes from each position to the end of its document: an n-gram must not cross into the next
    remaining = np.repeat(np.cumsum(lengths), lengths) - np.arange(total)
    documents, features = [], []
    rolling = np.full(total, _FNV_OFFSET, dtype=np.uint32)
    for k in range(1, longest + 1):
        rolling ^= buffer[k - 1 : k - 1 + total]
        rolling *= _FNV_PRIME
        if k in sizes:
            mixed = rolling * _MIX
            mixed ^= mixed >> np.uint32(15)
            valid = remaining >= k
            documents.append(document[valid])
            features.append(mixed[valid] & np.uint32(n_features - 1))
    all_documents = np.concatenate(documents) if documents else np.zeros(0, np.int32)
    return HashedGrams(
        documents=all_documents,
        features=np.concatenate(features) if features else np.zeros(0, np.uint32),
        counts=np.bincount(all_documents, minlength=len(texts)),
    )


def feature_matrix(texts: list[str]) -> Any:
    """The same features as a sparse matrix (CSR, float32), for training."""
    from scipy.sparse import csr_matrix

    grams = hash_grams(texts)
    values = grams.scale[grams.documents].astype(np.float32)
    matrix = csr_matrix(
        (values, (grams.documents, grams.features)), shape=(len(texts), int(HASHING["n_features"]))
    )
    matrix.sum_duplicates()
    return matrix


class _LastBatch:
    """The hashes of the last batches: the prompt classifiers run one after another over the same
    calls, and only the first of them should pay for hashing. Two batches are kept, because the
    answer classifier (reasoning_leak) runs between them over other texts."""

    KEEP = 2

    def __init__(self) -> None:
        self.batches: dict[tuple[str, ...], HashedGrams] = {}

    def of(self, texts: list[str]) -> HashedGrams:
        key = tuple(texts)
        grams = self.batches.get(key)
        if grams is None:
            if len(self.batches) >= self.KEEP:
                del self.batches[next(iter(self.batches))]  # the oldest
            grams = self.batches[key] = hash_grams(texts)
        return grams


_LAST = _LastBatch()


@dataclass(frozen=True)
class TextClassifier:
    name: str
    coef: np.ndarray  # one weight per hashed feature (float16 when loaded from an artifact)
    intercept: float
    threshold: float  # probability chosen on dev families (see training.dev_threshold)
    metadata: dict[str, Any] = field(default_factory=dict)

    def logits(self, texts: list[str]) -> np.ndarray:
        grams = _LAST.of(texts)
        sums = np.bincount(grams.documents, weights=self.coef[grams.features], minlength=len(texts))
        return np.asarray(sums * grams.scale + self.intercept)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """The logistic-regression probability (its scale depends on the class balance in training)."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(1.0 / (1.0 + np.exp(-self.logits(texts))), dtype=np.float32)

    def scores(self, texts: list[str]) -> np.ndarray:
        """The probability shifted in log-odds so the shipped threshold maps to 0.5: every signal
        "fires" at 0.5, and a model score reads the same way as a rule score."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        t = min(max(self.threshold, 1e-6), 1 - 1e-6)
        shift = np.log(t / (1 - t))
        return np.asarray(1.0 / (1.0 + np.exp(-(self.logits(texts) - shift))), dtype=np.float32)

    def save(self, path: Path) -> None:
        meta = dict(self.metadata, name=self.name, hashing=HASHING)
        np.savez_compressed(
            path,
            coef=self.coef.astype(np.float16),
            intercept=np.float64(self.intercept),
            threshold=np.float64(self.threshold),
            metadata=np.array(json.dumps(meta, sort_keys=True)),
        )

    @classmethod
    def load(cls, path: Path) -> TextClassifier:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["metadata"]))
            hashing = meta.get("hashing", {})
            if hashing != HASHING:
                raise ValueError(
                    f"{path}: field 'hashing' is {hashing}, this code expects {HASHING}: retrain"
                )
            # kept in float16 as stored: half the memory, and the per-n-gram gather (the cost of
            # scoring) runs ~2x faster from a table that fits the CPU cache better
            coef = data["coef"].astype(np.float16)
            if coef.shape != (HASHING["n_features"],):
                raise ValueError(f"{path}: field 'coef' has shape {coef.shape}")
            return cls(
                name=str(meta["name"]),
                coef=coef,
                intercept=float(data["intercept"]),
                threshold=float(data["threshold"]),
                metadata=meta,
            )


@cache
def load_classifier(name: str, models_dir: Path = MODELS_DIR) -> TextClassifier:
    path = models_dir / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"no trained model for signal {name!r} at {path}; build it with "
            "`distillguard train signals --corpus ../shared/data`, or use mode='rules'"
        )
    return TextClassifier.load(path)
