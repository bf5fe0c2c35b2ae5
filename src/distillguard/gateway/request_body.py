"""A request body decoded once, the way the upstream will read it: valid UTF-8, one JSON object,
no key given twice, not nested deeper or holding more values than the policy allows.

Duplicate keys matter because the gateway checks the decoded body and forwards the raw bytes: in
`{"n": 8, "n": 1}` the gateway would see one value and a first-key-wins upstream the other. They
are found without a second parse: outside strings, JSON has exactly one `:` per object member, so

    members in the raw text = colons in the raw text - colons inside its strings

and the colons inside strings are those of the decoded strings, less the ones written as a
`\\u003a` escape. A body with more members than its decoded objects have keys repeats a key.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from distillguard.gateway.errors import Refusal

_decode = msgspec.json.decode
# a `\u003a` escape (an escaped colon) that is not itself an escaped backslash followed by "u003a"
_ESCAPED_COLON = re.compile(rb"(?<!\\)(?:\\\\)*\\u003[aA]")


def decode_body(body: bytes, *, max_depth: int, max_values: int) -> dict[str, Any]:
    """The decoded JSON object of a request body; a Refusal (400) says what is wrong with it."""
    try:
        if not body.isascii():
            body.decode("utf-8")  # msgspec does not check every string's UTF-8
        decoded = _decode(body)
    except UnicodeDecodeError as error:
        raise Refusal(400, f"The request body is not valid UTF-8 (byte {error.start}).") from None
    except RecursionError:
        raise Refusal(
            400, f"The request body is nested more than {max_depth} levels deep.", code="nesting_too_deep"
        ) from None
    except msgspec.DecodeError as error:  # ValidationError too (a number out of range)
        raise Refusal(
            400,
            f"We could not parse the JSON body of your request: {error}. The OpenAI API expects a "
            "JSON payload.",
        ) from None
    if not isinstance(decoded, dict):
        raise Refusal(400, "The request body must be a JSON object.")
    keys, string_colons = _shape(decoded, max_depth, max_values)
    escaped = len(_ESCAPED_COLON.findall(body)) if b"\\u" in body else 0
    if body.count(b":") - (string_colons - escaped) != keys:
        raise Refusal(400, _duplicate_message(body), code="duplicate_key")
    return decoded


def _shape(value: dict[str, Any], max_depth: int, max_values: int) -> tuple[int, int]:
    """Keys of every object, and colons in every string (keys included); refuses a body deeper than
    `max_depth` or with more than `max_values` values. Iterative: depth costs no Python stack."""
    keys = 0
    colons = 0
    values = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > max_depth:
            raise Refusal(
                400, f"The request body is nested more than {max_depth} levels deep.", code="nesting_too_deep"
            )
        if type(node) is dict:
            keys += len(node)
            items = node.values()
            for key in node:
                colons += key.count(":")
        else:
            items = node
        values += len(node)
        for item in items:
            kind = type(item)
            if kind is str:
                colons += item.count(":")
            elif kind is dict or kind is list:
                push((item, depth + 1))
        if values > max_values:
            raise Refusal(
                400, f"The request body holds more than {max_values} JSON values.", code="too_many_values"
            )
    return keys, colons


def _duplicate_message(body: bytes) -> str:
    """Names the repeated key and where it is; only on the error path, so a second parse is fine."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                raise _Repeated(key)
            seen.add(key)
        return dict(items)

    try:
        json.loads(body, object_pairs_hook=pairs)
    except _Repeated as repeated:
        return f"The request body repeats the key {repeated.key!r}; each key may appear only once."
    except (ValueError, RecursionError):
        pass
    return "The request body repeats a key; each key may appear only once."


class _Repeated(Exception):
    def __init__(self, key: str) -> None:
        self.key = key
