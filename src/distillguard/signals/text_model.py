"""Small trained text classifiers shipped as plain arrays (.npz, no pickle): hashed byte n-grams of
the lower-cased prompt, and logistic-regression weights over them.

Byte n-grams read every script the same way (CJK needs no word splitter) and hash in a few vectorised
numpy passes; scikit-learn's HashingVectorizer, measured on ShareGPT prompts, cost 75 µs per prompt
in batches and 420 µs for a single prompt, this costs ~10 µs and ~60 µs. Every classifier uses the
same hashing, so a batch is hashed once and scored by all of them.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from functools import cache, cached_property
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


# Positions hashed per step of `pack_grams` and scored per step of `TextClassifier.logits`: the
# working arrays of one step (~0.5 MiB) stay in the CPU's L2 cache. Measured on the answers of a
# default-preset batch (2.8 MB of text): 64 MiB-sized passes over the whole batch took ~75 ms to
# hash and ~60 ms to score, these ~14 ms and ~12 ms.
CHUNK_BYTES = 1 << 15
SHORT_STEP = 1 << 12


@dataclass(frozen=True, slots=True)
class PackedGrams:
    """The n-gram features of a batch laid out by position: `features[s, i]` is the feature of the
    n-gram of size `HASHING["sizes"][s]` that starts at byte `i` of the concatenated texts, or
    `n_features` (a feature of weight 0) where that n-gram would run past the end of its text.
    The same n-grams as `hash_grams`, without sorting them out per size."""

    features: np.ndarray  # uint32, shape (len(sizes), total bytes)
    starts: np.ndarray  # int64, each text's first byte
    lengths: np.ndarray  # int64, each text's bytes
    counts: np.ndarray  # n-grams per text (as `HashedGrams.counts`)

    @property
    def scale(self) -> np.ndarray:
        return 1.0 / np.sqrt(np.maximum(self.counts, 1))


def pack_grams(texts: list[str]) -> PackedGrams:
    """`hash_grams` as `PackedGrams`: the same FNV-1a hashes, computed a cache-sized chunk of
    positions at a time with in-place NumPy operations and no per-size filtering (few NumPy calls
    per chunk: a single prompt, the gateway's case, costs no more than a batch's share)."""
    n_features = int(HASHING["n_features"])
    sizes = tuple(HASHING["sizes"])
    longest = max(sizes)
    encoded = [model_text(t).lower().encode("utf-8", "surrogatepass") for t in texts]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    total = int(ends[-1]) if len(ends) else 0
    chunk = min(CHUNK_BYTES, max(total, 1))
    buffer = np.zeros(total + longest, dtype=np.uint32)
    buffer[:total] = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    features = np.empty((len(sizes), total), dtype=np.uint32)
    rolling = np.empty(chunk, dtype=np.uint32)
    mixed = np.empty(chunk, dtype=np.uint32)
    shifted = np.empty((len(sizes), chunk), dtype=np.uint32)
    mask, fifteen = np.uint32(n_features - 1), np.uint32(15)
    row_of = {k: s for s, k in enumerate(sizes)}
    for a in range(0, total, chunk):
        m = min(chunk, total - a)
        r, block, sh = rolling[:m], features[:, a : a + m], shifted[:, :m]
        # a short step (one prompt) mixes every size at once: fewer NumPy calls; a long one mixes
        # each size from the rolling hash as it passes (no copy)
        together = m < SHORT_STEP
        r.fill(_FNV_OFFSET)
        for k in range(1, longest + 1):
            np.bitwise_xor(r, buffer[a + k - 1 : a + k - 1 + m], out=r)
            np.multiply(r, _FNV_PRIME, out=r)
            if k in row_of:
                if together:
                    block[row_of[k]] = r
                    continue
                mx = mixed[:m]
                np.multiply(r, _MIX, out=mx)
                np.right_shift(mx, fifteen, out=sh[0])
                np.bitwise_xor(mx, sh[0], out=mx)
                np.bitwise_and(mx, mask, out=block[row_of[k]])
        if together:
            np.multiply(block, _MIX, out=block)
            np.right_shift(block, fifteen, out=sh)
            np.bitwise_xor(block, sh, out=block)
            np.bitwise_and(block, mask, out=block)
    size_column = np.asarray(sizes, dtype=np.int64)[:, None]
    counts = np.maximum(lengths[None, :] - size_column + 1, 0).sum(axis=0)
    # the last k-1 positions of each text start no n-gram of size k
    back = np.arange(1, longest)
    position = ends[:, None] - back[None, :]  # text x positions back from its end
    outside = (position[None, :, :] >= starts[None, :, None]) & (
        back[None, None, :] < size_column[:, :, None]
    )
    size, text, step = np.nonzero(outside)
    features[size, position[text, step]] = n_features
    return PackedGrams(features=features, starts=starts, lengths=lengths, counts=counts)


class _LastBatch:
    """The hashes of the last batches: the prompt classifiers run one after another over the same
    calls, and only the first of them should pay for hashing. Two batches are kept, because the
    answer classifier (reasoning_leak) runs between them over other texts."""

    KEEP = 2

    def __init__(self) -> None:
        self.batches: dict[tuple[str, ...], PackedGrams] = {}

    def of(self, texts: list[str]) -> PackedGrams:
        key = tuple(texts)
        grams = self.batches.get(key)
        if grams is None:
            if len(self.batches) >= self.KEEP:
                del self.batches[next(iter(self.batches))]  # the oldest
            grams = self.batches[key] = pack_grams(texts)
        return grams


_LAST = _LastBatch()


@dataclass(frozen=True)
class TextClassifier:
    name: str
    coef: np.ndarray  # one weight per hashed feature (float16 when loaded from an artifact)
    intercept: float
    threshold: float  # probability chosen on dev families (see training.dev_threshold)
    metadata: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def _table(self) -> np.ndarray:
        """The weights with a last entry of 0 (the feature of n-grams that run past a text's end),
        as float32 when that holds them exactly: NumPy gathers and widens float32 faster than
        float16."""
        exact = np.float32 if self.coef.dtype in (np.float16, np.float32) else np.float64
        return np.concatenate([self.coef.astype(exact), np.zeros(1, dtype=exact)])

    def logits(self, texts: list[str]) -> np.ndarray:
        """Each text's sum of the weights of its n-grams, scaled, plus the intercept.

        Summed per position over the sizes, then per text, in float64: the order differs from a
        per-size sum, the value does not, because float16 weights (the shipped artifacts) add up
        exactly in float64 (each is a multiple of 2**-24 below 2**16, and a text has fewer than
        2**13 n-grams)."""
        grams = _LAST.of(texts)
        table = self._table
        sums = np.zeros(len(texts))
        filled = np.flatnonzero(grams.lengths > 0)
        first = grams.starts[filled]
        total = grams.features.shape[1]
        if total <= CHUNK_BYTES:  # one step (a single prompt): the fewest NumPy calls
            if len(filled):
                per_position = table[grams.features].sum(axis=0, dtype=np.float64)
                sums[filled] = np.add.reduceat(per_position, first)
            return np.asarray(sums * grams.scale + self.intercept)
        # steps of whole texts, about CHUNK_BYTES positions each
        cuts = sorted({*np.searchsorted(first, np.arange(0, total, CHUNK_BYTES)).tolist(), 0, len(filled)})
        bounds = [
            (lo, hi, int(first[lo]), int(first[hi]) if hi < len(filled) else total)
            for lo, hi in itertools.pairwise(cuts)
        ]
        # the working arrays of every step allocated once: a fresh array of this size per step is
        # mapped from and returned to the system each time (page faults cost more than the sums)
        longest = max(b - a for _, _, a, b in bounds)
        summed = np.empty(longest, dtype=np.float64)
        taken = np.empty(longest, dtype=table.dtype)
        for lo, hi, a, b in bounds:
            weights, gathered = summed[: b - a], taken[: b - a]
            np.take(table, grams.features[0, a:b], out=gathered)
            weights[...] = gathered  # widened exactly
            for row in grams.features[1:]:
                np.take(table, row[a:b], out=gathered)
                weights += gathered
            sums[filled[lo:hi]] = np.add.reduceat(weights, first[lo:hi] - a)
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
