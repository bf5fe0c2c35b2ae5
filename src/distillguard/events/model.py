"""The canonical call record of `shared/spec/events.md`: one API call to the protected model.

msgspec is used because it decodes and validates JSON in one pass at several hundred thousand
lines a second and its errors name the offending field path (``$.client.ip``), which is what
a rejects file needs to say.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec


class Client(msgspec.Struct, kw_only=True):
    """What the provider's edge saw of the caller."""

    ip: str
    asn: int | None = None
    user_agent: str | None = None
    tls_fingerprint: str | None = None
    router: str | None = None


class CallEvent(msgspec.Struct, kw_only=True):
    """One call: the spec's `events.jsonl` line. Unknown extra fields are ignored on decode."""

    event_id: str
    ts: datetime
    account_id: str
    key_id: str | None = None
    end_user: str | None = None
    client: Client
    endpoint: str
    request: dict[str, Any]
    response: dict[str, Any] | None = None
    status: int
    latency_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            raise ValueError("ts must carry a time zone (RFC 3339 with 'Z')")
        if not self.account_id:
            raise ValueError("account_id must not be empty")


class Account(msgspec.Struct, kw_only=True):
    """The spec's `accounts.jsonl` line: what billing and sign-up know about an account."""

    account_id: str
    created_at: datetime | None = None
    payment_fingerprint: str | None = None
    email_domain: str | None = None
    signup_ip: str | None = None
    tier: str | None = None
    sanctioned_distillation: bool = False


class Label(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The spec's `labels.jsonl` line (benchmarks only; never read by a detector)."""

    account_id: str
    label: str
    actor: str | None
    tactic: str
    attack_share: float | None = None


class Reason(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One piece of evidence behind a verdict."""

    signal: str
    score: float
    detail: str
    adjustments: list[str] = []


class AccountVerdict(msgspec.Struct, kw_only=True):
    """The spec's `accounts_out.jsonl` line: what `distillguard scan` writes per account."""

    account_id: str
    risk: float
    verdict: str
    cluster_id: str | None
    first_flagged_at: datetime | None
    calls_to_flag: int | None
    reasons: list[Reason]


VERDICTS = ("distiller", "suspicious", "benign")


def format_ts(ts: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision and a `Z` suffix, as the spec shows."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


# msgspec writes aware datetimes as RFC 3339 with a 'Z' suffix (microseconds when non-zero).
_encoder = msgspec.json.Encoder(order="deterministic")
encode_json = _encoder.encode


def to_json_line(struct: msgspec.Struct) -> bytes:
    """One JSONL line (without newline) in the spec's field names."""
    return _encoder.encode(struct)


event_decoder = msgspec.json.Decoder(CallEvent)
account_decoder = msgspec.json.Decoder(Account)
label_decoder = msgspec.json.Decoder(Label)
verdict_decoder = msgspec.json.Decoder(AccountVerdict)
