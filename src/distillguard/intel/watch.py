"""Peers' indicators as watch entries, and matching an account against them.

A watch entry is an enforcement-list entry (`watch:<peer>:<kind>:<key id>:<keyed hash>:<actor>`), so it
reaches every gateway replica the way bans do (Redis hash + pub/sub, or the watched bans file). It
never acts by itself: an account whose own values, hashed under the community key, match a peer
actor's entries strongly enough is **held** for review (its own entry, `hold`: true, 403
`account_held`), and the review UI opens a case naming the peer. It is never banned on a peer's
word: only a reviewer's decision on that case bans.

Strength: the peer's confidence in each distinct kind matched for one of its actors (capped at
what we would state for that kind, `records.KINDS`), combined as independent evidence, must reach
HOLD_AT: a payment fingerprint holds alone, as does a sign-up address that no other account at the
peer used; weaker kinds need each other. An age-checked kind counts twice for an account opened
after the indicator's `valid_from` (the actor came back after the peer's decision), as a local
recidivism hold applies only to accounts opened after a ban.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from distillguard.enforcement.state import WATCH_KIND, Ban, EnforcementState, StateUnavailable, ban_subject
from distillguard.features.account_window import tls_asn_key
from distillguard.intel.community_key import CommunityKeys
from distillguard.intel.content import simhash64, system_frame, template_frame
from distillguard.intel.records import HOLD_AT, KINDS, SIMHASH_BITS, SIMHASH_RADIUS, SharedIndicator, evidence

if TYPE_CHECKING:
    from distillguard.enforcement.engine import Caller, Decision
    from distillguard.events.call_view import CallView

log = logging.getLogger("distillguard.intel")

WATCH = WATCH_KIND + ":"
HOLD_ACTIONS = ("ban", "throttle")  # a hold refuses (403 account_held) or throttles, pending review
# SimHash signatures are looked up by bands: two signatures within SIMHASH_RADIUS bits agree on at
# least one of RADIUS + 1 bands (pigeonhole), so exact band lookups find every candidate.
_BANDS = SIMHASH_RADIUS + 1
_BAND_BITS = SIMHASH_BITS // _BANDS


def watch_subject(indicator: SharedIndicator) -> str:
    """`watch:<peer>:<kind>:<key id>:<digest>:<the peer's actor id>`: two actors of one peer may
    share a value, and each keeps its own entry."""
    return f"{WATCH}{indicator.source}:{indicator.kind}:{indicator.key_id}:{indicator.digest}:{indicator.actor.actor_id}"


def watch_entry(indicator: SharedIndicator, hold_action: str = "ban") -> Ban:
    """The enforcement-list entry of a peer's indicator."""
    if hold_action not in HOLD_ACTIONS:
        raise ValueError(f"hold action must be one of {', '.join(HOLD_ACTIONS)}, not {hold_action!r}")
    return Ban(
        subject=watch_subject(indicator),
        reason=f"{KINDS[indicator.kind].description} of {indicator.actor.name}, confidence {indicator.confidence}",
        source=f"intel:{indicator.source}",
        ts=indicator.valid_from.timestamp(),
        action=hold_action,
        actor=f"{indicator.source}/{indicator.actor.actor_id}",
        expires=indicator.valid_until.timestamp() if indicator.valid_until else None,
        confidence=min(indicator.confidence, KINDS[indicator.kind].confidence),
    )


async def sync_watch(
    state: EnforcementState, records: Iterable[SharedIndicator], hold_action: str = "ban"
) -> tuple[int, int]:
    """Make the enforcement list's watch entries those of `records` (active ones): new and changed
    entries written, entries no longer wanted (revoked, expired, withdrawn) lifted. Returns
    (written, lifted)."""
    wanted = {entry.subject: entry for entry in (watch_entry(r, hold_action) for r in records)}
    current = {e.subject: e for e in state.entries() if e.subject.startswith(WATCH)}
    written = lifted = 0
    for subject in sorted(set(current) - set(wanted)):
        await state.lift(subject)
        lifted += 1
    for subject, entry in sorted(wanted.items()):
        have = current.get(subject)
        if have is not None and (
            have.reason,
            have.ts,
            have.action,
            have.actor,
            have.expires,
            have.confidence,
        ) == (
            entry.reason,
            entry.ts,
            entry.action,
            entry.actor,
            entry.expires,
            entry.confidence,
        ):
            continue
        await state.put(entry)
        written += 1
    return written, lifted


@dataclass
class AccountValues:
    """What one account shows, in the clear, on our side: hashed here, compared, never stored."""

    payment: list[str] = field(default_factory=list)
    signup_ip: list[str] = field(default_factory=list)
    email_domain: list[str] = field(default_factory=list)
    tls_asn: list[str] = field(default_factory=list)
    template: list[str] = field(default_factory=list)  # template frames
    system_prompt: list[str] = field(default_factory=list)  # system-prompt frames

    def by_kind(self) -> dict[str, list[str]]:
        return {kind: getattr(self, kind) for kind in KINDS}


@dataclass
class WatchMatch:
    """A peer actor an account matched, with the entries it matched and how strongly."""

    peer: str
    actor: str
    entries: dict[str, Ban]  # kind -> the entry it matched
    score: float

    @property
    def kinds(self) -> list[str]:
        return sorted(self.entries)

    def reason(self) -> str:
        described = "; ".join(self.entries[k].reason for k in self.kinds)
        return f"matches indicators shared by peer {self.peer}: {described}; held pending review"


class WatchIndex:
    """Watch entries by keyed hash, and SimHash signatures by band, for lookups per account."""

    def __init__(self, entries: Iterable[Ban], keys: CommunityKeys) -> None:
        self.keys = keys
        self.exact: dict[tuple[str, str, str], list[Ban]] = defaultdict(list)
        self.bands: dict[tuple[str, str, int, int], list[tuple[int, Ban]]] = defaultdict(list)
        self.key_ids: dict[str, set[str]] = defaultdict(set)  # kind -> key ids with entries
        self.size = 0
        for entry in entries:
            parts = entry.subject.split(":")
            if len(parts) != 6 or parts[0] + ":" != WATCH or entry.lifted:
                continue
            _, _, kind, key_id, digest, _actor = parts
            spec = KINDS.get(kind)
            if spec is None or key_id not in keys.secrets:
                continue
            self.key_ids[kind].add(key_id)
            self.size += 1
            if spec.signature:
                try:
                    signature = int(digest, 16)
                except ValueError:
                    continue
                for band in range(_BANDS):
                    self.bands[(kind, key_id, band, _band(signature, band))].append((signature, entry))
            else:
                self.exact[(kind, key_id, digest)].append(entry)

    def __len__(self) -> int:
        return self.size

    def candidates(self, values: AccountValues, now: float) -> list[Ban]:
        found: list[Ban] = []
        for kind, raw in values.by_kind().items():
            if not raw or kind not in self.key_ids:
                continue
            for key_id in self.key_ids[kind]:
                if KINDS[kind].signature:
                    key = self.keys.content_key(key_id)
                    for text in raw:
                        signature = simhash64(text, key)
                        if signature is None:
                            continue
                        seen: set[int] = set()
                        for band in range(_BANDS):
                            for other, entry in self.bands.get(
                                (kind, key_id, band, _band(signature, band)), ()
                            ):
                                if (
                                    id(entry) not in seen
                                    and (signature ^ other).bit_count() <= SIMHASH_RADIUS
                                ):
                                    seen.add(id(entry))
                                    found.append(entry)
                else:
                    for value in raw:
                        found += self.exact.get((kind, key_id, self.keys.digest(kind, value, key_id)), ())
        return [e for e in found if e.expires is None or e.expires > now]

    def match(
        self, values: AccountValues, created_ts: float | None, now: float | None = None
    ) -> WatchMatch | None:
        """The peer actor this account matches most strongly, if strongly enough to hold it."""
        now = time.time() if now is None else now
        by_actor: dict[tuple[str, str], dict[str, Ban]] = defaultdict(dict)
        for entry in self.candidates(values, now):
            kind = entry.subject.split(":")[2]
            peer = entry.source.removeprefix("intel:")
            by_actor[(peer, entry.actor or entry.subject)].setdefault(kind, entry)
        best: WatchMatch | None = None
        for (peer, actor), entries in by_actor.items():
            pieces: list[float] = []
            for kind, entry in entries.items():
                spec = KINDS[kind]
                confidence = min(entry.confidence or 0, spec.confidence) / 100.0
                newer = created_ts is not None and created_ts >= entry.ts
                pieces += [confidence, confidence] if spec.age_checked and newer else [confidence]
            score = evidence(pieces)
            if score >= HOLD_AT - 1e-9 and (best is None or score > best.score):
                best = WatchMatch(peer=peer, actor=actor, entries=entries, score=score)
        return best


def _band(signature: int, band: int) -> int:
    return (signature >> (band * _BAND_BITS)) & ((1 << _BAND_BITS) - 1)


def hold_entry(account_id: str, match: WatchMatch) -> Ban:
    """The account's own entry that holds it: every replica refuses (or throttles) it, and the
    review UI opens a case naming the peer."""
    action = "ban" if any(e.action == "ban" for e in match.entries.values()) else "throttle"
    return Ban(
        subject=ban_subject("account", account_id),
        reason=match.reason(),
        source=f"intel:{match.peer}",
        action=action,
        actor=match.actor,
        hold=True,
    )


def call_values(call: CallView, caller: Caller) -> AccountValues:
    """What the gateway knows of a caller on a call: its keys-file payment fingerprint and sign-up
    address, its TLS fingerprint within its ASN, and the call's template and system-prompt frames."""
    values = AccountValues()
    for subject in caller.indicators:
        kind, _, value = subject.partition(":")
        if kind in ("payment", "signup_ip") and value:
            getattr(values, kind).append(value)
    if call.client_tls_fingerprint and call.client_asn is not None:
        values.tls_asn.append(tls_asn_key(call.client_tls_fingerprint, call.client_asn))
    frame = template_frame(call.prompt) if call.prompt else None
    if frame:
        values.template.append(frame)
    system = system_frame(call.system_prompt) if call.system_prompt else None
    if system:
        values.system_prompt.append(system)
    return values


class PeerWatch:
    """The gateway's side: matches each call of an account that has no entry of its own against
    the watch entries in the enforcement list (re-indexed at most once per `refresh_s`)."""

    def __init__(self, state: EnforcementState, keys: CommunityKeys, *, refresh_s: float = 1.0) -> None:
        self.state = state
        self.keys = keys
        self.refresh_s = refresh_s
        self._index = WatchIndex((), keys)
        self._built = -float("inf")

    def index(self) -> WatchIndex:
        clock = time.monotonic()
        if clock - self._built >= self.refresh_s:
            self._built = clock
            entries = self.state.entries() if self.state.has_indicators else []
            self._index = WatchIndex((e for e in entries if e.subject.startswith(WATCH)), self.keys)
        return self._index

    async def hold(self, call: CallView, caller: Caller, decision: Decision) -> Ban | None:
        index = self.index()
        if not len(index):
            return None
        match = index.match(call_values(call, caller), caller.created_ts)
        if match is None:
            return None
        entry = hold_entry(caller.account_id, match)
        if not decision.enforced:
            decision.notes.append(f"shadow: would hold: {entry.reason}")
            return None
        try:
            await self.state.put(entry)
        except StateUnavailable as error:
            decision.notes.append(f"hold not recorded: {error}")
        decision.notes.append(f"held: {entry.reason}")
        return entry


def from_env(state: EnforcementState) -> PeerWatch | None:
    """A PeerWatch when the environment names a community key (DISTILLGUARD_INTEL_KEYS_FILE or
    DISTILLGUARD_INTEL_KEY), else None: without a key no peer indicator can be matched."""
    keys = CommunityKeys.from_env()
    if keys is None:
        return None
    log.info("matching peers' watch entries under community keys %s", ", ".join(keys.ids))
    return PeerWatch(state, keys)


def account_values(account: Any, frames: Sequence[tuple[str, str]] = ()) -> AccountValues:
    """An `accounts.jsonl` record's values (and (prompt, system) pairs of its calls), for a sweep."""
    values = AccountValues()
    if getattr(account, "payment_fingerprint", None):
        values.payment.append(account.payment_fingerprint)
    if getattr(account, "signup_ip", None):
        values.signup_ip.append(account.signup_ip)
    if getattr(account, "email_domain", None):
        values.email_domain.append(account.email_domain)
    for prompt, system in frames:
        frame = template_frame(prompt) if prompt else None
        if frame and frame not in values.template:
            values.template.append(frame)
        sys_frame = system_frame(system) if system else None
        if sys_frame and sys_frame not in values.system_prompt:
            values.system_prompt.append(sys_frame)
    return values


def utc_now() -> datetime:
    return datetime.now(UTC)
