"""Small trained text classifiers shipped as plain arrays (.npz, no pickle): hashed word and CJK
character n-grams into a fixed-width vector, and logistic-regression weights over it.

Every classifier uses the same hashing, so a prompt is vectorised once and scored by all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent / "models"

# Tokens: a CJK/kana character on its own (those scripts use no spaces), a run of word
# characters, or a run of punctuation (which keeps "[[A]]", "<|im_start|>" and "\boxed{}" visible).
TOKEN_PATTERN = (
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]|[^\W\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]+|[^\w\s]+"
)
HASHING = {"n_features": 2**18, "ngram_range": (1, 2), "token_pattern": TOKEN_PATTERN}
# The model reads at most this much of a prompt: head and tail, where templates put instructions.
MODEL_HEAD_CHARS = 1200
MODEL_TAIL_CHARS = 400


def model_text(text: str) -> str:
    if len(text) <= MODEL_HEAD_CHARS + MODEL_TAIL_CHARS:
        return text
    return text[:MODEL_HEAD_CHARS] + " " + text[-MODEL_TAIL_CHARS:]


@cache
def vectorizer() -> Any:
    # Imported here so that importing a signal does not import scikit-learn.
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        analyzer="word",
        lowercase=True,
        alternate_sign=False,
        norm="l2",
        dtype=np.float32,
        n_features=HASHING["n_features"],
        ngram_range=HASHING["ngram_range"],
        token_pattern=HASHING["token_pattern"],
    )


class _LastBatch:
    """The features of the last batch vectorised: the prompt classifiers run one after another
    over the same calls, and only the first of them should pay for tokenisation."""

    def __init__(self) -> None:
        self.key: tuple[str, ...] = ()
        self.matrix: Any = None

    def features(self, texts: list[str]) -> Any:
        key = tuple(texts)
        if self.matrix is None or key != self.key:
            self.matrix = vectorizer().transform([model_text(t) for t in texts])
            self.key = key
        return self.matrix


_LAST = _LastBatch()


def features(texts: list[str]) -> Any:
    """Sparse hashed features (CSR, float32) of `texts`, shared by every classifier."""
    return _LAST.features(texts)


@dataclass(frozen=True)
class TextClassifier:
    name: str
    coef: np.ndarray  # float32, one weight per hashed feature
    intercept: float
    threshold: float  # probability at which 1% of the dev negatives score higher
    metadata: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        logits = features(texts) @ self.coef + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float32)

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
            expected = json.loads(json.dumps(HASHING))
            if hashing != expected:
                raise ValueError(
                    f"{path}: field 'hashing' is {hashing}, this code expects {expected}: retrain"
                )
            coef = data["coef"].astype(np.float32)
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
