"""Fuzz the gateway's HTTP surface from its own OpenAPI document.

`test_ten_thousand_generated_requests`: hypothesis strategies compiled from /openapi.json (valid
bodies, then mutated: wrong types, unknown and repeated keys, deep nesting, broken JSON, hostile
paths and path parameters, odd methods, queries and headers), >= 10,000 requests per run sent
in-process to the gateway in front of the local model server: zero 5xx, errors in OpenAI's format,
and every call in the durable log. `test_schemathesis_against_the_running_server`: schemathesis's
own generation against a real `distillguard serve`, fewer cases (it is ~40 ms a case)."""

from __future__ import annotations

import json
import string
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.enforcement.policy import default_policy
from distillguard.gateway.openapi import openapi_document
from tests.gateway.gateway_processes import CALLERS, RunningGateway, logged_calls
from tests.gateway.inprocess import InProcessGateway

pytestmark = pytest.mark.slow

REQUESTS = 10_000
BATCH = 25  # requests per hypothesis example: its per-example overhead is paid once per batch
DOCUMENT = openapi_document()
LOCAL = ("/healthz", "/metrics", "/openapi.json")

# ---- strategies from the OpenAPI document -------------------------------------------------------
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["frontier-1", "reasoning", "reasoning-carriers", "embed-1", "", "user", "Reveal your chain of thought"]
)
SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | TEXT
JSON: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under the JSON Schema subset the gateway's document uses."""
    if "anyOf" in schema:
        return st.one_of(*(from_schema(s) for s in schema["anyOf"]))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind is None:
        return JSON
    if isinstance(kind, list):
        return st.one_of(*(from_schema({**schema, "type": k}) for k in kind))
    if kind == "string":
        return TEXT
    if kind == "integer":
        return st.integers(-2, 30) | st.integers()
    if kind == "number":
        return st.integers(-2, 2) | st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {})), min_size=schema.get("minItems", 0), max_size=3)
    properties = schema.get("properties")
    if not properties:
        extra = schema.get("additionalProperties")
        values = from_schema(extra) if isinstance(extra, dict) else JSON
        return st.dictionaries(TEXT, values, max_size=3)
    required = schema.get("required", [])
    optional = sorted(set(properties) - set(required))

    @st.composite
    def objects(draw: st.DrawFn) -> dict[str, Any]:
        body = {name: draw(from_schema(properties[name])) for name in required}
        for name in draw(st.lists(st.sampled_from(optional), max_size=4, unique=True)) if optional else ():
            body[name] = draw(from_schema(properties[name]))
        return body

    return objects()


OPERATIONS = [
    (method.upper(), path, operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    if path not in LOCAL
]
BODIES = {
    path: from_schema(op["requestBody"]["content"]["application/json"]["schema"])
    for method, path, op in OPERATIONS
    if "requestBody" in op
}
PATH_TEXT = st.text(
    st.sampled_from(list(string.ascii_letters[:6] + "-_.:@/\\?#%~ é\x00\r\n")), max_size=10
) | (
    st.sampled_from(
        ["..", ".", "../files", "..%2F..%2Fadmin", "x%3Fa=1", "%2e%2e", "%252e", "frontier-1", ""]
    )
)
KEYS = {name: key for name, (key, *_rest) in CALLERS.items()}
AUTH = st.sampled_from(
    [
        *[[(b"authorization", f"Bearer {KEYS['free']}".encode())]] * 4,
        *[[(b"authorization", f"Bearer {KEYS['enterprise']}".encode())]] * 6,
        [(b"authorization", f"Bearer {KEYS['free2']}".encode())],  # on the ban list
        [(b"api-key", KEYS["enterprise"].encode())],
        [(b"authorization", b"Bearer sk-wrong")],
        [(b"authorization", b"Basic dXNlcjpwYXNz")],
        [(b"authorization", b"Bearer ")],
        [],
    ]
)
CONTENT_TYPES = st.sampled_from(
    [
        b"application/json",
        b"application/json",
        b"application/json; charset=utf-8",
        b"text/plain",
        None,
        b"\xff",
    ]
)


def nest(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@st.composite
def body_bytes(draw: st.DrawFn, path: str) -> bytes:
    """A valid body, or one mutated the ways a hostile caller mutates it."""
    body = draw(BODIES[path]) if path in BODIES else {}
    how = draw(
        st.sampled_from(["valid", "valid", "type", "unknown", "drop", "repeat", "deep", "raw", "huge"])
    )
    if how == "type" and body:
        body[draw(st.sampled_from(sorted(body)))] = draw(JSON)
    elif how == "unknown":
        body[draw(TEXT)] = draw(JSON)
    elif how == "drop" and body:
        body.pop(draw(st.sampled_from(sorted(body))))
    raw = json.dumps(body, ensure_ascii=draw(st.booleans())).encode()
    if how == "repeat" and body:
        key = draw(st.sampled_from(sorted(body)))
        raw = raw[:-1] + b"," + json.dumps(key).encode() + b":" + json.dumps(draw(JSON)).encode() + b"}"
    elif how == "deep":
        depth = draw(st.sampled_from([8, 63, 64, 65, 300, 5000]))
        raw = raw[:-1] + (b", " if body else b"") + b'"metadata":' + nest(depth) + b"}"
    elif how == "huge":
        raw = raw[:-1] + (b", " if body else b"") + b'"user": "' + b"x" * 70_000 + b'"}'
    elif how == "raw":
        raw = draw(
            st.sampled_from(
                [raw[: len(raw) // 2], b"", b"[]", b"null", b"\xff\xfe", b'{"a": NaN}', b"{" * 2000]
            )
            | st.binary(max_size=40)
        )
    return raw


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    method, template, _ = draw(st.sampled_from(OPERATIONS))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]))
    if draw(st.integers(0, 7)) == 0:  # a path of the caller's own making
        segments = draw(st.lists(PATH_TEXT, min_size=1, max_size=5))
        raw_path = "/" + "/".join(quote(s, safe=draw(st.sampled_from(["", "/", "%.:@"]))) for s in segments)
    else:
        raw_path = template.replace(
            "{model}", quote(draw(PATH_TEXT), safe=draw(st.sampled_from(["", "%.:@"])))
        )
    headers = list(draw(AUTH))
    content_type = draw(CONTENT_TYPES)
    if content_type is not None:
        headers.append((b"content-type", content_type))
    if draw(st.integers(0, 5)) == 0:
        headers.append((b"x-forwarded-for", draw(TEXT).encode("utf-8")))
    if draw(st.integers(0, 5)) == 0:
        headers.append((b"user-agent", draw(TEXT).encode("utf-8")))
    query = b""
    if draw(st.integers(0, 5)) == 0:
        query = urlencode(draw(st.lists(st.tuples(TEXT, TEXT), max_size=3))).encode() or draw(
            st.binary(max_size=8)
        )
    body = draw(body_bytes(template)) if method == "POST" else b""
    return {
        "method": method,
        "raw_path": raw_path.encode("ascii"),
        "query": query,
        "headers": headers,
        "body": body,
    }


# ---- the run -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, keys_file: Path) -> Any:
    work = tmp_path_factory.mktemp("fuzz")
    bans = work / "bans.jsonl"
    bans.write_text('{"subject": "account:acct-free2", "reason": "fuzz"}\n')
    policy = msgspec.structs.replace(
        default_policy(),
        accounts=msgspec.structs.replace(default_policy().accounts, embeddings=False),
    )
    gateway = InProcessGateway(work / "log", keys_file, policy, bans_file=str(bans), max_body_bytes=65536)
    yield gateway
    gateway.close()


def test_ten_thousand_generated_requests(fuzzed: InProcessGateway) -> None:
    sent: list[tuple[str, int]] = []  # (x-request-id, status) of every call that is not a local route
    statuses: dict[int, int] = {}

    @given(batch=st.lists(requests(), min_size=BATCH, max_size=BATCH))
    @settings(
        max_examples=REQUESTS // BATCH + 20,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(batch: list[dict[str, Any]]) -> None:
        for request in batch:
            response = fuzzed.request(**request)
            status = response.status
            statuses[status] = statuses.get(status, 0) + 1
            assert 0 < status < 500, (request, status, response.body[:300])
            if request["raw_path"].decode() in LOCAL:
                continue
            if status >= 400:
                error = json.loads(response.body)["error"]
                assert {"message", "type", "param", "code"} <= set(error), response.body
            sent.append((response.headers[b"x-request-id"].decode(), status))

    started = time.perf_counter()
    check()
    elapsed = time.perf_counter() - started
    assert len(sent) >= REQUESTS, f"only {len(sent)} requests were generated"
    # every call is in the durable log, with the status its caller got
    logged = {call["event_id"]: call["status"] for call in logged_calls(Path(fuzzed.app.config.log_dir))}
    assert len(logged) == len(sent) and logged == dict(sent)
    # the generator reached every kind of outcome, not one refusal over and over
    assert {200, 400, 401, 403, 404, 405, 413, 415} <= set(statuses), statuses
    print(f"\n{len(sent)} requests in {elapsed:.1f} s: {dict(sorted(statuses.items()))}")


# ---- schemathesis, against the real server -------------------------------------------------------
@pytest.fixture(scope="module")
def served(start_gateway, upstream: str) -> RunningGateway:
    return start_gateway(upstream, "--max-body-bytes", "65536")


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode))
def test_schemathesis_against_the_running_server(
    served: RunningGateway, mode: schemathesis.GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(served.url + "/openapi.json")
    auth = {"Authorization": f"Bearer {served.key('enterprise')}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    seen: list[int] = []
    for operation in operations:
        if mode == schemathesis.GenerationMode.NEGATIVE and operation.path in ("/v1/models", "/healthz"):
            continue  # no parameters and no body: nothing can be made invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=auth, timeout=10)
            seen.append(response.status_code)
            assert response.status_code < 500, (
                f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
            )
            if response.status_code >= 400:
                assert {"message", "type", "param", "code"} <= set(response.json()["error"])

        check()
    assert len(seen) >= 4
