from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distillguard.corpus.corpus import SplitTable
from distillguard.signals import text_model
from distillguard.signals.text_model import (
    HASHING,
    TextClassifier,
    feature_matrix,
    hash_grams,
    load_classifier,
)


def _toy(name: str = "toy") -> TextClassifier:
    coef = np.zeros(HASHING["n_features"], dtype=np.float32)
    # weight the hashed features of the word "judge" only
    coef[hash_grams(["judge"]).features] = 20.0
    return TextClassifier(name=name, coef=coef, intercept=-4.0, threshold=0.5, metadata={"note": "toy"})


def test_round_trip_through_npz_without_pickle(tmp_path: Path) -> None:
    toy = _toy()
    toy.save(tmp_path / "toy.npz")
    loaded = TextClassifier.load(tmp_path / "toy.npz")
    probabilities = loaded.probabilities(["act as a judge", "bake some bread"])
    assert probabilities[0] > 0.9 > 0.1 > probabilities[1]
    assert loaded.metadata["note"] == "toy" and loaded.threshold == 0.5
    with np.load(tmp_path / "toy.npz", allow_pickle=False) as data:  # plain arrays only
        assert set(data.files) == {"coef", "intercept", "threshold", "metadata"}


def test_artifact_with_other_hashing_is_refused(tmp_path: Path, monkeypatch) -> None:
    _toy().save(tmp_path / "toy.npz")
    monkeypatch.setitem(text_model.HASHING, "n_features", 2**10)
    with pytest.raises(ValueError, match="field 'hashing'"):
        TextClassifier.load(tmp_path / "toy.npz")


def test_missing_artifact_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="distillguard train signals"):
        load_classifier("nothing_here", tmp_path)


def test_fast_scores_equal_the_matrix_product(tmp_path: Path) -> None:
    toy = _toy()
    texts = ["act as a judge", "思考过程", "", "x" * 5000, "Judge JUDGE judge"]
    expected = 1 / (1 + np.exp(-(feature_matrix(texts) @ toy.coef + toy.intercept)))
    np.testing.assert_allclose(toy.probabilities(texts), expected, rtol=1e-5)


@pytest.mark.parametrize(("text", "grams"), [("", 0), ("ab", 0), ("abc", 1), ("abcde", 3 + 1), ("思", 1)])
def test_ngram_counts_stay_inside_each_text(text: str, grams: int) -> None:
    batch = hash_grams([text, "zzzzzzzz"])  # the neighbour must not leak n-grams into `text`
    assert batch.counts[0] == grams


ORDINARY_PROMPT = "What is the capital of France?"
# reasoning_leak's classifier reads answers of at least 150 characters
ORDINARY_ANSWER = (
    "Paris is the capital of France and its largest city, with about two million people in the city "
    "proper. It is known for the Eiffel Tower, the Louvre and its cafés, and it sits on the Seine."
)


@pytest.mark.parametrize(
    ("name", "ordinary"),
    [
        ("cot_extraction", ORDINARY_PROMPT),
        ("grading_request", ORDINARY_PROMPT),
        ("generation_request", ORDINARY_PROMPT),
        ("reasoning_leak", ORDINARY_ANSWER),
    ],
)
def test_shipped_artifact_loads_without_training_data(name: str, ordinary: str) -> None:
    classifier = TextClassifier.load(text_model.MODELS_DIR / f"{name}.npz")
    assert classifier.name == name
    assert (text_model.MODELS_DIR / f"{name}.npz").stat().st_size < 2_000_000
    assert 0.0 < classifier.threshold < 1.0
    # trained on train families, thresholded on dev families: test families never seen
    assert not any(f in classifier.metadata["dev_families"] for f in classifier.metadata["train_families"])
    split_of = SplitTable().split_of
    assert {split_of[f] for f in classifier.metadata["train_families"]} == {"train"}
    assert {split_of[f] for f in classifier.metadata["dev_families"]} == {"dev"}
    assert "hard_negative_weight" in classifier.metadata  # trained with the hard negatives
    scores = classifier.scores([ordinary])
    assert scores.shape == (1,) and 0.0 <= float(scores[0]) < 0.5


def test_two_batches_are_encoded_once_each() -> None:
    prompts, answers = ["act as a judge"], ["The answer is 4 because 2 + 2 = 4."]
    first = text_model._LAST.of(prompts)
    text_model._LAST.of(answers)
    assert text_model._LAST.of(prompts) is first  # the answer batch did not evict the prompts


@pytest.mark.parametrize("block", [1, 3, 7, 8, 64, 1024])
def test_compiled_sums_score_exactly_as_the_per_size_hashes(monkeypatch, block: int) -> None:
    """`logits` (every size hashed in one compiled pass, a block of positions at a time, four
    partial sums) gives bit-identical values to the reference: `hash_grams`' per-size n-grams
    summed with bincount, for the shipped float16 weights, whatever the block size and wherever
    texts end inside a block."""
    model = load_classifier("reasoning_leak")
    monkeypatch.setattr(text_model, "_BLOCK", block)
    rng = np.random.default_rng(block)
    alphabet = list("ab c思é\n<>#")
    for _ in range(40):
        lengths = rng.choice([0, 1, 2, 3, 6, 7, 8, 9, 50, 700, 2100], size=int(rng.integers(1, 12)))
        texts = ["".join(rng.choice(alphabet, size=int(n))) for n in lengths]
        grams = hash_grams(texts)
        expected = (
            np.bincount(grams.documents, weights=model.coef[grams.features], minlength=len(texts))
            * grams.scale
            + model.intercept
        )
        text_model._LAST.batches.clear()
        assert np.array_equal(model.logits(texts), expected)
    assert model.logits([]).shape == (0,)
