"""Our decided cases as shareable actors: each ban or throttle that no reviewer withheld, with its
indicators turned into keyed hashes and content signatures. Nothing here writes STIX (`intel.stix`
does) and no value leaves in the clear.

Where each kind comes from: payment fingerprints, sign-up addresses, TLS fingerprints within an
ASN, templates and system prompts from the case's linking indicators (what its accounts share);
with the sign-up records (`accounts.jsonl`) also every case account's own payment fingerprint and
its e-mail domain when the domain is uncommon (few accounts outside the case use it). Template
and system-prompt signatures are computed from the case's sample calls whose fingerprint is one of
the case's indicators; an indicator with no such sample is skipped and counted.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from distillguard.cases.store import CaseStore
from distillguard.events.call_view import CallView
from distillguard.events.model import Account
from distillguard.features.account_window import system_prompt_key
from distillguard.intel.community_key import CommunityKeys
from distillguard.intel.content import signature_hex, simhash64, system_frame, template_frame
from distillguard.intel.records import KINDS, THROTTLE_CONFIDENCE, ActorRef, SharedActor, SharedIndicator
from distillguard.signals.template import Template

SHARED_DECISIONS = {"banned": "ban", "throttled": "throttle"}
# An e-mail domain, sign-up address, TLS fingerprint within an ASN, template or system prompt is
# shared only when at most this many accounts outside the case use it: a big provider's domain or
# a popular SDK says nothing about an actor (and would hold strangers at a peer).
UNCOMMON_OTHERS = 2
NAMESPACE = uuid.UUID("6d1c3f0e-5b7a-4c52-9a43-0d5f2b1e8c71")  # DistillGuard's STIX id namespace


def actor_ref(deployment: str, case_id: int, epoch: datetime) -> ActorRef:
    """A stable actor id per (deployment, case, epoch): the same on every export, so peers update
    it. The epoch is the decision (or the reviewer sharing the case again after withholding it): a
    revoked STIX object never comes back, so sharing again names new objects."""
    seed = f"{deployment}/case/{case_id}/{epoch.astimezone(UTC).isoformat()}"
    return ActorRef(
        actor_id=f"threat-actor--{uuid.uuid5(NAMESPACE, seed)}",
        name=f"{deployment} distillation actor (case {case_id})",
    )


def domain_counts(accounts: Mapping[str, Account]) -> Counter[str]:
    return Counter(
        a.email_domain.strip().lower() for a in accounts.values() if a.email_domain and a.email_domain.strip()
    )


def shared_actors(
    store: CaseStore,
    keys: CommunityKeys,
    deployment: str,
    *,
    accounts: Mapping[str, Account] | None = None,
    limit: int = 100_000,
) -> list[SharedActor]:
    """Every banned or throttled case not withheld from sharing, oldest decision first."""
    accounts = accounts or {}
    domains = domain_counts(accounts)
    out: list[SharedActor] = []
    for status, decision in SHARED_DECISIONS.items():
        for row in store.queue(status=status, limit=limit):
            if row.get("withhold"):
                continue
            case = store.case(int(row["case_id"]))
            out.append(_shared_actor(case, decision, keys, deployment, accounts, domains))
    return sorted(out, key=lambda a: (a.decided_at, a.case_id))


def _decided_at(case: Mapping[str, Any], decision: str) -> tuple[datetime, datetime]:
    """When the standing decision was taken, and the sharing epoch (that, or a later re-share)."""
    decided: datetime | None = None
    shared_again: datetime | None = None
    for entry in case["audit"]:  # newest first
        if decided is None and entry["action"] == decision:
            decided = entry["ts"]
        if shared_again is None and entry["action"] == "share":
            shared_again = entry["ts"]
    standing: datetime = decided if decided is not None else case["updated_at"]
    return standing, max(standing, shared_again) if shared_again else standing


def _shared_actor(
    case: Mapping[str, Any],
    decision: str,
    keys: CommunityKeys,
    deployment: str,
    accounts: Mapping[str, Account],
    domains: Counter[str],
) -> SharedActor:
    case_id = int(case["case_id"])
    decided_at, epoch = _decided_at(case, decision)
    decided_at = epoch.astimezone(UTC)  # indicators are valid from when they were (re)shared
    members = [a["account_id"] for a in case["accounts"]]
    flagged = [a["first_flagged_at"] for a in case["accounts"] if a.get("first_flagged_at")]
    shared = SharedActor(
        case_id=case_id,
        actor=actor_ref(deployment, case_id, epoch),
        decision=decision,
        decided_at=decided_at,
        n_accounts=len(members),
        first_seen=min(flagged) if flagged else case["created_at"],
        last_seen=case["updated_at"],
    )
    indicators: Mapping[str, list[str]] = case.get("indicators") or {}
    linking = _linking_values(case, shared.skipped)
    # kind -> value -> who used it (a lower bound: the case keeps its strongest links)
    values: dict[str, dict[str, Seen]] = {kind: {} for kind in KINDS}
    for value in indicators.get("payment", []):
        values["payment"][value] = linking.get("payment", {}).get(value) or Seen()
    for kind in ("signup_ip", "tls_asn"):
        values[kind].update(linking.get(kind, {}))
    inside = Counter((accounts[m].email_domain or "").strip().lower() for m in members if m in accounts)
    payments = Counter(a.payment_fingerprint for a in accounts.values() if a.payment_fingerprint)
    paid_inside = Counter(accounts[m].payment_fingerprint for m in members if m in accounts)
    for account_id in members:
        record = accounts.get(account_id)
        if record is None:
            continue
        if record.payment_fingerprint:
            seen = values["payment"].setdefault(record.payment_fingerprint, Seen())
            seen.holders.add(account_id)
            seen.others = payments[record.payment_fingerprint] - paid_inside[record.payment_fingerprint]
        if record.signup_ip in values["signup_ip"]:
            values["signup_ip"][record.signup_ip].holders.add(account_id)
        domain = (record.email_domain or "").strip().lower()
        others = domains[domain] - inside[domain]
        if domain and others <= UNCOMMON_OTHERS:
            seen = values["email_domain"].setdefault(domain, Seen(others=others))
            seen.holders.add(account_id)
    scale = 1.0 if decision == "ban" else THROTTLE_CONFIDENCE
    digests: dict[str, dict[str, Seen]] = {
        kind: {keys.digest(kind, value): seen for value, seen in values[kind].items()}
        for kind, spec in KINDS.items()
        if not spec.signature
    }
    digests.update(
        _content_signatures(
            case, linking.get("template", {}), linking.get("system_prompt", {}), keys, shared.skipped
        )
    )
    for kind, spec in KINDS.items():
        for digest, seen in sorted(digests.get(kind, {}).items()):
            stated = spec.confidence if seen.others == 0 else spec.shared_confidence
            shared.indicators.append(
                SharedIndicator(
                    kind=kind,
                    key_id=keys.current,
                    digest=digest,
                    actor=shared.actor,
                    confidence=round(stated * scale),
                    valid_from=decided_at,
                    valid_until=decided_at + spec.ttl,
                    source=deployment,
                    sightings=max(len(seen.holders), 1),
                    case_id=case_id,
                )
            )
    return shared


@dataclass
class Seen:
    """Who used a value: the case's accounts seen with it, and how many accounts outside the case
    did (None: not known, so never called exclusive)."""

    holders: set[str] = field(default_factory=set)
    others: int | None = None


_USED_BY = re.compile(r"used by (\d+) account")


def _linking_values(case: Mapping[str, Any], skipped: dict[str, int]) -> dict[str, dict[str, Seen]]:
    """The case's indicators that actually linked its accounts (named in an edge's evidence) and
    that few accounts outside the case share, with the case accounts seen with each.

    A value the case's accounts merely have in common (a popular SDK's TLS fingerprint in a big
    cloud, a public template) linked nothing (linking weighs indicators by rarity) and would hold
    strangers at a peer: it is left out and counted. An edge says how many accounts of the whole
    scan used the value ("used by N account(s)"); one without that (an edge to a known actor) is
    kept but never called exclusive."""
    out: dict[str, dict[str, Seen]] = {}
    used_by: dict[tuple[str, str], int] = {}
    indicators: Mapping[str, list[str]] = case.get("indicators") or {}
    for edge in case.get("edges") or []:
        kind, evidence = str(edge.get("kind")), str(edge.get("evidence", ""))
        for value in indicators.get(kind, []):
            if value not in evidence:
                continue
            seen = out.setdefault(kind, {}).setdefault(value, Seen())
            seen.holders.update(
                x for x in (edge.get("a"), edge.get("b")) if isinstance(x, str) and not x.startswith("actor:")
            )
            found = _USED_BY.search(evidence)
            if found:
                used_by[(kind, value)] = max(used_by.get((kind, value), 0), int(found.group(1)))
    members = len(case.get("accounts") or [])
    for (kind, value), total in used_by.items():
        seen = out[kind][value]
        # the edges name some of the case accounts that used it (the case keeps its strongest
        # links); at least `total - members` users are outside the case, at most `total - named`
        if total - members > UNCOMMON_OTHERS:
            del out[kind][value]
            reason = f"{kind}: shared with more than {UNCOMMON_OTHERS} accounts outside the case"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        seen.others = max(total - len(seen.holders), 0)  # 0 only when the edges name every user
    for kind, values in indicators.items():
        unlinked = sum(1 for v in values if v not in out.get(kind, {}) and (kind, v) not in used_by)
        if unlinked and kind in KINDS and kind != "payment":
            reason = f"{kind}: linked no accounts (not in the case's edges)"
            skipped[reason] = skipped.get(reason, 0) + unlinked
    return out


def _content_signatures(
    case: Mapping[str, Any],
    templates: Mapping[str, Seen],
    systems: Mapping[str, Seen],
    keys: CommunityKeys,
    skipped: dict[str, int],
) -> dict[str, dict[str, Seen]]:
    """Signatures of the case's linking template and system-prompt indicators, from its sample
    calls; each keeps what is known of who used its fingerprint."""
    out: dict[str, dict[str, Seen]] = {"template": {}, "system_prompt": {}}
    found: dict[str, set[str]] = {"template": set(), "system_prompt": set()}
    key = keys.content_key()
    fingerprint = Template().fingerprint
    for sample in case.get("samples") or []:
        prompt, system = sample.get("prompt") or "", sample.get("system") or ""
        view = CallView(
            event_id=str(sample.get("event_id", "")),
            ts=sample.get("ts") or datetime.now(UTC),
            account_id=str(sample.get("account_id", "")),
            prompt=prompt,
            system_prompt=system,
        )
        for kind, wanted, print_, frame in (
            ("template", templates, fingerprint(view), template_frame(prompt)),
            ("system_prompt", systems, system_prompt_key(system) if system else "", system_frame(system)),
        ):
            if print_ not in wanted:
                continue
            value = simhash64(frame, key) if frame else None
            if value is None:
                continue
            seen = out[kind].setdefault(signature_hex(value), Seen(others=wanted[print_].others))
            seen.holders.add(view.account_id)
            found[kind].add(print_)
    for kind, wanted in (("template", templates), ("system_prompt", systems)):
        missing = len(set(wanted) - found[kind])
        if missing:
            reason = f"{kind}: no sample call to sign (or too short a frame)"
            skipped[reason] = skipped.get(reason, 0) + missing
    return out
