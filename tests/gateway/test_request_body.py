"""Request bodies decoded once: repeated keys found by counting (checked against a parser that
sees every member), depth and size limits, never an exception but a 400."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.gateway.errors import Refusal
from distillguard.gateway.request_body import decode_body

LIMITS = {"max_depth": 64, "max_values": 10_000}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"n":8,"n":1}', "duplicate_key"),
        (b'{"n":1,"\\u006e":8}', "duplicate_key"),  # the same key, escaped
        (b'{"a":{"b":1,"b":2}}', "duplicate_key"),
        (b'{"a":[{"role":"user","content":"x","content":"y"}]}', "duplicate_key"),
        (b'{"a":"x\\u003ay","a":1}', "duplicate_key"),  # an escaped colon must not hide the repeat
        (b'{"a\\u003a":1,"a\\u003a":2}', "duplicate_key"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, "nesting_too_deep"),
        (b"[" * 5000 + b"]" * 5000, "nesting_too_deep"),
        (b'{"a":[' + b"1," * 20_000 + b"1]}", "too_many_values"),
        (b"[1, 2]", None),
        (b'{"a": NaN}', None),
        (b'{"a": 1e400}', None),
        (b"\xef\xbb\xbf{}", None),
        (b'{"a":"\xff"}', None),
        (b"", None),
    ],
)
def test_bad_bodies_are_refused_with_a_400(body: bytes, code: str | None) -> None:
    with pytest.raises(Refusal) as refused:
        decode_body(body, **LIMITS)
    assert refused.value.status == 400 and refused.value.code == code


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":"time 10:30","b":"x:y:z","c\\u003ad":1}',
        b'{"a":"\\\\u003a is text, not a colon","b":{"c":"\\\\\\u003a"}}',
        b'{"url":"https://example.org:8443/a?b=c:d"}',
        b'{"a":[{"b":":"},{"b":":"}],"c":{}}',
        b'{"a":' * 64 + b"1" + b"}" * 64,
    ],
)
def test_colons_and_escapes_in_strings_are_not_repeats(body: bytes) -> None:
    assert decode_body(body, **LIMITS) == json.loads(body)


def _repeats(body: bytes) -> bool:
    found = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        found = found or len({key for key, _ in items}) != len(items)
        return dict(items)

    json.loads(body, object_pairs_hook=pairs)
    return found


KEYS = st.sampled_from(["n", "a", ":", "a:b", "\\u003a", "\\u006e", "x\\\\u003a", "\\\\", "é"])
SCALARS = st.one_of(
    st.integers(-5, 5).map(str),
    st.sampled_from(['":"', '"a:b"', '"\\u003a"', '"\\\\u003a"', '"\\\\\\u003a"', '"x"', "null"]),
)


def _objects(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    members = st.lists(st.tuples(KEYS, children), max_size=4)
    return st.one_of(
        members.map(lambda ms: "{" + ",".join(f'"{k}":{v}' for k, v in ms) + "}"),
        st.lists(children, max_size=3).map(lambda vs: "[" + ",".join(vs) + "]"),
    )


BODIES = st.lists(st.tuples(KEYS, st.recursive(SCALARS, _objects, max_leaves=12)), max_size=5).map(
    lambda ms: ("{" + ",".join(f'"{k}":{v}' for k, v in ms) + "}").encode()
)


@settings(max_examples=400, deadline=None, database=None)
@given(body=BODIES)
def test_repeated_keys_are_found_exactly_as_a_member_by_member_parser_finds_them(body: bytes) -> None:
    try:
        decode_body(body, **LIMITS)
        refused = None
    except Refusal as refusal:
        refused = refusal.code
    assert (refused == "duplicate_key") == _repeats(body), body
