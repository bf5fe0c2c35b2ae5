"""The exported bundle is valid STIX 2.1 under strict parsing and holds no raw value; publishing
versions objects and revokes withdrawn ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import stix2

from distillguard.cases.store import CaseStore
from distillguard.intel.publish import default_collection, export_bundle, publish
from distillguard.intel.stix import ATLAS_TECHNIQUE, TLP2_IDS
from distillguard.intel.store import IntelStore
from tests.intel.conftest import KEYS, RAW_VALUES, account_records, actor_case


def test_bundle_is_strict_stix_2_1(cases: CaseStore) -> None:
    made, _ = export_bundle(cases, KEYS, "lab-a", accounts=account_records())
    text = json.dumps(made)
    parsed = stix2.parse(text, allow_custom=False)
    types = sorted({o.type for o in parsed.objects})
    assert types == [
        "attack-pattern",
        "identity",
        "indicator",
        "marking-definition",
        "relationship",
        "sighting",
        "threat-actor",
    ]
    indicators = [o for o in parsed.objects if o.type == "indicator"]
    assert len(indicators) == 7  # 2 cards, address, TLS, e-mail domain, template, system prompt
    for indicator in indicators:
        assert indicator.pattern_type == "stix" and indicator.valid_until > indicator.valid_from
        assert 0 < indicator.confidence <= 100
        assert indicator.object_marking_refs == [TLP2_IDS["amber+strict"]]
    technique = next(o for o in parsed.objects if o.type == "attack-pattern")
    assert technique.external_references[0].external_id == ATLAS_TECHNIQUE
    relations = Counter_of(o.relationship_type for o in parsed.objects if o.type == "relationship")
    assert relations == {"indicates": 7, "uses": 1}
    sightings = [o for o in parsed.objects if o.type == "sighting"]
    assert len(sightings) == 7 and all(s.count >= 1 for s in sightings)


def Counter_of(items: object) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(items))  # type: ignore[arg-type]


def test_no_raw_value_leaves(cases: CaseStore) -> None:
    made, _ = export_bundle(cases, KEYS, "lab-a", accounts=account_records())
    text = json.dumps(made)
    case = cases.case(1)
    raw = set(RAW_VALUES)
    raw |= {v for values in case["indicators"].values() for v in values}  # fingerprints and ids
    raw |= {a["account_id"] for a in case["accounts"]}
    raw |= {s["prompt"][:40] for s in case["samples"]} | {s["system"][:40] for s in case["samples"]}
    raw |= {"pm_other_acct-x3", "actor-forge"}
    for value in sorted(raw):
        assert value not in text, value
        assert value.lower() not in text.lower(), value


@pytest.mark.parametrize("tlp", ["clear", "green", "amber", "amber+strict", "red"])
def test_every_tlp_2_level(cases: CaseStore, tlp: str) -> None:
    made, _ = export_bundle(cases, KEYS, "lab-a", tlp=tlp)
    marking = next(o for o in made["objects"] if o["type"] == "marking-definition")
    assert marking["id"] == TLP2_IDS[tlp] and marking["name"] == f"TLP:{tlp.upper()}"
    stix2.parse(json.dumps(made), allow_custom=False)


def test_publish_versions_and_revokes(url: str) -> None:
    cases = CaseStore.open(url)
    try:
        intel = IntelStore.open(cases)
        cases.upsert(actor_case())
        collection = default_collection("lab-a")
        assert publish(cases, intel, KEYS, "lab-a", collection).added == 3  # nothing decided: common objects
        cases.decide(1, "ivy", "ban", "three accounts, one card, judge harvesting", {})
        first = publish(cases, intel, KEYS, "lab-a", collection)
        assert (first.added, first.updated, first.revoked) == (5 * 3 + 2, 0, 0)
        again = publish(cases, intel, KEYS, "lab-a", collection)
        assert (again.added, again.updated, again.revoked, again.unchanged) == (0, 0, 0, 20)
        shared = intel.shared_of_case(1)
        assert sum(1 for o in shared["objects"] if o["object_type"] == "indicator" and not o["revoked"]) == 5
        cases.set_withhold(1, "ivy", True)
        withdrawn = publish(cases, intel, KEYS, "lab-a", collection)
        assert (withdrawn.added, withdrawn.revoked) == (0, 17)
        rows = intel.objects(collection, versions="all", limit=1000)
        revoked = [json.loads(r.body) for r in rows if r.revoked]
        assert len(revoked) == 17 and all(o["revoked"] is True for o in revoked)
        for body in revoked:  # each revocation is a valid newer version of the same object
            older = next(json.loads(r.body) for r in rows if r.object_id == body["id"] and not r.revoked)
            assert body["modified"] > older["modified"] and body["created"] == older["created"]
            stix2.parse(body, allow_custom=False)
        assert intel.published_cases() == [
            {"case_id": 1, "live": 0, "revoked": 5, "last": intel.published_cases()[0]["last"], "peers": []}
        ]
        cases.set_withhold(1, "ivy", False)
        back = publish(cases, intel, KEYS, "lab-a", collection)
        assert back.added == 17 and back.revoked == 0  # new ids: revoked objects never return
    finally:
        cases.close()


def test_date_added_only_grows(tmp_path: Path) -> None:
    cases = CaseStore.open(str(tmp_path / "c.db"))
    intel = IntelStore.open(cases)
    cases.upsert(actor_case())
    cases.decide(1, "ivy", "ban", "three accounts, one card, judge harvesting", {})
    collection = default_collection("lab-a")
    publish(cases, intel, KEYS, "lab-a", collection)
    cases.decide(1, "ivy", "throttle", "downgraded: payment dispute explained it", {})
    publish(cases, intel, KEYS, "lab-a", collection)
    rows = intel.objects(collection, versions="all", limit=1000)
    added = [(r.date_added, r.seq) for r in rows]
    assert added == sorted(added) and len({r.date_added for r in rows}) == 2
    cases.close()
