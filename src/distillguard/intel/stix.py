"""The STIX 2.1 boundary: our shared actors out as STIX objects (built with the `stix2` library, the
OASIS reference implementation, so every object is checked against the specification as it is
made), and a peer's objects in as typed records, each bad one a counted rejection.

One actor becomes: a `threat-actor`; an `indicator` per keyed value, whose pattern names the value's
kind, the community key id and the keyed hash (or SimHash signature) on DistillGuard's own
cyber-observable type `x-distillguard-indicator`; `indicates` relationships from each indicator to
the actor; a `uses` relationship to the MITRE ATLAS technique AML.T0024.002 (Extract AI Model);
a `sighting` per indicator with how many of our accounts carried it. Every object is marked with a
TLP 2.0 marking definition and created by our `identity`. Ids are derived (UUIDv5) from the
deployment, the case and the value, so a re-export names the same objects and peers update them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stix2

from distillguard.intel.community_key import CommunityKeys
from distillguard.intel.export import NAMESPACE
from distillguard.intel.records import KINDS, ActorRef, SharedActor, SharedIndicator

OBSERVABLE = "x-distillguard-indicator"
STIX_MEDIA_TYPE = "application/stix+json;version=2.1"
ATLAS_TECHNIQUE = "AML.T0024.002"
ATLAS_URL = "https://atlas.mitre.org/techniques/AML.T0024.002"
_FIXED = "2026-01-01T00:00:00.000Z"  # creation time of the objects that never change

# TLP 2.0 marking definitions, as published by OASIS (cti-stix-common-objects, tlp-2.0): fixed ids
# every STIX 2.1 consumer recognises.
TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
DEFAULT_TLP = "amber+strict"  # the peer's organisation only: indicators of its customers' abusers

# The only pattern we read or write: one observation, three equalities.
_PATTERN = re.compile(
    r"^\[x-distillguard-indicator:kind = '(?P<kind>[a-z_]{1,32})'"
    r" AND x-distillguard-indicator:key_id = '(?P<key_id>[A-Za-z0-9._-]{1,64})'"
    r" AND x-distillguard-indicator:(?P<prop>hmac_sha256|simhash64) = '(?P<digest>[0-9a-f]{1,64})'\]$"
)
_DIGEST_LENGTH = {"hmac_sha256": 64, "simhash64": 16}


def tlp_marking(level: str) -> stix2.MarkingDefinition:
    if level not in TLP2_IDS:
        raise ValueError(f"TLP level must be one of {', '.join(TLP2_IDS)}, not {level!r}")
    return stix2.MarkingDefinition(
        id=TLP2_IDS[level],
        created="2022-10-01T00:00:00.000Z",
        name=f"TLP:{level.upper()}",
        extensions={TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}},
    )


def _id(kind: str, name: str) -> str:
    return f"{kind}--{uuid.uuid5(NAMESPACE, name)}"


def identity(deployment: str) -> stix2.Identity:
    return stix2.Identity(
        id=_id("identity", f"identity/{deployment}"),
        created=_FIXED,
        modified=_FIXED,
        name=deployment,
        identity_class="organization",
        description="A DistillGuard deployment sharing distillation actors' indicators as keyed hashes.",
    )


def attack_pattern(creator: str, marking: str) -> stix2.AttackPattern:
    return stix2.AttackPattern(
        id=_id("attack-pattern", f"mitre-atlas/{ATLAS_TECHNIQUE}"),
        created=_FIXED,
        modified=_FIXED,
        created_by_ref=creator,
        name="Extract AI Model",
        description="Querying a model's API to collect outputs for training a copy (model distillation).",
        external_references=[
            {"source_name": "mitre-atlas", "external_id": ATLAS_TECHNIQUE, "url": ATLAS_URL}
        ],
        object_marking_refs=[marking],
    )


def pattern(indicator: SharedIndicator) -> str:
    prop = "simhash64" if KINDS[indicator.kind].signature else "hmac_sha256"
    return (
        f"[{OBSERVABLE}:kind = '{indicator.kind}' AND {OBSERVABLE}:key_id = '{indicator.key_id}'"
        f" AND {OBSERVABLE}:{prop} = '{indicator.digest}']"
    )


def indicator_id(indicator: SharedIndicator) -> str:
    return _id(
        "indicator", f"{indicator.actor.actor_id}/{indicator.kind}/{indicator.key_id}/{indicator.digest}"
    )


@dataclass
class Versioned:
    """An object we publish: its id, its STIX JSON, and the case it belongs to (None: shared)."""

    object_id: str
    object_type: str
    version: datetime
    body: dict[str, Any]
    case_id: int | None = None

    def content(self) -> dict[str, Any]:
        """The body without `modified`: two versions with equal content are the same statement."""
        return {k: v for k, v in self.body.items() if k != "modified"}


def _dump(obj: Any, case_id: int | None = None) -> Versioned:
    body = json.loads(obj.serialize())
    return Versioned(
        object_id=body["id"],
        object_type=body["type"],
        version=_parse_time(body.get("modified") or body.get("created") or _FIXED),
        body=body,
        case_id=case_id,
    )


def common_objects(deployment: str, tlp: str = DEFAULT_TLP) -> list[Versioned]:
    """The objects every actor refers to: our identity, the TLP marking, the ATLAS technique."""
    me, marking = identity(deployment), tlp_marking(tlp)
    return [_dump(marking), _dump(me), _dump(attack_pattern(me.id, marking.id))]


def actor_objects(actor: SharedActor, deployment: str, tlp: str = DEFAULT_TLP) -> list[Versioned]:
    """One actor's objects, as of its decision (`created` = `modified` = the decision time)."""
    me, marking = identity(deployment).id, TLP2_IDS[tlp]
    when = actor.decided_at
    common = {"created_by_ref": me, "object_marking_refs": [marking], "created": when, "modified": when}
    threat_actor = stix2.ThreatActor(
        id=actor.actor.actor_id,
        name=actor.actor.name,
        description=(
            f"An operator of {actor.n_accounts} account(s) {'banned' if actor.decision == 'ban' else 'throttled'} "
            "after review for adversarial distillation (harvesting model outputs to train another model)."
        ),
        threat_actor_types=["competitor"],
        goals=["copy a language model's capabilities through its API"],
        first_seen=actor.first_seen or when,
        last_seen=max(actor.last_seen or when, actor.first_seen or when),
        confidence=max((i.confidence for i in actor.indicators), default=50),
        **common,
    )
    technique = _id("attack-pattern", f"mitre-atlas/{ATLAS_TECHNIQUE}")
    out = [
        _dump(threat_actor, actor.case_id),
        _dump(
            stix2.Relationship(
                id=_id("relationship", f"{actor.actor.actor_id}/uses/{technique}"),
                relationship_type="uses",
                source_ref=actor.actor.actor_id,
                target_ref=technique,
                **common,
            ),
            actor.case_id,
        ),
    ]
    for shared in actor.indicators:
        ident = indicator_id(shared)
        out.append(
            _dump(
                stix2.Indicator(
                    id=ident,
                    name=f"{KINDS[shared.kind].description} of {actor.actor.name}",
                    description=(
                        f"A keyed hash ({'SimHash signature' if KINDS[shared.kind].signature else 'HMAC-SHA256'}"
                        f" under community key {shared.key_id}) of a {KINDS[shared.kind].description};"
                        " match it by hashing your own value the same way. Hold for review; do not ban on it alone."
                    ),
                    indicator_types=["attribution"],
                    pattern=pattern(shared),
                    pattern_type="stix",
                    pattern_version="2.1",
                    valid_from=shared.valid_from,
                    valid_until=shared.valid_until,
                    confidence=shared.confidence,
                    kill_chain_phases=[{"kill_chain_name": "mitre-atlas", "phase_name": "exfiltration"}],
                    **common,
                ),
                actor.case_id,
            )
        )
        out.append(
            _dump(
                stix2.Relationship(
                    id=_id("relationship", f"{ident}/indicates/{actor.actor.actor_id}"),
                    relationship_type="indicates",
                    source_ref=ident,
                    target_ref=actor.actor.actor_id,
                    **common,
                ),
                actor.case_id,
            )
        )
        out.append(
            _dump(
                stix2.Sighting(
                    id=_id("sighting", f"{ident}/sighting"),
                    sighting_of_ref=ident,
                    where_sighted_refs=[me],
                    count=max(shared.sightings, 1),
                    first_seen=actor.first_seen or when,
                    last_seen=max(actor.last_seen or when, actor.first_seen or when),
                    summary=False,
                    **common,
                ),
                actor.case_id,
            )
        )
    return out


def revoke(published: Versioned, when: datetime) -> Versioned:
    """A new version of a published object that withdraws it (`revoked`: true)."""
    parsed = stix2.parse(published.body, allow_custom=False)
    return _dump(parsed.new_version(revoked=True, modified=when), published.case_id)


def bundle(objects: Iterable[Versioned]) -> dict[str, Any]:
    """A bundle of objects (validated again as a whole by `stix2`), as a JSON-ready dict."""
    made = stix2.Bundle(
        objects=[stix2.parse(o.body, allow_custom=False) for o in objects], allow_custom=False
    )
    parsed: dict[str, Any] = json.loads(made.serialize())
    return parsed


# ---- in: a peer's objects ------------------------------------------------------------------------
@dataclass
class PeerActor:
    actor_id: str
    name: str
    version: datetime
    revoked: bool


@dataclass
class PeerLink:
    relationship_id: str
    indicator_id: str
    actor_id: str
    version: datetime
    revoked: bool


@dataclass
class Received:
    """What a page of a peer's objects held: typed records, and every rejection counted with why."""

    indicators: list[SharedIndicator] = field(default_factory=list)
    actors: list[PeerActor] = field(default_factory=list)
    links: list[PeerLink] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)  # object types we do not use
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count
    details: list[str] = field(default_factory=list)  # the first few, each naming the object

    def reject(self, reason: str, where: str, detail: str) -> None:
        self.rejected[reason] += 1
        if len(self.details) < 50:
            self.details.append(f"{where}: {reason}: {detail}"[:400])

    def merge(self, other: Received) -> None:
        self.indicators += other.indicators
        self.actors += other.actors
        self.links += other.links
        self.ignored.update(other.ignored)
        self.rejected.update(other.rejected)
        self.details += other.details[: max(0, 50 - len(self.details))]


USED_TYPES = ("indicator", "threat-actor", "intrusion-set", "relationship")
_COMMON = ("type", "spec_version", "id", "created", "modified")
REQUIRED = {
    "indicator": (*_COMMON, "pattern", "pattern_type", "valid_from"),
    "threat-actor": (*_COMMON, "name"),
    "intrusion-set": (*_COMMON, "name"),
    "relationship": (*_COMMON, "relationship_type", "source_ref", "target_ref"),
}
KNOWN_TYPES = (
    *USED_TYPES,
    "identity",
    "marking-definition",
    "attack-pattern",
    "sighting",
    "extension-definition",
)


def read_objects(
    objects: Sequence[Any],
    peer: str,
    keys: CommunityKeys,
    *,
    now: datetime,
    min_confidence: int = 50,
    where: str = "envelope",
) -> Received:
    """A peer's STIX objects as records. Each object is parsed strictly (`stix2.parse`, no custom
    properties or objects); an object that fails, carries a pattern that is not STIX or not ours,
    names a key id we do not hold, has expired or is below `min_confidence` is rejected and counted,
    and nothing from it is used."""
    out = Received()
    for index, raw in enumerate(objects):
        label = f"{where} objects[{index}]"
        if not isinstance(raw, Mapping):
            out.reject("malformed", label, "not a JSON object")
            continue
        object_id = str(raw.get("id", ""))[:120]
        label = f"{label} ({object_id or 'no id'})"
        kind = raw.get("type")
        if kind not in KNOWN_TYPES:
            out.reject("unsupported_type", label, f"type {str(kind)[:60]!r} is not one DistillGuard reads")
            continue
        missing = [name for name in REQUIRED.get(str(kind), ()) if name not in raw]
        if missing:
            # `stix2` would fill them in (now, for a timestamp): a peer's object must say them itself
            out.reject(
                "malformed",
                label,
                f"required propert{'ies' if len(missing) > 1 else 'y'} missing: {', '.join(missing)}",
            )
            continue
        confidence = raw.get("confidence", 0)
        if not isinstance(confidence, int) or isinstance(confidence, bool) or not 0 <= confidence <= 100:
            out.reject("malformed", label, "confidence must be an integer from 0 to 100")
            continue
        if kind == "indicator" and raw.get("pattern_type") != "stix":
            out.reject("not_stix_pattern", label, f"pattern_type {str(raw.get('pattern_type'))[:40]!r}")
            continue
        if kind == "indicator" and not (isinstance(raw.get("pattern"), str) and raw["pattern"].strip()):
            out.reject("not_stix_pattern", label, "the pattern is empty or not a string")
            continue
        try:
            parsed = stix2.parse(dict(raw), allow_custom=False)
        except Exception as error:  # hostile input: the libraries raise anything (stix2-patterns, NameError)
            reason = "not_stix_pattern" if kind == "indicator" and "'pattern'" in str(error) else "malformed"
            out.reject(reason, label, str(error).splitlines()[0] if str(error) else type(error).__name__)
            continue
        if parsed.get("spec_version") != "2.1":
            out.reject("malformed", label, "spec_version is not 2.1")
            continue
        if kind not in USED_TYPES:
            out.ignored[str(kind)] += 1
            continue
        version = _parse_time(str(parsed.get("modified") or parsed.get("created")))
        revoked = bool(parsed.get("revoked", False))
        if kind in ("threat-actor", "intrusion-set"):
            out.actors.append(PeerActor(parsed.id, str(parsed.name)[:200], version, revoked))
        elif kind == "relationship":
            if parsed.relationship_type == "indicates" and parsed.source_ref.startswith("indicator--"):
                out.links.append(PeerLink(parsed.id, parsed.source_ref, parsed.target_ref, version, revoked))
            else:
                out.ignored[f"relationship {parsed.relationship_type}"] += 1
        else:
            _read_indicator(parsed, peer, keys, version, revoked, now, min_confidence, label, out)
    return out


def _read_indicator(
    parsed: Any,
    peer: str,
    keys: CommunityKeys,
    version: datetime,
    revoked: bool,
    now: datetime,
    min_confidence: int,
    label: str,
    out: Received,
) -> None:
    match = _PATTERN.match(parsed.pattern)
    if match is None:
        out.reject("unsupported_pattern", label, f"not a {OBSERVABLE} pattern: {parsed.pattern[:120]!r}")
        return
    kind, key_id, prop, digest = match["kind"], match["key_id"], match["prop"], match["digest"]
    spec = KINDS.get(kind)
    if spec is None or spec.signature != (prop == "simhash64") or len(digest) != _DIGEST_LENGTH[prop]:
        out.reject("unsupported_pattern", label, f"kind {kind!r} with {prop} of {len(digest)} hex digits")
        return
    if key_id not in keys.secrets:
        out.reject("unknown_key_id", label, f"key id {key_id!r} is not one of ours ({', '.join(keys.ids)})")
        return
    valid_from = _parse_time(str(parsed.valid_from))
    valid_until = _parse_time(str(parsed.valid_until)) if parsed.get("valid_until") else None
    # a peer's validity never exceeds what we would give the kind ourselves
    longest = valid_from + spec.ttl
    valid_until = min(valid_until, longest) if valid_until else longest
    record = SharedIndicator(
        kind=kind,
        key_id=key_id,
        digest=digest,
        actor=ActorRef(actor_id="", name=""),  # filled from its `indicates` relationship
        confidence=int(parsed.get("confidence", 0) or 0),
        valid_from=valid_from,
        valid_until=valid_until,
        source=peer,
        object_id=parsed.id,
        version=version,
        revoked=revoked,
    )
    if not revoked:
        if record.expired(now):
            out.reject("expired", label, f"valid until {valid_until:%Y-%m-%dT%H:%M:%SZ}")
            return
        if record.confidence < min_confidence:
            out.reject("low_confidence", label, f"confidence {record.confidence} < {min_confidence}")
            return
    out.indicators.append(record)


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
