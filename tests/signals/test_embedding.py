from __future__ import annotations

import socket

import numpy as np
import pytest

from distillguard.signals.embedding import DIMENSIONS, Embedding


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
