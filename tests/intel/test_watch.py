"""Peers' indicators as watch entries: what holds an account (strong or corroborated evidence of
one peer actor), what never does (expired, lifted, unknown key, one weak kind), and the gateway
engine holding on the first call — never banning — and opening a case that names the peer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from distillguard.cases.evidence import sync_holds
from distillguard.cases.store import CaseStore
from distillguard.enforcement.engine import Caller, LiveEngine
from distillguard.enforcement.policy import default_policy
from distillguard.enforcement.state import Ban, MemoryState
from distillguard.events.call_view import CallView
from distillguard.intel.community_key import CommunityKeys
from distillguard.intel.content import simhash64, template_frame
from distillguard.intel.records import ActorRef, SharedIndicator
from distillguard.intel.watch import AccountValues, PeerWatch, WatchIndex, sync_watch, watch_entry
from tests.intel.conftest import KEYS, TEMPLATE_PROMPT

# whole days, so the parametrised ids are the same in every xdist worker collecting them
NOW = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
ACTOR = ActorRef("threat-actor--11111111-1111-5111-8111-111111111111", "lab-a actor (case 4)")
OTHER_ACTOR = ActorRef("threat-actor--22222222-2222-5222-8222-222222222222", "lab-a actor (case 5)")


def indicator(
    kind: str,
    value: str,
    *,
    confidence: int | None = None,
    actor: ActorRef = ACTOR,
    days: int = 30,
    key_id: str = "k1",
    peer: str = "lab-a",
) -> SharedIndicator:
    from distillguard.intel.records import KINDS

    if KINDS[kind].signature:
        frame = template_frame(value) or value
        signature = simhash64(frame, KEYS.content_key(key_id))
        assert signature is not None
        digest = f"{signature:016x}"
    else:
        digest = KEYS.digest(kind, value, key_id)
    return SharedIndicator(
        kind=kind,
        key_id=key_id,
        digest=digest,
        actor=actor,
        confidence=KINDS[kind].confidence if confidence is None else confidence,
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=days),
        source=peer,
    )


JUDGE = TEMPLATE_PROMPT.format(a="first answer", b="second answer")
SHARED = [
    indicator("payment", "pm_card"),
    indicator("signup_ip", "203.0.113.7"),  # exclusive at the peer: 85
    indicator("signup_ip", "198.51.100.20", confidence=55),  # a few others used it
    indicator("tls_asn", "tlsfp@AS64500"),
    indicator("email_domain", "forge-mail.example"),
    indicator("template", JUDGE),
    indicator("payment", "pm_other_actor", actor=OTHER_ACTOR),
    indicator("tls_asn", "tlsfp2@AS64501", actor=OTHER_ACTOR),
]
OLD = (NOW - timedelta(days=400)).timestamp()  # opened long before the peer's decision
NEW = NOW.timestamp()  # opened after it: came back


@pytest.mark.parametrize(
    ("values", "created", "held", "kinds"),
    [
        (AccountValues(payment=["pm_card"]), OLD, True, ["payment"]),
        (AccountValues(signup_ip=["203.0.113.7"]), OLD, True, ["signup_ip"]),
        (AccountValues(signup_ip=["198.51.100.20"]), OLD, False, None),  # shared address alone
        (AccountValues(signup_ip=["198.51.100.20"], tls_asn=["tlsfp@AS64500"]), OLD, False, None),
        # ... the same two on an account opened after the peer's decision: it came back
        (
            AccountValues(signup_ip=["198.51.100.20"], tls_asn=["tlsfp@AS64500"]),
            NEW,
            True,
            ["signup_ip", "tls_asn"],
        ),
        (AccountValues(tls_asn=["tlsfp@AS64500"]), OLD, False, None),
        (
            AccountValues(tls_asn=["tlsfp@AS64500"], template=[template_frame(JUDGE) or ""]),
            OLD,
            True,
            ["template", "tls_asn"],
        ),
        (AccountValues(email_domain=["forge-mail.example"], tls_asn=["tlsfp@AS64500"]), OLD, False, None),
        (
            AccountValues(email_domain=["FORGE-MAIL.example"], template=[template_frame(JUDGE) or ""]),
            OLD,
            True,
            ["email_domain", "template"],
        ),
        # one weak kind of each of two actors never adds up
        (AccountValues(tls_asn=["tlsfp@AS64500", "tlsfp2@AS64501"]), OLD, False, None),
        (AccountValues(payment=["pm_nobody"], signup_ip=["192.0.2.1"]), NEW, False, None),
        (AccountValues(), NEW, False, None),
    ],
)
def test_what_holds(values: AccountValues, created: float, held: bool, kinds: list[str] | None) -> None:
    index = WatchIndex([watch_entry(i) for i in SHARED], KEYS)
    match = index.match(values, created)
    assert (match is not None) is held
    if match is not None:
        assert match.kinds == kinds and match.peer == "lab-a" and "lab-a" in match.reason()


def test_template_signature_matches_other_fillings_not_other_templates() -> None:
    index = WatchIndex([watch_entry(indicator("template", JUDGE, confidence=90))], KEYS)
    refill = template_frame(TEMPLATE_PROMPT.format(a="totally different filling " * 5, b="x"))
    assert refill is not None and index.candidates(AccountValues(template=[refill]), NEW.__float__())
    other = template_frame(
        "List 50 diverse tasks that a programmer can assist a person working in Film using PHP."
    )
    assert other is not None and not index.candidates(AccountValues(template=[other]), NEW)


def test_expired_lifted_and_unknown_key_entries_never_match() -> None:
    expired = watch_entry(indicator("payment", "pm_card", days=-2))
    lifted = msgspec.structs.replace(watch_entry(indicator("payment", "pm_card2")), lifted=True)
    foreign = watch_entry(indicator("payment", "pm_card3"))
    theirs = CommunityKeys({"k1": b"\x09" * 32}, "k1")  # same id, other secret: hashes differ
    values = AccountValues(payment=["pm_card", "pm_card2", "pm_card3"])
    assert WatchIndex([expired, lifted], KEYS).match(values, NEW) is None
    assert WatchIndex([foreign], theirs).match(values, NEW) is None
    unknown = SharedIndicator(**{**indicator("payment", "pm_card").__dict__, "key_id": "k7"})
    assert len(WatchIndex([watch_entry(unknown)], KEYS)) == 0


def test_a_peer_cannot_claim_more_than_we_would() -> None:
    # a peer says 99 for an e-mail domain and a TLS client: capped at ours, they stay weak
    loud = [
        indicator("email_domain", "x.example", confidence=99),
        indicator("tls_asn", "fp@AS1", confidence=99),
    ]
    index = WatchIndex([watch_entry(i) for i in loud], KEYS)
    assert index.match(AccountValues(email_domain=["x.example"], tls_asn=["fp@AS1"]), OLD) is None


def test_sync_writes_new_lifts_gone_and_is_idempotent() -> None:
    state = MemoryState()
    assert asyncio.run(sync_watch(state, SHARED)) == (len(SHARED), 0)
    assert asyncio.run(sync_watch(state, SHARED)) == (0, 0)
    assert asyncio.run(sync_watch(state, SHARED[:3])) == (0, len(SHARED) - 3)
    assert len([e for e in state.entries() if e.subject.startswith("watch:")]) == 3


def call(account: str, prompt: str = "What is the capital of France?", tls: str | None = None) -> CallView:
    return CallView(
        event_id="e1",
        ts=NOW,
        account_id=account,
        prompt=prompt,
        client_tls_fingerprint=tls,
        client_asn=64500 if tls else None,
    )


def engine_with(state: MemoryState, *, shadow: bool = False) -> LiveEngine:
    policy = msgspec.structs.replace(default_policy(), rules=[], mode="shadow" if shadow else "enforce")
    return LiveEngine(policy, state, [], peer_watch=PeerWatch(state, KEYS, refresh_s=0.0))


def test_gateway_holds_on_the_first_call_and_the_case_names_the_peer(tmp_path: Path) -> None:
    state = MemoryState()
    asyncio.run(sync_watch(state, SHARED))
    engine = engine_with(state)
    returning = Caller(account_id="acct-back", indicators=("payment:pm_card",), created_ts=OLD)
    stranger = Caller(account_id="acct-new", indicators=("payment:pm_fresh",), created_ts=NEW)
    decision = asyncio.run(engine.decide(call("acct-back"), returning))
    assert decision.refuses and decision.error_code == "account_held" and decision.status == 403
    assert any("held: matches indicators shared by peer lab-a" in n for n in decision.notes)
    entry = state.banned("acct-back", None)
    assert entry is not None and entry.hold and entry.source == "intel:lab-a"
    # a hold, never a ban: no entry on the actor, its indicators or anything but the account
    assert {e.subject for e in state.entries() if not e.subject.startswith("watch:")} == {"account:acct-back"}
    assert asyncio.run(engine.decide(call("acct-new"), stranger)).status == 200
    # the returning account's TLS client alone (weak) does not hold another new account
    weak = Caller(account_id="acct-tls", created_ts=OLD)
    assert asyncio.run(engine.decide(call("acct-tls", tls="tlsfp"), weak)).status == 200
    store = CaseStore.open(str(tmp_path / "b.db"))
    (opened,) = sync_holds(store, state.entries())
    case = store.case(opened.case_id)
    assert case["peer"] == "lab-a" and case["source"] == "intel" and case["status"] == "open"
    assert "lab-a" in case["title"] and "payment fingerprint" in case["reasons"][0]["detail"]
    assert sync_holds(store, state.entries()) == []  # once
    store.close()


def test_shadow_mode_and_exempt_accounts_are_not_held() -> None:
    state = MemoryState()
    asyncio.run(sync_watch(state, SHARED))
    returning = Caller(account_id="acct-back", indicators=("payment:pm_card",), created_ts=OLD)
    decision = asyncio.run(engine_with(state, shadow=True).decide(call("acct-back"), returning))
    assert decision.status == 200 and any("shadow: would hold" in n for n in decision.notes)
    assert state.banned("acct-back", None) is None
    asyncio.run(
        state.put(Ban(subject="account:acct-back", reason="cleared", action="exempt", source="review"))
    )
    assert asyncio.run(engine_with(state).decide(call("acct-back"), returning)).status == 200


def test_without_a_community_key_the_engine_matches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISTILLGUARD_INTEL_KEYS_FILE", raising=False)
    monkeypatch.delenv("DISTILLGUARD_INTEL_KEY", raising=False)
    assert LiveEngine(default_policy().__class__(rules=[]), MemoryState(), []).peer_watch is None
    monkeypatch.setenv("DISTILLGUARD_INTEL_KEY", "k1:" + "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
    assert LiveEngine(default_policy().__class__(rules=[]), MemoryState(), []).peer_watch is not None


def test_watch_entries_survive_the_shared_list_s_checks(tmp_path: Path) -> None:
    """Written to the bans file by one process, read back whole by another (a gateway worker)."""
    writer = MemoryState(bans_file=tmp_path / "bans.jsonl")
    asyncio.run(sync_watch(writer, SHARED))
    reader = MemoryState(bans_file=tmp_path / "bans.jsonl")
    asyncio.run(reader.start())
    try:
        assert {e.subject for e in reader.entries()} == {e.subject for e in writer.entries()}
        assert reader.ban_list_report().skipped == 0 and reader.has_indicators
        loaded = next(e for e in reader.entries() if ":payment:" in e.subject)
        assert loaded.confidence == 90 and loaded.expires is not None
    finally:
        asyncio.run(reader.close())
