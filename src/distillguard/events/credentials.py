"""Removes credentials (API keys, Authorization headers, passwords, cookies) from logged requests
before anything is written, so a secret never reaches the store, a rejects file or a log line.

Matching is by key name, anywhere in the nesting (request bodies, `headers` maps, LiteLLM
metadata), plus any string value that is an HTTP `Bearer`/`Basic` credential whatever its key.
"""

from __future__ import annotations

import re
from typing import Any

hyperscan: Any
try:
    import hyperscan
except ImportError:  # no wheel for this platform: the plain substring test gives the same answer
    hyperscan = None

# Key names are compared after lower-casing and dropping '-', '_' and '.', so `api_key`,
# `apiKey`, `X-Api-Key` and `x.api.key` are one name.
SECRET_KEYS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxyauthorization",
        "apikey",
        "xapikey",
        "apikeys",
        "openaiapikey",
        "anthropicapikey",
        "azureapikey",
        "xgoogapikey",
        "ocpapimsubscriptionkey",
        "litellmapikey",
        "litellmmasterkey",
        "masterkey",
        "secret",
        "secretkey",
        "clientsecret",
        "password",
        "passwd",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "sessiontoken",
        "authtoken",
        "bearertoken",
        "token",
        "awsaccesskeyid",
        "awssecretaccesskey",
        "awssessiontoken",
        "cookie",
        "setcookie",
        "privatekey",
    }
)

_CREDENTIAL_VALUE = re.compile(r"(?i)(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")

# A cheap test on the raw line decides whether the full walk is needed: most lines of a large
# log carry no credential at all. The hints err on the side of walking: any JSON escape (`\u`)
# could hide a key name, so such lines are always walked. Hyperscan tests all hints in one pass
# (~1 us for a 2 kB line, against ~26 us for a loop of substring tests, ~190 us for one `re`).
_HINTS: tuple[bytes, ...] = (
    b"auth",
    b'key"',
    b'keys"',
    b"access_key",
    b"accesskey",
    b"access-key",
    b"secret",
    b"passw",
    b'token"',
    b"cookie",
    b"bearer",
    b"basic",
    b"\\u",
)


def _normal(key: str) -> str:
    return key.lower().replace("-", "").replace("_", "").replace(".", "")


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a credential.

    >>> [is_secret_key(k) for k in ("Authorization", "apiKey", "x-api-key", "max_tokens")]
    [True, True, True, False]
    """
    return _normal(key) in SECRET_KEYS


def may_hold_secret(raw: bytes) -> bool:
    """False only when the raw JSON text certainly holds no credential key or value.

    >>> may_hold_secret(b'{"key_id": "k1", "request": {"max_tokens": 5}}')
    False
    >>> may_hold_secret(b'{"headers": {"X-Api-Key": "abc"}}')
    True
    """
    if _HINT_SCANNER is not None:
        try:
            _HINT_SCANNER.scan(raw, match_event_handler=_stop_at_first_hint)
        except hyperscan.ScanTerminated:
            return True
        return False
    lowered = raw.lower()
    return any(hint in lowered for hint in _HINTS)


def _stop_at_first_hint(*_match: Any) -> bool:
    return True  # ends the scan; hyperscan signals it with ScanTerminated


def _hint_scanner() -> Any:
    if hyperscan is None:
        return None
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    expressions = [re.escape(hint) for hint in _HINTS]
    database.compile(
        expressions=expressions,
        ids=list(range(len(expressions))),
        elements=len(expressions),
        flags=[hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_SINGLEMATCH] * len(expressions),
    )
    return database


_HINT_SCANNER = _hint_scanner()


def strip_credentials(value: Any) -> int:
    """Remove credentials from decoded JSON in place; returns how many were removed.

    Keys naming a secret are deleted with their value; string values that are themselves an
    HTTP credential (`Bearer ...`) are deleted from mappings and dropped from lists.

    >>> body = {"model": "m", "headers": {"Authorization": "Bearer sk-abcdefgh1234"}, "api_key": "x"}
    >>> strip_credentials(body), body
    (2, {'model': 'm', 'headers': {}})
    """
    removed = 0
    if isinstance(value, dict):
        for key in list(value):
            item = value[key]
            if (isinstance(key, str) and is_secret_key(key)) or (
                isinstance(item, str) and _CREDENTIAL_VALUE.fullmatch(item.strip())
            ):
                del value[key]
                removed += 1
            elif isinstance(item, dict | list):
                removed += strip_credentials(item)
    elif isinstance(value, list):
        keep = []
        for item in value:
            if isinstance(item, str) and _CREDENTIAL_VALUE.fullmatch(item.strip()):
                removed += 1
                continue
            if isinstance(item, dict | list):
                removed += strip_credentials(item)
            keep.append(item)
        if len(keep) != len(value):
            value[:] = keep
    return removed
