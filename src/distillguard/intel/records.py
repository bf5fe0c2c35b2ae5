"""Typed indicator records with their source and expiry. STIX exists only at the edges
(`intel.stix`): everything else — export, the TAXII store, the watch list, matching — uses these.

A value is never kept in a record in the clear: `digest` is a keyed hash (HMAC-SHA256, hex) of a
personal value, or a keyed 64-bit SimHash (hex) of a content frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Kind:
    """What one kind of indicator is and how far it is trusted.

    `confidence` is what we state (STIX `confidence`, 0-100) for a value only the actor's accounts
    used among all of ours (`exclusive`), `shared_confidence` for one a few other accounts used too.
    On the receiving side a peer's confidence is capped at `confidence`: no peer makes a kind say
    more than we would. A peer actor's matched kinds combine as independent evidence
    (1 - prod(1 - c)); an account is held at HOLD_AT. So a payment fingerprint holds alone, as does a
    sign-up address no other account used; anything weaker needs a second kind. `age_checked` kinds
    count twice for an account opened after the indicator's `valid_from` (the actor came back),
    as a local recidivism hold on one of them applies only to accounts opened after the ban."""

    name: str
    description: str
    signature: bool  # content: keyed SimHash (matched within SIMHASH_RADIUS bits), else keyed hash
    ttl: timedelta
    confidence: int
    shared_confidence: int
    age_checked: bool


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("payment", "payment fingerprint", False, timedelta(days=365), 90, 90, False),
        Kind("signup_ip", "sign-up address", False, timedelta(days=90), 85, 55, True),
        Kind(
            "tls_asn",
            "TLS client fingerprint within one network (ASN)",
            False,
            timedelta(days=90),
            65,
            45,
            True,
        ),
        Kind("email_domain", "uncommon e-mail domain", False, timedelta(days=180), 55, 40, True),
        Kind("template", "prompt template frame (keyed SimHash)", True, timedelta(days=180), 70, 50, True),
        Kind("system_prompt", "system prompt frame (keyed SimHash)", True, timedelta(days=180), 75, 55, True),
    )
}
THROTTLE_CONFIDENCE = 0.85  # a throttled actor's indicators: the reviewer was less sure than a ban
SIMHASH_BITS = 64
SIMHASH_RADIUS = 3  # frames of one template differ by a few bits; unrelated frames by ~32
HOLD_AT = 0.85


def evidence(confidences: list[float]) -> float:
    """Independent pieces of evidence (each a probability) combined: 1 - prod(1 - c).

    >>> round(evidence([0.55, 0.65]), 3)
    0.843
    """
    missing = 1.0
    for c in confidences:
        missing *= 1.0 - min(max(c, 0.0), 1.0)
    return 1.0 - missing


@dataclass(frozen=True)
class ActorRef:
    """An actor as a peer (or we) named it: a stable id and a name with no personal data."""

    actor_id: str
    name: str


@dataclass(frozen=True)
class SharedIndicator:
    """One indicator of one actor, as shared: ours on the way out, a peer's on the way in."""

    kind: str
    key_id: str
    digest: str
    actor: ActorRef
    confidence: int
    valid_from: datetime
    valid_until: datetime | None
    source: str  # the deployment that saw it: our name, or the peer's
    object_id: str = ""  # its STIX id once it has one
    version: datetime | None = None  # STIX `modified`
    revoked: bool = False
    sightings: int = 0
    case_id: int | None = None  # ours only: the case it comes from

    def expired(self, now: datetime) -> bool:
        return self.valid_until is not None and self.valid_until <= now


@dataclass
class SharedActor:
    """A decided case of ours, ready to share: the actor and its indicators."""

    case_id: int
    actor: ActorRef
    decision: str  # ban | throttle
    decided_at: datetime
    n_accounts: int
    first_seen: datetime | None
    last_seen: datetime | None
    indicators: list[SharedIndicator] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count (e.g. no sample of a template)
