"""The community key: the secret a sharing community holds in common, under which every shared
value is a keyed hash (HMAC-SHA256) and every content signature a keyed SimHash.

Outsiders who see a bundle learn nothing they can test a guess against; members match a hash only
by hashing their own customers' values under the same key. Keys rotate: each has an id that
travels with every indicator; several keys may be held at once (new and old) and one is `current`
(the one exports use). A key is read from a file (`DISTILLGUARD_INTEL_KEYS_FILE`, owner-only) or one
environment variable (`DISTILLGUARD_INTEL_KEY=ID:BASE64`); it is never logged, printed or
written anywhere by DistillGuard (`repr` shows the ids only).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

KEYS_FILE_ENV = "DISTILLGUARD_INTEL_KEYS_FILE"
KEY_ENV = "DISTILLGUARD_INTEL_KEY"
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MIN_SECRET_BYTES = 32  # HMAC-SHA256's block of entropy; shorter secrets are refused


class CommunityKeyError(ValueError):
    """A key file or variable that cannot be used; the message names it and the field."""


@dataclass(frozen=True)
class CommunityKeys:
    """Key id -> secret, and the id exports use. Built by `load` or `from_env`."""

    secrets: Mapping[str, bytes] = field(repr=False)
    current: str

    def __post_init__(self) -> None:
        if self.current not in self.secrets:
            raise CommunityKeyError(f"current key {self.current!r} is not among the keys")

    def __repr__(self) -> str:  # the secrets never reach a log through a repr
        return f"CommunityKeys(ids={sorted(self.secrets)}, current={self.current!r})"

    @property
    def ids(self) -> list[str]:
        return sorted(self.secrets)

    def digest(self, kind: str, value: str, key_id: str | None = None) -> str:
        """HMAC-SHA256 of the normalised value under a key, hex. The kind is part of the message,
        so the same string as a payment fingerprint and as a domain gives different hashes.

        >>> keys = CommunityKeys({"k1": b"x" * 32}, "k1")
        >>> keys.digest("email_domain", "Example.COM.") == keys.digest("email_domain", "example.com")
        True
        """
        secret = self.secrets[key_id or self.current]
        message = f"{kind}\n{normalise(kind, value)}".encode()
        return hmac.new(secret, message, hashlib.sha256).hexdigest()

    def content_key(self, key_id: str | None = None) -> bytes:
        """The key of content signatures (keyed SimHash), derived so it is never the HMAC key itself."""
        secret = self.secrets[key_id or self.current]
        return hmac.new(secret, b"distillguard simhash v1", hashlib.sha256).digest()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CommunityKeys | None:
        """The keys the environment names, or None when it names none."""
        environ = os.environ if environ is None else environ
        path = environ.get(KEYS_FILE_ENV)
        if path:
            return cls.load(Path(path))
        inline = environ.get(KEY_ENV)
        if inline:
            key_id, _, encoded = inline.partition(":")
            if not encoded:
                raise CommunityKeyError(f"{KEY_ENV}: expected ID:BASE64SECRET")
            return cls({_key_id(key_id, KEY_ENV): _secret(encoded, KEY_ENV)}, key_id)
        return None

    @classmethod
    def load(cls, path: Path) -> CommunityKeys:
        """A YAML file ``keys: [{id, secret (base64), current: true}, ...]`` that only its owner
        may read (like an SSH key: a key others can read is not a community secret any more)."""
        try:
            mode = path.stat().st_mode
        except OSError as error:
            raise CommunityKeyError(f"{path}: cannot read the community key file: {error.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CommunityKeyError(f"{path}: readable by others (mode {mode & 0o777:o}); chmod 600 it")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            # the parser's message may quote the file, i.e. a secret: name the problem only
            raise CommunityKeyError(f"{path}: not a YAML key file ({type(error).__name__})") from None
        entries = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not entries:
            raise CommunityKeyError(f"{path}: keys: expected a non-empty list of {{id, secret}}")
        secrets: dict[str, bytes] = {}
        current: list[str] = []
        for i, entry in enumerate(entries):
            where = f"{path}: keys[{i}]"
            if not isinstance(entry, dict) or set(entry) - {"id", "secret", "current"}:
                raise CommunityKeyError(f"{where}: expected an object with id, secret and optional current")
            key_id = _key_id(entry.get("id"), where + ".id")
            if key_id in secrets:
                raise CommunityKeyError(f"{where}.id: key {key_id!r} appears twice")
            secrets[key_id] = _secret(entry.get("secret"), where + ".secret")
            if entry.get("current") is True:
                current.append(key_id)
        if len(current) != 1 and len(secrets) > 1:
            raise CommunityKeyError(f"{path}: exactly one key must say current: true (found {len(current)})")
        return cls(secrets, current[0] if current else next(iter(secrets)))


def _key_id(value: object, where: str) -> str:
    if not isinstance(value, str) or not KEY_ID.match(value):
        raise CommunityKeyError(f"{where}: a key id is 1-64 characters of A-Z a-z 0-9 . _ -")
    return value


def _secret(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise CommunityKeyError(f"{where}: expected a base64 string")
    try:
        secret = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CommunityKeyError(f"{where}: not valid base64") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise CommunityKeyError(f"{where}: at least {MIN_SECRET_BYTES} random bytes are required")
    return secret


def new_secret() -> str:
    """A fresh random secret, base64, for `distillguard intel new-key`."""
    return base64.b64encode(os.urandom(MIN_SECRET_BYTES)).decode()


def normalise(kind: str, value: str) -> str:
    """One spelling per value, so two deployments hash the same thing the same way."""
    value = value.strip()
    if kind == "signup_ip":
        try:
            return ipaddress.ip_address(value).compressed
        except ValueError:
            return value
    if kind == "email_domain":
        domain = value.rsplit("@", 1)[-1].strip(".").lower()
        try:
            return domain.encode("idna").decode("ascii")
        except UnicodeError:
            return domain
    return value
