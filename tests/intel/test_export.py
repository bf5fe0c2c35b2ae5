"""Our decided cases as shareable actors: which cases, which indicators (rare ones that linked the
accounts), which confidence, and nothing in the clear."""

from __future__ import annotations

from collections import Counter

from distillguard.cases.store import CaseStore
from distillguard.intel.export import shared_actors
from distillguard.intel.records import KINDS
from tests.intel.conftest import (
    COMMON_TLS,
    EMAIL_RARE,
    KEYS,
    PAYMENT,
    SIGNUP,
    TLS,
    account_records,
)


def test_only_decided_cases_not_withheld(cases: CaseStore) -> None:
    assert [a.case_id for a in shared_actors(cases, KEYS, "lab-a")] == [1]
    cases.set_withhold(1, "ivy", True)
    assert shared_actors(cases, KEYS, "lab-a") == []
    cases.set_withhold(1, "ivy", False)
    assert [a.case_id for a in shared_actors(cases, KEYS, "lab-a")] == [1]
    cases.decide(2, "ivy", "throttle", "one account, judge prompts at volume", {})
    assert sorted(a.decision for a in shared_actors(cases, KEYS, "lab-a")) == ["ban", "throttle"]
    cases.decide(1, "ivy", "clear", "false positive after all: a research lab", {})
    assert [a.case_id for a in shared_actors(cases, KEYS, "lab-a")] == [2]


def test_indicators_of_the_case(cases: CaseStore) -> None:
    (actor,) = shared_actors(cases, KEYS, "lab-a")
    by_kind = Counter(i.kind for i in actor.indicators)
    # one card, one sign-up address, the rare TLS client (not the cloud-wide one), the template and
    # the system prompt, each signed from a sample call; raw IPs never
    assert by_kind == {"payment": 1, "signup_ip": 1, "tls_asn": 1, "template": 1, "system_prompt": 1}
    digests = {i.kind: i.digest for i in actor.indicators}
    assert digests["payment"] == KEYS.digest("payment", PAYMENT)
    assert digests["signup_ip"] == KEYS.digest("signup_ip", SIGNUP)
    assert digests["tls_asn"] == KEYS.digest("tls_asn", TLS)
    assert KEYS.digest("tls_asn", COMMON_TLS) not in digests.values()
    assert actor.skipped == {"tls_asn: shared with more than 2 accounts outside the case": 1}
    for indicator in actor.indicators:
        assert indicator.key_id == "k1" and indicator.valid_until is not None
        assert indicator.valid_until - indicator.valid_from == KINDS[indicator.kind].ttl
        # only the actor's accounts used each value: the kind's full confidence
        assert indicator.confidence == KINDS[indicator.kind].confidence
        assert len(indicator.digest) == (16 if KINDS[indicator.kind].signature else 64)


def test_sign_up_records_add_each_account_s_card_and_rare_domains(cases: CaseStore) -> None:
    (actor,) = shared_actors(cases, KEYS, "lab-a", accounts=account_records())
    payments = {i.digest: i for i in actor.indicators if i.kind == "payment"}
    assert set(payments) == {KEYS.digest("payment", v) for v in (PAYMENT, "pm_other_acct-x3")}
    assert payments[KEYS.digest("payment", PAYMENT)].sightings == 2
    domains = [i.digest for i in actor.indicators if i.kind == "email_domain"]
    assert domains == [KEYS.digest("email_domain", EMAIL_RARE)]  # gmail.com is everyone's


def test_throttle_states_less_confidence(cases: CaseStore) -> None:
    cases.decide(1, "ivy", "throttle", "downgraded after a second look", {})
    (actor,) = shared_actors(cases, KEYS, "lab-a")
    payment = next(i for i in actor.indicators if i.kind == "payment")
    assert payment.confidence < KINDS["payment"].confidence


def test_ids_are_stable_until_the_case_is_shared_again(cases: CaseStore) -> None:
    first = shared_actors(cases, KEYS, "lab-a")[0].actor.actor_id
    assert shared_actors(cases, KEYS, "lab-a")[0].actor.actor_id == first
    assert shared_actors(cases, KEYS, "lab-b")[0].actor.actor_id != first  # per deployment
    cases.set_withhold(1, "ivy", True)
    cases.set_withhold(1, "ivy", False)
    # a revoked STIX object never comes back: sharing again names a new actor
    assert shared_actors(cases, KEYS, "lab-a")[0].actor.actor_id != first
