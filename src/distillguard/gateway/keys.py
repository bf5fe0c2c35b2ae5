"""Callers' API keys mapped to accounts, from a keys file that holds only SHA-256 hashes of the keys.

API keys are long random strings, so an unsalted SHA-256 is enough to make a stolen keys file
useless and lets one hash per request find the caller. Make an entry with
`printf %s "$KEY" | sha256sum` or `distillguard.gateway.keys.hash_key(key)`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import msgspec
import yaml

from distillguard.enforcement.engine import Caller


class KeysFileError(ValueError):
    """A keys file that does not validate; the message names the file and the field."""


class KeyEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sha256: str
    account_id: str
    key_id: str | None = None
    tier: str | None = None
    actor: str | None = None
    # From billing and sign-up: a returning actor's new account is matched by these
    payment_fingerprint: str | None = None
    signup_ip: str | None = None
    created_at: datetime | None = None  # ISO 8601; behavioural indicators hold only newer accounts

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError("sha256 must be 64 lower-case hex digits (the hash, never the key)")
        if not self.account_id:
            raise ValueError("account_id must not be empty")


class KeysFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    keys: list[KeyEntry]


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class KeyTable:
    """Lookup from a presented API key to its caller; never stores or returns the key."""

    def __init__(self, entries: list[KeyEntry]) -> None:
        self._by_hash = {
            e.sha256: Caller(
                account_id=e.account_id,
                key_id=e.key_id,
                tier=e.tier,
                actor=e.actor,
                indicators=tuple(
                    f"{kind}:{value}"
                    for kind, value in (("payment", e.payment_fingerprint), ("signup_ip", e.signup_ip))
                    if value
                ),
                created_ts=e.created_at.timestamp() if e.created_at else None,
            )
            for e in entries
        }

    def __len__(self) -> int:
        return len(self._by_hash)

    def caller(self, presented: str) -> Caller | None:
        return self._by_hash.get(hashlib.sha256(presented.encode("utf-8", "surrogateescape")).hexdigest())


def load_keys(path: str | Path) -> KeyTable:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise KeysFileError(f"{path}: not valid YAML: {error}") from None
    try:
        parsed = msgspec.convert(data, KeysFile)
    except msgspec.ValidationError as error:
        raise KeysFileError(f"{path}: {str(error).replace('$.', '')}") from None
    seen: set[str] = set()
    for i, entry in enumerate(parsed.keys):
        if entry.sha256 in seen:
            raise KeysFileError(f"{path}: keys[{i}].sha256: the same key hash appears twice")
        seen.add(entry.sha256)
    return KeyTable(parsed.keys)
