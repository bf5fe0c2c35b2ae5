"""Small trained text classifiers shipped as plain arrays (.npz, no pickle): hashed byte n-grams of
the lower-cased prompt, and logistic-regression weights over them.

Byte n-grams read every script the same way (CJK needs no word splitter). `hash_grams` is the
definition (NumPy, used for training); scoring runs the same hashes in one compiled pass over the
bytes (`_weight_sums`, Numba), ~2 ns per byte. scikit-learn's HashingVectorizer, measured on
ShareGPT prompts, cost 75 µs per prompt in batches and 420 µs for a single prompt. Every classifier
uses the same hashing, so a batch is lower-cased and encoded once and scored by all of them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np

from distillguard.compiled import compiled

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


@dataclass(frozen=True, slots=True)
class EncodedTexts:
    """A batch as the classifiers read it: each text's `model_text`, lower-cased, UTF-8, one buffer."""

    data: np.ndarray  # uint8, the texts one after another, then max(sizes) zero bytes
    starts: np.ndarray  # int64, each text's first byte
    lengths: np.ndarray  # int64, each text's bytes
    scale: np.ndarray  # 1/sqrt(n-grams) per text, as `HashedGrams.scale` (counted from the lengths)


def encode_texts(texts: list[str]) -> EncodedTexts:
    encoded = [model_text(t).lower().encode("utf-8", "surrogatepass") for t in texts]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    # padded at the end: `_weight_sums` hashes a block's positions up to the longest size ahead
    data = np.frombuffer(b"".join(encoded) + bytes(max(HASHING["sizes"])), dtype=np.uint8)
    sizes = np.asarray(HASHING["sizes"], dtype=np.int64)[:, None]
    counts = np.maximum(lengths[None, :] - sizes + 1, 0).sum(axis=0)
    return EncodedTexts(
        data=data,
        starts=np.cumsum(lengths) - lengths,
        lengths=lengths,
        scale=1.0 / np.sqrt(np.maximum(counts, 1)),
    )


_BLOCK = 1024  # positions per block of `_weight_sums` (4 KiB of hashes: the CPU's L1 cache)


def _weight_sums_python(data, starts, lengths, table, sizes, mask, block):
    """Each text's sum of `table[feature]` over its n-grams, in float64: the n-gram of size k at
    byte i hashed exactly as `hash_grams` does (FNV-1a over its bytes, then mixed), no n-gram
    running past its text's end. A block of positions at a time: each FNV step runs over the
    whole block (a loop the compiler turns into vector instructions), and the weights of each
    size are added as its step passes. `data` carries `sizes[-1]` bytes of padding at its end."""
    out = np.zeros(starts.shape[0])
    longest = sizes[sizes.shape[0] - 1]
    rolling = np.empty(block, dtype=np.uint32)
    index = np.empty(block, dtype=np.uint32)
    prime, mix = np.uint32(16777619), np.uint32(0x2C1B3C6D)
    low32 = np.uint64(0xFFFFFFFF)
    for t in range(starts.shape[0]):
        end = starts[t] + lengths[t]
        # four partial sums: one would wait on the previous addition at every n-gram
        s0 = s1 = s2 = s3 = 0.0
        for a in range(starts[t], end, block):
            m = min(block, end - a)
            hashes = rolling[:m]
            hashes[:] = np.uint32(2166136261)
            s = 0
            for k in range(longest):
                # written over slices: the form Numba's compiler turns into vector instructions
                # (the products are computed wider and kept modulo 2**32 as they are stored)
                ahead = data[a + k : a + k + m]
                for j in range(m):
                    hashes[j] = (hashes[j] ^ ahead[j]) * prime
                if k + 1 == sizes[s]:
                    # the n-grams of this size that start at a .. a + valid - 1 end inside the text
                    valid = min(m, end - a - k)
                    features = index[:valid]
                    for j in range(valid):
                        mixed = (hashes[j] * mix) & low32
                        features[j] = (mixed ^ (mixed >> 15)) & mask
                    j = 0
                    while j + 4 <= valid:
                        s0 += table[features[j]]
                        s1 += table[features[j + 1]]
                        s2 += table[features[j + 2]]
                        s3 += table[features[j + 3]]
                        j += 4
                    while j < valid:
                        s0 += table[features[j]]
                        j += 1
                    s += 1
        out[t] = (s0 + s1) + (s2 + s3)
    return out


_weight_sums = compiled(_weight_sums_python)


class _LastBatch:
    """The encoded texts of the last batches: the prompt classifiers run one after another over the
    same calls, and only the first of them should pay for lower-casing and encoding. Two batches
    are kept, because the answer classifier (reasoning_leak) runs between them over other texts."""

    KEEP = 2

    def __init__(self) -> None:
        self.batches: dict[tuple[str, ...], EncodedTexts] = {}

    def of(self, texts: list[str]) -> EncodedTexts:
        key = tuple(texts)
        encoded = self.batches.get(key)
        if encoded is None:
            if len(self.batches) >= self.KEEP:
                del self.batches[next(iter(self.batches))]  # the oldest
            encoded = self.batches[key] = encode_texts(texts)
        return encoded


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
        """The weights as float32 when that holds them exactly (the compiled sum reads float32
        faster than float16, which it would widen in software), float64 otherwise."""
        exact = np.float32 if self.coef.dtype in (np.float16, np.float32) else np.float64
        return np.ascontiguousarray(self.coef, dtype=exact)

    def logits(self, texts: list[str], encoded: EncodedTexts | None = None) -> np.ndarray:
        """Each text's sum of the weights of its n-grams, scaled, plus the intercept: one compiled
        pass over the bytes (`_weight_sums`), no n-gram array in memory.

        Summed per text in position order, in float64: the order differs from a per-size sum,
        the value does not, because float16 weights (the shipped artifacts) add up exactly in
        float64 (each is a multiple of 2**-24 below 2**16, and a text has fewer than 2**13 n-grams)."""
        if encoded is None:  # else `encode_texts(texts)`, shared by the caller's classifiers
            encoded = _LAST.of(texts)
        sizes = np.asarray(sorted(HASHING["sizes"]), dtype=np.int64)
        mask = np.uint64(int(HASHING["n_features"]) - 1)
        sums = _weight_sums()(encoded.data, encoded.starts, encoded.lengths, self._table, sizes, mask, _BLOCK)
        return np.asarray(sums * encoded.scale + self.intercept)

    def probabilities(self, texts: list[str], encoded: EncodedTexts | None = None) -> np.ndarray:
        """The logistic-regression probability (its scale depends on the class balance in training)."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(1.0 / (1.0 + np.exp(-self.logits(texts, encoded))), dtype=np.float32)

    def scores(self, texts: list[str], encoded: EncodedTexts | None = None) -> np.ndarray:
        """The probability shifted in log-odds so the shipped threshold maps to 0.5: every signal
        "fires" at 0.5, and a model score reads the same way as a rule score."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        t = min(max(self.threshold, 1e-6), 1 - 1e-6)
        shift = np.log(t / (1 - t))
        return np.asarray(1.0 / (1.0 + np.exp(-(self.logits(texts, encoded) - shift))), dtype=np.float32)

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
