"""Credential stripping: the rules on small bodies, and the proof that no secret of the fixtures
reaches the written store or the rejects file."""

from __future__ import annotations

import copy
import doctest
import json
from pathlib import Path
from typing import Any

import pytest

from distillguard.events import credentials
from distillguard.events.credentials import is_secret_key, may_hold_secret, strip_credentials
from distillguard.events.readers import ReaderOptions, iter_events
from distillguard.events.store import CallStore

FIXTURES = Path(__file__).parent / "fixtures"
SECRET_MARK = "TOPSECRET"  # every secret in the fixtures contains it, and nothing else does


@pytest.mark.parametrize(
    ("body", "expected", "removed"),
    [
        ({"model": "m", "api_key": "sk-1"}, {"model": "m"}, 1),
        (
            {"apiKey": "x", "headers": {"Authorization": "Bearer abcdefghij", "Accept": "json"}},
            {"headers": {"Accept": "json"}},
            2,
        ),
        ({"metadata": {"deep": [{"X-Api-Key": "k", "keep": 1}]}}, {"metadata": {"deep": [{"keep": 1}]}}, 1),
        ({"note": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc"}, {}, 1),  # a credential value under any key
        ({"list": ["Basic dXNlcjpwYXNzd29yZA==", "keep"]}, {"list": ["keep"]}, 1),
        ({"client_secret": "s", "password": "p", "Cookie": "c", "aws_secret_access_key": "a"}, {}, 4),
        (
            {
                "messages": [{"role": "user", "content": "What is a bearer bond?"}],
                "max_tokens": 5,
                "key_id": "k",
            },
            {
                "messages": [{"role": "user", "content": "What is a bearer bond?"}],
                "max_tokens": 5,
                "key_id": "k",
            },
            0,
        ),
    ],
)
def test_strip_credentials(body: dict[str, Any], expected: dict[str, Any], removed: int) -> None:
    work = copy.deepcopy(body)
    assert strip_credentials(work) == removed
    assert work == expected


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("Authorization", True),
        ("x-api-key", True),
        ("api.key", True),
        ("token", True),
        ("max_tokens", False),
        ("key_id", False),
    ],
)
def test_is_secret_key(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


@pytest.mark.parametrize(
    "raw",
    [
        b'{"Authorization": "x"}',
        b'{"api_key": "x"}',
        b'{"\\u0061pi_key": "x"}',
        b'{"h": "Bearer abc"}',
        b'{"token": 1}',
    ],
)
def test_prefilter_never_misses_a_line_the_walk_would_change(raw: bytes) -> None:
    assert may_hold_secret(raw)


SOURCES = [
    ("canonical", ["canonical.jsonl"], None),
    (
        "openai-batch",
        ["openai_batch_input.jsonl", "openai_batch_output.jsonl", "openai_batch_errors.jsonl"],
        "acct-b",
    ),
    ("litellm", ["litellm_payload.jsonl", "litellm_spend_logs.jsonl"], None),
    ("otel-genai", ["otel_otlp.jsonl", "otel_flat.jsonl"], None),
]


@pytest.mark.parametrize(("fmt", "names", "account"), SOURCES)
def test_no_secret_reaches_the_store_or_the_rejects_file(
    tmp_path: Path, fmt: str, names: list[str], account: str | None
) -> None:
    files = [FIXTURES / n for n in names]
    assert any(SECRET_MARK in f.read_text() for f in files), (
        "the fixture must hold a secret to prove anything"
    )
    store_path = tmp_path / "store"
    items = iter_events(files, fmt, ReaderOptions(account=account))
    stats = CallStore.ingest(store_path, items, sources=[str(f) for f in files], allow_rejects=True)
    assert stats.committed and stats.events > 0
    # Parquet pages are compressed, so the check reads every value back rather than grepping bytes.
    table = CallStore.open(store_path).connect().sql("SELECT * FROM calls").to_arrow_table()
    assert table.num_rows == stats.events
    assert SECRET_MARK not in json.dumps(table.to_pylist(), default=str)
    for path in store_path.rglob("*"):
        if path.is_file() and path.suffix != ".parquet":  # rejects file and manifest
            assert SECRET_MARK.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "raw",
    [
        b'{"Authorization": "x"}',
        b'{"h": {"X-API-KEY": "x"}}',
        b'{"\\u0061pi_key": "x"}',
        b'{"max_tokens": 5, "key_id": "k", "messages": []}',
        b'{"content": "plain text"}',
    ],
)
def test_prefilter_gives_the_same_answer_without_hyperscan(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_scanner = may_hold_secret(raw)
    monkeypatch.setattr(credentials, "_HINT_SCANNER", None)
    assert may_hold_secret(raw) is with_scanner


def test_docstring_examples() -> None:
    assert doctest.testmod(credentials, raise_on_error=True).attempted >= 3
