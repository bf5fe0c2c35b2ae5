"""Credential removal: every key shape found inside any string, every credential name however it
is spelled, text that must be left alone, the prefilter that decides whether to look at all, and
the proof that no secret seeded into each log format reaches the written store."""

from __future__ import annotations

import base64
import copy
import doctest
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.events import credentials
from distillguard.events.credentials import (
    SHAPES,
    is_secret_key,
    may_hold_secret,
    redact_text,
    strip_credentials,
    strip_event_credentials,
)
from distillguard.events.model import CallEvent, Client
from distillguard.events.readers import ReaderOptions, iter_events
from distillguard.events.store import CallStore

FIXTURES = Path(__file__).parent / "fixtures"
SECRET_MARK = "TOPSECRET"  # every secret in the fixtures contains it, and nothing else does


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


JWT = f"{_b64url({'alg': 'HS256', 'typ': 'JWT'})}.{_b64url({'sub': 'TOPSECRET-user'})}.TOPSECRETsig0123_-abc"
AWS_KEY_ID = "AKIA" + "TOPSECRETEXAMPL2"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiTOPSECRETKEY"
# fake secrets are assembled at run time, so no file of the repository looks like it holds one
PEM = (
    "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEATOPSECRET\nQ2x1ZGU=\n-----END RSA PRIVATE KEY-----"
)

# (kind, the secret, a string that holds it): the secret must be gone, the rest of the text kept.
SHAPE_CASES: list[tuple[str, str, str]] = [
    ("openai_key", s := "sk-proj-Zq8TOPSECRETx0a1b2c3d4e5f6g7h8i9j0kLmNoPqRsTuV", f"my key is {s}, why 401?"),
    ("openai_key", s := "sk-" + "0123TOPSECRET456789abcdefghijABCDEFGHIJkl", f"OPENAI_API_KEY={s}"),
    ("openai_key", s := "sk-svcacct-TOPSECRET_9a8b7c6d5e4f3g2h1", f"export KEY='{s}'"),
    ("anthropic_key", s := "sk-ant-api03-TOPSECRET0123456789abcdefghijklmnopqrstuvwxyz-AA", f"key: {s}"),
    ("google_api_key", s := "AIza" + "SyTOPSECRET0123456789abcdefghijklmnop"[:35], f"maps?{s}"),
    ("huggingface_token", s := "hf_" + "TOPSECRETabcdefghijklmnopqrstuvwxy", f"login with {s} please"),
    ("github_token", s := "ghp_" + "TOPSECRET0123456789abcdefghijklmnopq"[:36], f"git push {s}"),
    ("github_token", s := "gho_" + "TOPSECRET0123456789abcdefghijklmnopq"[:36], f"({s})"),
    ("github_token", s := "github_pat_11TOPSECRET0_" + "a" * 30 + "B" * 29, f"token {s}"),
    ("gitlab_token", s := "glpat-TOPSECRET0123456789ab", f"CI uses {s}"),
    ("stripe_key", s := "sk_live_TOPSECRET0123456789abcd", f"stripe {s}"),
    ("provider_key", s := "gsk_TOPSECRET0123456789abcdefghijklmnopqrstuvwxyz0123456", f"groq {s}"),
    ("aws_access_key_id", AWS_KEY_ID, f"aws id {AWS_KEY_ID} fails"),
    ("aws_access_key_id", s := "ASIA" + "TOPSECRETSESSION", f"temporary {s}"),
    ("aws_secret_access_key", AWS_SECRET, f"id {AWS_KEY_ID} secret {AWS_SECRET}"),
    ("slack_token", s := "xoxb-1234567890-TOPSECRET-abcdef", f"slack {s}"),
    ("slack_token", s := "xoxp-1234567890-0987654321-TOPSECRET", f"user token {s}"),
    ("jwt", JWT, f"decode this JWT: {JWT} thanks"),
    ("bearer_token", s := "TOPSECRET0123abcd", f"curl -H 'X: Bearer {s}'"),
    ("bearer_token", s := "TOPSECRETopaque", f"Bearer {s}"),  # a whole header value
    ("basic_credentials", s := base64.b64encode(b"ops:TOPSECRETpw").decode(), f"sent Basic {s} to it"),
    ("basic_credentials", s := base64.b64encode(b"a:TOPSECRET").decode(), f"Basic {s}"),
    ("assigned_secret", s := "TOPSECRETbearer1", f"Authorization: Bearer {s}"),
    ("assigned_secret", s := "TOPSECRETx", f'cfg = {{"api_key": "{s}", "model": "m"}}'),
    ("assigned_secret", s := "TOPSECRET horse", f"password = '{s}'"),
    ("assigned_secret", s := "TOPSECRET-hf", f"HF_TOKEN={s}"),
    ("assigned_secret", s := "TOPSECRET-aws", f"aws_secret_access_key = {s}"),
    ("cookie", s := "session=TOPSECRET; theme=dark", f"Cookie: {s}"),
    ("url_userinfo", s := "admin:TOPSECRETpw", f"connect to postgres://{s}@db.example.com:5432/x"),
    ("url_userinfo", s := "TOPSECRETtoken123", f"clone https://{s}@git.example.com/r.git"),
    ("url_query_secret", s := "TOPSECRETq1", f"GET https://api.example.com/v1?key={s}&page=2"),
    ("url_query_secret", s := "TOPSECRETq2", f"https://x.example/y?api_key={s}"),
    ("url_query_secret", s := "TOPSECRETq3", f"https://x.example/y?a=1&access_token={s}#frag"),
    ("url_query_secret", s := "TOPSECRETq4", f"wss://x.example/y?token={s}"),
    ("url_query_secret", s := "TOPSECRET%2Bq5", f"https://acct.blob.example/c?sv=2020&sig={s}"),
    ("url_query_secret", s := "TOPSECRETq6", f"https://b.s3.example/o?X-Amz-Signature={s}"),
    ("private_key", PEM, f"fix my config:\n{PEM}\nthanks"),
]


@pytest.mark.parametrize(("kind", "secret", "text"), SHAPE_CASES)
def test_each_shape_is_redacted_inside_any_string(kind: str, secret: str, text: str) -> None:
    redacted, count = redact_text(text)
    assert secret not in redacted
    assert f"[REDACTED:{kind}]" in redacted
    assert count >= 1
    # the text around the secret is kept: a prompt that quotes a key is still a prompt
    before = text.split(secret)[0]
    assert redacted.startswith(before[: max(0, len(before) - 30)])
    # as a mapping value, a list item and deep in metadata: always found
    body = {
        "messages": [{"role": "user", "content": text}],
        "stop": [text],
        "metadata": {"deep": {"x": text}},
    }
    assert strip_credentials(body) >= 3
    assert secret not in json.dumps(body)
    assert may_hold_secret(json.dumps({"content": text}).encode())


# Text that must come through unchanged, with why.
LEFT_ALONE: list[tuple[str, str]] = [
    ("prose about tokens", "How many tokens fit? An access token expires; the bearer of this note may pass."),
    ("prose: basic", "A basic introduction. Basic concepts first, then Bearer bonds and token economics."),
    (
        # A digest is one-way and public (checksums, commit ids, content hashes are everyday
        # prompt material); redacting it would damage code prompts and protect nothing.
        "sha256 digest",
        "Does sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d08f0a15b0f0a match?",
    ),
    ("sha1 hex, no AWS key id near", "commit 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12 broke it"),
    ("base64 in a translation task", "Translate from base64: SGVsbG8sIGhvdyBhcmUgeW91IHRvZGF5Pw=="),
    ("image data URL", "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"),
    ("hyphenated words after sk-", "use sk-learn-style-pipelines-for-everything and a task-scheduler-queue"),
    ("identifiers with key prefixes", "call hf_hub_download, read ghp_ docs, AKIA is a prefix, xoxb- too"),
    ("URL without credentials", "see https://example.com/search?q=token&page=2 and mail user@example.com"),
    ("a UUID", "request 123e4567-e89b-12d3-a456-426614174000 failed"),
    ("a JSON object of base64 in a prompt", "eyJoZWxsbyI6IndvcmxkIn0= is base64 of a JSON object"),
]


@pytest.mark.parametrize(("why", "text"), LEFT_ALONE)
def test_ordinary_text_is_left_alone(why: str, text: str) -> None:
    assert redact_text(text) == (text, 0), why
    body = {"messages": [{"role": "user", "content": text}]}
    assert strip_credentials(body) == 0
    assert body["messages"][0]["content"] == text


@pytest.mark.parametrize(
    "key",
    [
        "Authorization",
        "Proxy-Authorization",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "x.api.key",
        "x-auth-token",
        "X-Auth-Token",
        "user_api_key",
        "api_token",
        "hf_token",
        "HF-Token",
        "access_key",
        "secret_access_key",
        "secretAccessKey",
        "aws.access.key.id",
        "AWS_ACCESS_KEY_ID",
        "aws.secret.access.key",
        "private_key",
        "privateKey",
        "password",
        "db_password",
        "passphrase",
        "client_secret",
        "refresh_token",
        "id_token",
        "Cookie",
        "Set-Cookie",
        "Ocp-Apim-Subscription-Key",
        "credentials",
        "token",
    ],
)
def test_credential_names_in_every_spelling(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens",
        "max_completion_tokens",
        "key_id",
        "key",
        "token_count",
        "tokenizer",
        "eos_token",
        "next_page_token",
        "user_api_key_hash",
        "user_api_key_alias",
        "user_api_key_org_id",
        "logprobs",
        "top_logprobs",
        "keywords",
        "monkey",
    ],
)
def test_names_that_are_not_credentials(key: str) -> None:
    assert not is_secret_key(key)


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
        (
            {"metadata": {"user_api_key": "k", "user_api_key_hash": "h"}},
            {"metadata": {"user_api_key_hash": "h"}},
            1,
        ),
        (
            {"aws": {"aws.access.key.id": "plainvalue", "region": "eu"}},  # the only secret, named
            {"aws": {"region": "eu"}},
            1,
        ),
        ({"note": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc"}, {"note": "Bearer [REDACTED:jwt]"}, 1),
        (
            {"headers": ["Authorization: Bearer abcdefghij", "Accept: json"]},
            {"headers": ["Authorization: Bearer [REDACTED:assigned_secret]", "Accept: json"]},
            1,
        ),
        (
            {"list": ["Basic dXNlcjpwYXNzd29yZA==", "keep"]},
            {"list": ["Basic [REDACTED:basic_credentials]", "keep"]},
            1,
        ),
        ({"client_secret": "s", "password": "p", "Cookie": "c", "aws_secret_access_key": "a"}, {}, 4),
        ({"sk-proj-0123456789abcdefghijklmn": 1, "k": 2}, {"k": 2}, 1),  # a key named by a secret
        (  # an OpenAI logprobs entry names its text `token`: not a credential
            {"logprobs": {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}]}},
            {"logprobs": {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}]}},
            0,
        ),
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
    assert strip_credentials(work) == 0  # nothing left to take, and markers are not taken again


def test_aws_secret_key_is_taken_only_next_to_an_access_key_id() -> None:
    alone = {"content": f"what is {AWS_SECRET}?"}
    assert strip_credentials(alone) == 0  # 40 base64 characters alone are too common to take
    paired = {"a": f"id={AWS_KEY_ID}", "b": [f"secret {AWS_SECRET}"], "c": {"d": AWS_SECRET}}
    assert strip_credentials(paired) == 3
    assert AWS_SECRET not in json.dumps(paired) and AWS_KEY_ID not in json.dumps(paired)


def test_every_shape_in_the_table_has_a_case() -> None:
    kinds = {kind for kind, _secret, _text in SHAPE_CASES}
    assert {shape.kind for shape in SHAPES} <= kinds
    assert all(shape.derived_from for shape in SHAPES)


def _all_positive_bodies() -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = [{"messages": [{"content": text}]} for _k, _s, text in SHAPE_CASES]
    bodies += [
        {"h": {key: "x"}} for key in ("Authorization", "x-auth-token", "aws.access.key.id", "hf_token")
    ]
    return bodies


@pytest.mark.parametrize("body", _all_positive_bodies())
def test_prefilter_never_misses_a_line_the_walk_would_change(body: dict[str, Any]) -> None:
    assert strip_credentials(copy.deepcopy(body)) > 0
    # JSON writers differ: plain, every non-ASCII escaped, '/' escaped (PHP), spaced separators
    plain = json.dumps(body, ensure_ascii=False)
    for raw in (plain, json.dumps(body), plain.replace("/", "\\/"), json.dumps(body, indent=1)):
        assert may_hold_secret(raw.encode()), raw


@pytest.mark.parametrize(
    "raw",
    [b'{"\\u0061pi_key": "x"}', b'{"u": "https:\\/\\/a:b@h"}', b'{"token": 1}', b'{"h": "Bearer abc"}'],
)
def test_prefilter_walks_lines_whose_escapes_could_hide_a_credential(raw: bytes) -> None:
    assert may_hold_secret(raw)


@pytest.mark.parametrize("why_text", LEFT_ALONE[2:6])
def test_prefilter_skips_common_lines(why_text: tuple[str, str]) -> None:
    raw = json.dumps({"model": "m", "max_tokens": 5, "key_id": "k", "messages": [{"content": why_text[1]}]})
    assert not may_hold_secret(raw.encode())


def test_same_answers_without_hyperscan(monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = _all_positive_bodies() + [{"c": text} for _why, text in LEFT_ALONE]
    expected = [(may_hold_secret(json.dumps(b).encode()), _stripped(b)) for b in bodies]
    line_hints = [credentials._hint_of(s) for s in SHAPES] + [
        (credentials._NAME_HINT, True),
        (credentials._ESCAPE_HINT, False),
    ]
    monkeypatch.setattr(credentials, "_LINE_SCANNER", credentials._Scanner(line_hints, use_hyperscan=False))
    monkeypatch.setattr(
        credentials,
        "_SHAPE_SCANNER",
        credentials._Scanner([credentials._hint_of(s) for s in SHAPES], use_hyperscan=False),
    )
    assert credentials._LINE_SCANNER.database is None
    assert [(may_hold_secret(json.dumps(b).encode()), _stripped(b)) for b in bodies] == expected


_FRAGMENTS = st.sampled_from(
    [text for _k, _s, text in SHAPE_CASES]
    + [text for _why, text in LEFT_ALONE]
    + [
        "",
        " ",
        "\n",
        "\t",
        "é",
        "日本",
        "\u00a0",
        "/",
        '"',
        "=",
        ":",
        "?",
        "&",
        "@",
        "https://",
        "Bearer ",
        "Basic ",
    ]
)
_NAMES = st.sampled_from(
    ["content", "text", "api_key", "apiKey", "X-Auth-Token", "max_tokens", "token", "note", "a.b"]
)
_BODIES = st.recursive(
    st.lists(_FRAGMENTS, max_size=4).map("".join),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_NAMES, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(body=_BODIES, ascii_only=st.booleans(), escaped_slashes=st.booleans())
def test_prefilter_never_misses_on_generated_bodies(
    body: Any, ascii_only: bool, escaped_slashes: bool
) -> None:
    raw = json.dumps({"b": body}, ensure_ascii=ascii_only)
    if escaped_slashes:
        raw = raw.replace("/", "\\/")
    work = copy.deepcopy(body)
    if strip_credentials(work):
        assert may_hold_secret(raw.encode())
    assert strip_credentials(work) == 0  # a second pass finds nothing more


def _stripped(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    work = copy.deepcopy(body)
    return strip_credentials(work), work


def test_event_fields_outside_the_bodies() -> None:
    key = "sk-proj-TOPSECRET0123456789abcdefgh"
    event = CallEvent(
        event_id="e1",
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        account_id=key,  # some gateways log the caller by its API key
        key_id=key,
        client=Client(ip="192.0.2.1", user_agent=f"curl (key {key})"),
        endpoint="/v1/chat/completions?key=TOPSECRETq",
        request={"messages": []},
        status=200,
    )
    assert strip_event_credentials(event) == 4
    assert event.account_id == event.key_id and event.account_id.startswith("sha256:")  # still groups
    assert SECRET_MARK not in json.dumps([event.account_id, event.client.user_agent, event.endpoint])
    assert event.endpoint == "/v1/chat/completions?key=[REDACTED:url_query_secret]"


# ---- the store: every reader, every shape ------------------------------------------------------

# Every value shape in one prompt, and credentials by name where each format keeps metadata.
SEEDED_PROMPT = "Please debug this: " + " | ".join(text for _k, _s, text in SHAPE_CASES)
NAMED = {
    "x-auth-token": "TOPSECRET-n1",
    "api_token": "TOPSECRET-n2",
    "hf_token": "TOPSECRET-n3",
    "access_key": "TOPSECRET-n4",
    "secret_access_key": "TOPSECRET-n5",
    "aws.access.key.id": "TOPSECRET-n6",
    "private_key": "TOPSECRET-n7",
    "password": "TOPSECRET-n8",
    "clientSecret": "TOPSECRET-n9",
}
HEADERS = ["Authorization: Bearer TOPSECRET-h1", "Bearer TOPSECRETh2x", "Accept: application/json"]
ANSWER = f"Your key {SHAPE_CASES[0][1]} is revoked; use {JWT} instead."


def _request() -> dict[str, Any]:
    return {
        "model": "frontier-1",
        "messages": [{"role": "user", "content": SEEDED_PROMPT}],
        "extra_headers": HEADERS,
        "metadata": {
            "user_api_key": "TOPSECRET-m1",
            "tags": ["Basic " + base64.b64encode(b"u:TOPSECRET").decode()],
        }
        | NAMED,
    }


def _chat_response() -> dict[str, Any]:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}}],
        "created": 1770000000,
    }


def _write_lines(path: Path, rows: list[dict[str, Any]], *, gz: bool = False) -> Path:
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _seeded_sources(tmp_path: Path, fmt: str) -> list[Path]:
    if fmt == "canonical":
        row = {
            "event_id": "e-1",
            "ts": "2026-02-12T10:22:33.123Z",
            "account_id": "acct-1",
            "key_id": SHAPE_CASES[0][1],
            "client": {"ip": "192.0.2.1", "user_agent": f"sdk/1 {SHAPE_CASES[4][1]}"},
            "endpoint": "/v1/chat/completions?key=TOPSECRET-e1",
            "request": _request(),
            "response": _chat_response(),
            "status": 200,
        }
        return [_write_lines(tmp_path / "events.jsonl.gz", [row], gz=True)]
    if fmt == "openai-batch":
        request = {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": _request()}
        output = {"id": "b1", "custom_id": "r1", "response": {"status_code": 200, "body": _chat_response()}}
        return [
            _write_lines(tmp_path / "in.jsonl", [request]),
            _write_lines(tmp_path / "out.jsonl", [output]),
        ]
    if fmt == "litellm":
        row = {
            "id": "l1",
            "call_type": "acompletion",
            "startTime": 1770000000.0,
            "endTime": 1770000001.0,
            "model": "frontier-1",
            "messages": _request()["messages"],
            "response": ANSWER,
            "metadata": {"user_api_key_org_id": "org-1", "user_api_key": "TOPSECRET-m1"} | NAMED,
            "proxy_server_request": {"body": _request(), "headers": {"authorization": "Bearer TOPSECRET-h1"}},
        }
        return [_write_lines(tmp_path / "litellm.jsonl", [row])]
    assert fmt == "otel-genai"
    span = {
        "traceId": "t1",
        "spanId": "s1",
        "startTimeUnixNano": "1770000000000000000",
        "endTimeUnixNano": "1770000001000000000",
        "attributes": {
            "gen_ai.operation.name": "chat",
            "distillguard.account_id": "acct-1",
            "gen_ai.input.messages": json.dumps([{"role": "user", "content": SEEDED_PROMPT}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": ANSWER}]),
            "http.request.header.authorization": "Bearer TOPSECRET-h1",
        }
        | NAMED,
    }
    return [_write_lines(tmp_path / "spans.jsonl", [span])]


SECRETS = sorted(
    {s for _k, s, _t in SHAPE_CASES}
    | set(NAMED.values())
    | {"TOPSECRET-m1", "TOPSECRET-h1", "TOPSECRETh2x", "TOPSECRET-e1"}
)


@pytest.mark.parametrize("fmt", ["canonical", "openai-batch", "litellm", "otel-genai"])
def test_no_seeded_secret_reaches_the_store(tmp_path: Path, fmt: str) -> None:
    files = _seeded_sources(tmp_path, fmt)
    store_path = tmp_path / "store"
    items = iter_events(files, fmt, ReaderOptions(account="acct-b"))
    stats = CallStore.ingest(store_path, items, sources=[str(f) for f in files])
    assert stats.committed and stats.events == 1 and stats.rejects == 0
    con = CallStore.open(store_path).connect()
    rows = con.sql("SELECT * FROM calls").fetchall()
    dump = json.dumps(rows, default=str)
    leaked = [s for s in SECRETS if s in dump]
    assert leaked == []
    assert SECRET_MARK not in dump.replace("REDACTED", "")
    # the prompt is still there around what was taken out
    assert "Please debug this: my key is [REDACTED:openai_key], why 401?" in dump
    for path in store_path.rglob("*"):
        if path.is_file() and path.suffix != ".parquet":
            assert SECRET_MARK.encode() not in path.read_bytes(), path


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
def test_no_fixture_secret_reaches_the_store_or_the_rejects_file(
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


def test_the_store_strips_what_a_reader_left(tmp_path: Path) -> None:
    """A third-party reader may not strip; the store does it again before writing."""
    event = CallEvent(
        event_id="e1",
        ts=datetime(2026, 2, 1, tzinfo=UTC),
        account_id="a",
        client=Client(ip="192.0.2.1"),
        endpoint="/v1/chat/completions",
        request={"api_key": "TOPSECRET-r1", "messages": [{"role": "user", "content": SEEDED_PROMPT}]},
        status=200,
    )
    stats = CallStore.ingest(tmp_path / "s", [event], sources=["third-party"])
    assert stats.committed
    dump = json.dumps(
        CallStore.open(tmp_path / "s").connect().sql("SELECT * FROM calls").fetchall(), default=str
    )
    assert [s for s in [*SECRETS, "TOPSECRET-r1"] if s in dump] == []


def test_docstring_examples() -> None:
    assert doctest.testmod(credentials, raise_on_error=True).attempted >= 5
