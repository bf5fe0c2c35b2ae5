from __future__ import annotations

import socket

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.signals.embedding import DIMENSIONS, WORD_CHARS, Embedding


@pytest.fixture(scope="module")
def embedding(tmp_path_factory) -> Embedding:
    return Embedding(cache_dir=tmp_path_factory.mktemp("wordllama-cache"))


def test_loads_offline_and_embeds_normalised_rows(embedding: Embedding, monkeypatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("the embedding model tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    vectors = embedding.embed(["How do I sort a list in Python?", "Sorting a Python list", "Bake bread", ""])
    assert vectors.shape == (4, DIMENSIONS) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, rtol=1e-5)
    assert not vectors[3].any()
    # related prompts are closer than unrelated ones
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_is_a_vector_provider_not_a_score(embedding: Embedding, call_of) -> None:
    assert embedding.analyze(call_of("anything")) is None
    assert embedding.embed([]).shape == (0, DIMENSIONS)


def _wordllama_rows(embedding: Embedding, texts: list[str]) -> np.ndarray:
    """The definition: wordllama's own `embed` (padded batches, masked average pool), normalised."""
    from distillguard.signals.embedding import BATCH_SIZE, TRUNCATE_CHARS

    vectors = np.asarray(
        embedding.model.embed([t[:TRUNCATE_CHARS] for t in texts], batch_size=BATCH_SIZE, norm=False),
        dtype=np.float32,
    )
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def test_no_token_has_a_space_after_another_character(embedding: Embedding) -> None:
    # what makes tokenising word by word give the ids of the whole text (`_word_keys`)
    vocab = embedding.model.tokenizer.get_vocab()
    assert not [token for token in vocab if "\u2581" in token.lstrip("\u2581")]
    assert embedding.model.tokenizer.pre_tokenizer is None


_PIECES = [
    " ",
    "  ",
    "\n",
    "\t",
    "\u2581",
    "the",
    "The",
    "cat",
    "ing",
    "1234",
    "3.14",
    "é",
    "中文",
    "🙂",
    "<s>",
    "</s>",
    "<unk>",
    "<",
    "s>",
    "```",
    '"',
    "x" * 50,
    "Question:",
    "\r\n",
    "\u00a0",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.lists(st.sampled_from(_PIECES) | st.text(max_size=8), max_size=120).map("".join), max_size=20)
)
def test_embed_is_bit_identical_to_wordllama(embedding: Embedding, texts: list[str]) -> None:
    assert embedding.embed(texts).tobytes() == _wordllama_rows(embedding, texts).tobytes()


def test_embed_is_bit_identical_on_long_and_repeated_texts(embedding: Embedding) -> None:
    texts = [
        "Translate into French:  the quick brown fox " * 20,
        " leading and trailing ",
        "Question: what is 2 + 2?\nAnswer:",
        "Question: what is 2 + 2?\nAnswer:",
        "",
        "   ",
        "<s>[INST] hi [/INST]</s>",
    ]
    assert embedding.embed(texts).tobytes() == _wordllama_rows(embedding, texts).tobytes()
    assert embedding.embed(texts[::-1]).tobytes() == _wordllama_rows(embedding, texts[::-1]).tobytes()


def test_long_words_are_tokenised_but_not_remembered(embedding: Embedding) -> None:
    # a text without spaces is one word of hundreds of ids: remembering such words made the memo
    # gigabytes on Chinese or Japanese traffic
    texts = [
        "这是一个没有空格的很长的中文句子，用来检查记忆表不会无限增长。" * 8,
        "short words and " + "x" * (WORD_CHARS + 1) + " here",
        "これはスペースのない日本語の文です。" * 10 + " tail words",
    ]
    for _ in range(2):  # the second time, the short words come from the memo
        assert embedding.embed(texts).tobytes() == _wordllama_rows(embedding, texts).tobytes()
    assert embedding._words, "the short words are remembered"
    assert all(len(word) <= WORD_CHARS for word in embedding._words)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.lists(st.sampled_from(_PIECES) | st.text(max_size=8), max_size=120).map("".join), max_size=20)
)
def test_token_ids_are_the_tokenizers_ids_of_each_text(embedding: Embedding, texts: list[str]) -> None:
    # twice: the words tokenised afresh, then from the memo
    want = [embedding.model.tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
    for _ in range(2):
        flat, lengths = embedding._token_ids(texts)
        assert lengths.tolist() == [len(ids) for ids in want]
        assert flat.tolist() == [token for ids in want for token in ids]


def _pooled_sums_grouped(table: np.ndarray, flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The definition: texts of one token count gathered into a (texts, tokens, dims) array and
    summed over the tokens' axis by NumPy in float32, as wordllama's pool sums a padded batch."""
    from distillguard.signals.embedding import BATCH_SIZE

    starts = np.cumsum(lengths) - lengths
    sums = np.zeros((len(lengths), table.shape[1]), dtype=np.float32)
    for length in np.unique(lengths[lengths > 0]).tolist():
        same = np.flatnonzero(lengths == length)
        for part in range(0, len(same), BATCH_SIZE):
            rows = same[part : part + BATCH_SIZE]
            sums[rows] = table[flat[starts[rows][:, None] + np.arange(length)]].sum(axis=1, dtype=np.float32)
    return sums


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 300), max_size=80),
    scale=st.sampled_from([1.0, 1e-30, 1e30, 0.0]),
    seed=st.integers(0, 1000),
)
def test_pooled_sums_are_numpys_sums_over_the_tokens_axis(
    lengths: list[int], scale: float, seed: int
) -> None:
    from distillguard.signals.embedding import _pooled_sums

    rng = np.random.default_rng(seed)
    # values of every size and both zeros: any other order of additions rounds differently
    table = (rng.standard_normal((50, 16)) * scale * 10.0 ** rng.integers(-6, 7, (50, 16))).astype(np.float32)
    table[:5] = -0.0
    counts = np.array(lengths, dtype=np.intp)
    flat = rng.integers(0, len(table), int(counts.sum())).astype(np.intp)
    starts = np.cumsum(counts) - counts
    got = _pooled_sums()(table, flat, starts, counts)
    assert got.tobytes() == _pooled_sums_grouped(table, flat, counts).tobytes()
