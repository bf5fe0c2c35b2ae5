"""The route allow-list as a table: (method, raw path, query) -> upstream path, or the refusal."""

from __future__ import annotations

import pytest

from distillguard.gateway.errors import Refusal
from distillguard.gateway.routes import RouteTable

TABLE = RouteTable()


@pytest.mark.parametrize(
    ("method", "raw_path", "query", "upstream", "dropped"),
    [
        ("POST", b"/v1/chat/completions", b"", "/v1/chat/completions", ()),
        ("POST", b"/v1/responses", b"", "/v1/responses", ()),
        ("GET", b"/v1/models", b"", "/v1/models", ()),
        ("GET", b"/v1/models", b"limit=1&after=x", "/v1/models", ("limit", "after")),
        ("GET", b"/v1/models/frontier-1", b"", "/v1/models/frontier-1", ()),
        ("GET", b"/v1/models/ft:gpt-4o:org:abc@v2", b"", "/v1/models/ft:gpt-4o:org:abc@v2", ()),
        ("GET", b"/v1/models/caf%C3%A9", b"", "/v1/models/caf%C3%A9", ()),  # decoded once, re-encoded
        ("GET", b"/v1/models/a%20b", b"", "/v1/models/a%20b", ()),
        ("GET", b"/v1/models/x?a=1", b"", "/v1/models/x", ("a",)),  # a server that leaves the query in
    ],
)
def test_allowed_routes_build_their_upstream_path(
    method: str, raw_path: bytes, query: bytes, upstream: str, dropped: tuple[str, ...]
) -> None:
    match = TABLE.match(method, raw_path, query)
    assert (match.upstream_path, match.dropped_query) == (upstream, dropped)


@pytest.mark.parametrize(
    ("method", "raw_path", "status", "code"),
    [
        ("GET", b"/v1/models/../files", 404, "unknown_url"),
        ("GET", b"/v1/models/..", 400, "invalid_path"),
        ("GET", b"/v1/models/.", 400, "invalid_path"),
        ("GET", b"/v1/models/%2e%2e", 400, "invalid_path"),
        ("GET", b"/v1/models/..%2F..%2Fadmin", 400, "invalid_path"),
        ("GET", b"/v1/models/x%3Flimit=1", 400, "invalid_path"),
        ("GET", b"/v1/models/x%23f", 400, "invalid_path"),
        ("GET", b"/v1/models/%252e%252e", 400, "invalid_path"),  # only one decoding: '%' remains
        ("GET", b"/v1/models/a%5Cb", 400, "invalid_path"),
        ("GET", b"/v1/models/a..b", 400, "invalid_path"),
        ("GET", b"/v1/models/x%00", 400, "invalid_path"),
        ("GET", b"/v1/models/x%E2%80%AEevil", 400, "invalid_path"),  # a right-to-left override
        ("GET", b"/v1/models/%FF", 400, "invalid_path"),
        ("GET", b"/v1/models/" + b"a" * 300, 400, "invalid_path"),
        ("GET", b"/v1/models/", 400, "invalid_path"),
        ("GET", b"/v1/models/x\xff", 400, "invalid_path"),
        ("GET", b"/v1/models/x y", 400, "invalid_path"),
        ("GET", b"v1/models", 400, "invalid_path"),
        ("GET", b"/v1//models", 404, "unknown_url"),
        ("GET", b"/v1/%6Dodels", 404, "unknown_url"),  # literal segments are matched as sent
        ("GET", b"/v1/files", 404, "unknown_url"),
        ("GET", b"/v1/chat/completions", 405, "method_not_allowed"),
        ("POST", b"/v1/models", 405, "method_not_allowed"),
        ("HEAD", b"/v1/models/x", 405, "method_not_allowed"),
    ],
)
def test_everything_else_is_refused(method: str, raw_path: bytes, status: int, code: str) -> None:
    with pytest.raises(Refusal) as refused:
        TABLE.match(method, raw_path)
    assert (refused.value.status, refused.value.code) == (status, code)


def test_a_405_says_which_method_is_allowed() -> None:
    with pytest.raises(Refusal) as refused:
        TABLE.match("GET", b"/v1/chat/completions")
    assert (b"allow", b"POST") in refused.value.headers


@pytest.mark.parametrize("query", [b"a=" + b"x" * 3000, b"%ff=1"])
def test_a_malformed_query_is_refused(query: bytes) -> None:
    with pytest.raises(Refusal) as refused:
        TABLE.match("GET", b"/v1/models", query)
    assert refused.value.status == 400
