"""A peer's STIX objects in: every object parsed strictly; each bad one a counted rejection naming
it, nothing from it kept; good ones become typed records."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from distillguard.intel.records import ActorRef, SharedActor, SharedIndicator
from distillguard.intel.stix import actor_objects, common_objects, read_objects
from tests.intel.conftest import KEYS

# today at midnight: tests that check validity against the clock (`test_pull`) read these objects
# too, so a fixed date would expire them on the day after it
NOW = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def peer_objects(confidence: int = 90, valid_days: int = 30) -> list[dict[str, Any]]:
    actor = ActorRef(
        "threat-actor--0a5f5b0e-6a57-5d5b-8a0b-1b7b3c8d9e01", "lab-a distillation actor (case 9)"
    )
    indicator = SharedIndicator(
        kind="payment",
        key_id="k1",
        digest=KEYS.digest("payment", "pm_1"),
        actor=actor,
        confidence=confidence,
        valid_from=NOW - timedelta(days=10),
        valid_until=NOW + timedelta(days=valid_days),
        source="lab-a",
        sightings=2,
    )
    shared = SharedActor(9, actor, "ban", NOW - timedelta(days=1), 2, None, None, [indicator])
    return [o.body for o in common_objects("lab-a") + actor_objects(shared, "lab-a")]


def the(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["type"] == kind)


def test_good_objects_become_records() -> None:
    got = read_objects(peer_objects(), "lab-a", KEYS, now=NOW)
    assert not got.rejected
    (indicator,) = got.indicators
    assert (indicator.kind, indicator.key_id, indicator.source, indicator.confidence) == (
        "payment",
        "k1",
        "lab-a",
        90,
    )
    assert indicator.digest == KEYS.digest("payment", "pm_1")
    assert [a.name for a in got.actors] == ["lab-a distillation actor (case 9)"]
    assert len(got.links) == 1 and got.links[0].indicator_id == indicator.object_id
    assert got.ignored == {
        "marking-definition": 1,
        "identity": 1,
        "attack-pattern": 1,
        "sighting": 1,
        "relationship uses": 1,
    }


def _pattern(value: str) -> Any:
    def change(objects: list[dict[str, Any]]) -> None:
        the(objects, "indicator")["pattern"] = value

    return change


def _set(kind: str, field: str, value: Any) -> Any:
    def change(objects: list[dict[str, Any]]) -> None:
        the(objects, kind)[field] = value

    return change


def _drop(kind: str, field: str) -> Any:
    def change(objects: list[dict[str, Any]]) -> None:
        del the(objects, kind)[field]

    return change


def _append(value: Any) -> Any:
    return lambda objects: objects.append(value)


DIGEST = KEYS.digest("payment", "pm_1")
HOSTILE = [
    ("yara pattern", _set("indicator", "pattern_type", "yara"), "not_stix_pattern"),
    ("broken STIX pattern", _pattern("[x-distillguard-indicator:kind = 'payment' AND"), "not_stix_pattern"),
    ("empty pattern", _pattern(""), "not_stix_pattern"),
    ("someone else's pattern", _pattern("[ipv4-addr:value = '203.0.113.7']"), "unsupported_pattern"),
    (
        "OR instead of AND",
        _pattern(
            f"[x-distillguard-indicator:kind = 'payment' OR x-distillguard-indicator:key_id = 'k1' OR x-distillguard-indicator:hmac_sha256 = '{DIGEST}']"
        ),
        "unsupported_pattern",
    ),
    (
        "unknown kind",
        _pattern(
            f"[x-distillguard-indicator:kind = 'phone' AND x-distillguard-indicator:key_id = 'k1' AND x-distillguard-indicator:hmac_sha256 = '{DIGEST}']"
        ),
        "unsupported_pattern",
    ),
    (
        "short digest",
        _pattern(
            "[x-distillguard-indicator:kind = 'payment' AND x-distillguard-indicator:key_id = 'k1' AND x-distillguard-indicator:hmac_sha256 = 'abcd']"
        ),
        "unsupported_pattern",
    ),
    (
        "signature for a hashed kind",
        _pattern(
            "[x-distillguard-indicator:kind = 'payment' AND x-distillguard-indicator:key_id = 'k1' AND x-distillguard-indicator:simhash64 = '0123456789abcdef']"
        ),
        "unsupported_pattern",
    ),
    (
        "unknown key id",
        _pattern(
            f"[x-distillguard-indicator:kind = 'payment' AND x-distillguard-indicator:key_id = 'k9' AND x-distillguard-indicator:hmac_sha256 = '{DIGEST}']"
        ),
        "unknown_key_id",
    ),
    ("custom property", _set("indicator", "x_secret_sauce", 1), "malformed"),
    ("no valid_from", _drop("indicator", "valid_from"), "malformed"),
    ("no modified", _drop("threat-actor", "modified"), "malformed"),
    ("spec 2.0", _set("indicator", "spec_version", "2.0"), "malformed"),
    ("confidence 300", _set("indicator", "confidence", 300), "malformed"),
    ("not an object", _append(["indicator"]), "malformed"),
    ("a number", _append(7), "malformed"),
    ("unknown type", _append({"type": "x-evil", "id": "x-evil--1"}), "unsupported_type"),
    ("type missing", _append({"id": "indicator--1"}), "unsupported_type"),
    (
        "deep nesting",
        _set("indicator", "external_references", [{"source_name": "x", "description": "y"}] * 2 + [[[[[]]]]]),
        "malformed",
    ),
]


@pytest.mark.parametrize(("name", "change", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_objects_are_counted_rejections(name: str, change: Any, reason: str) -> None:
    original = peer_objects()
    objects = copy.deepcopy(original)
    change(objects)
    got = read_objects(objects, "lab-a", KEYS, now=NOW)
    assert got.rejected == {reason: 1}, got.details
    assert got.details and reason in got.details[0]
    # nothing from the refused object is kept; every other object still is
    hostile = [o for o in objects if o not in original]
    kept = {i.object_id for i in got.indicators} | {a.actor_id for a in got.actors}
    kept |= {link.relationship_id for link in got.links}
    for bad in hostile:
        assert not isinstance(bad, dict) or bad.get("id") not in kept
    good = read_objects(original, "lab-a", KEYS, now=NOW)
    assert len(got.indicators) + len(got.actors) + len(got.links) == 3 - sum(
        1 for bad in hostile if isinstance(bad, dict) and bad.get("type") in ("indicator", "threat-actor")
    )
    assert len(good.indicators) == 1


def test_expired_and_unconfident_indicators_are_refused() -> None:
    assert read_objects(peer_objects(valid_days=-1), "lab-a", KEYS, now=NOW).rejected == {"expired": 1}
    low = read_objects(peer_objects(confidence=30), "lab-a", KEYS, now=NOW, min_confidence=50)
    assert low.rejected == {"low_confidence": 1} and low.indicators == []


def test_a_peer_s_validity_is_capped_at_ours() -> None:
    objects = peer_objects()
    the(objects, "indicator")["valid_until"] = "2126-01-01T00:00:00Z"
    (indicator,) = read_objects(objects, "lab-a", KEYS, now=NOW).indicators
    assert indicator.valid_until is not None and indicator.valid_until - indicator.valid_from == timedelta(
        days=365
    )


def test_a_revoked_indicator_is_kept_as_a_revocation_even_expired() -> None:
    objects = peer_objects(valid_days=-1)
    the(objects, "indicator")["revoked"] = True
    (indicator,) = read_objects(objects, "lab-a", KEYS, now=NOW).indicators
    assert indicator.revoked


def test_fuzzed_objects_never_crash_the_reader() -> None:
    """Random fields replaced by random JSON values or removed: each object is kept or refused,
    and every refusal is counted."""
    import random

    rng = random.Random(13)
    values: list[Any] = [
        None,
        True,
        0,
        -1,
        10**30,
        1.5,
        "",
        "x" * 5000,
        "2026-13-45T00:00:00Z",
        [],
        {},
        [1, [2, [3]]],
        {"a": {"b": None}},
        "indicator--zzz",
        "\x00",
        "[file:name = 'x']",
    ]
    base = peer_objects()
    for _ in range(400):
        objects = copy.deepcopy(base)
        for _ in range(rng.randint(1, 4)):
            target = rng.choice(objects)
            if rng.random() < 0.2:
                del target[rng.choice(list(target))]
            else:
                target[rng.choice([*target, "extra"])] = rng.choice(values)
        got = read_objects(objects, "lab-a", KEYS, now=NOW)
        used = len(got.indicators) + len(got.actors) + len(got.links) + sum(got.ignored.values())
        assert used + sum(got.rejected.values()) == len(objects)
