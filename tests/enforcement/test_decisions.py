"""A reviewer's decision as enforcement entries: plan(), deliver() to a shared bans file, feedback
labels, and delivery from the case store's outbox with retries."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from distillguard.cases.store import CaseStore, IncomingAccount, IncomingCase
from distillguard.enforcement.decisions import (
    Plan,
    actor_id,
    deliver,
    deliver_outbox,
    operations,
    plan,
    with_pending,
    write_feedback,
)
from distillguard.enforcement.state import INDICATOR_KINDS, Ban, MemoryState, RedisState, ban_from_json
from distillguard.events.accounts import read_labels

CASE: dict[str, Any] = {
    "case_id": 7,
    "accounts": [{"account_id": "a1"}, {"account_id": "a2"}],
    "indicators": {
        "payment": ["pf-x"],
        "signup_ip": ["203.0.113.7"],
        "ip": ["198.51.100.4", "198.51.100.5"],  # raw IPs are never enforcement keys
        "tls_asn": ["ja3abc@AS64500"],
        "email_domain": ["example.test"],
    },
}
REASON = "case 7: shared payment fingerprint"


def owned(subject: str, case_id: int = 7, **kw: Any) -> Ban:
    return Ban(subject=subject, reason="earlier decision", source="review", case_id=case_id, **kw)


def test_ban_plan_covers_accounts_and_enforceable_indicators() -> None:
    decided = plan(CASE, "ban", [], REASON)
    subjects = [e.subject for e in decided.put]
    assert subjects == [
        "account:a1",
        "account:a2",
        "payment:pf-x",
        "signup_ip:203.0.113.7",
        "tls_asn:ja3abc@AS64500",
    ]
    assert not any(s.startswith(("ip:", "email_domain:")) for s in subjects)
    assert all(s.split(":", 1)[0] in ("account", *INDICATOR_KINDS) for s in subjects)
    for entry in decided.put:
        assert entry.action == "ban"
        assert entry.actor == actor_id(7) == "case-7"
        assert entry.case_id == 7
        assert entry.source == "review"
        assert entry.reason == REASON
        assert not entry.hold and not entry.lifted
        assert entry.ts > 0
    assert decided.lift == []
    summary = decided.summary()
    assert summary["n_entries"] == 5 and summary["n_lifted"] == 0
    assert "ban payment:pf-x" in summary["entries"]


def test_throttle_plan_carries_the_action_and_lifts_stale_entries() -> None:
    current = [
        owned("account:a1"),
        owned("template:old-fp"),  # this case's, no longer an indicator: lifted
        owned("payment:other", case_id=8),  # another case's: left alone
        owned("account:new", hold=True),  # a hold is not an owned entry
    ]
    decided = plan(CASE, "throttle", current, REASON)
    assert {e.action for e in decided.put} == {"throttle"}
    assert len(decided.put) == 5
    assert decided.lift == ["template:old-fp"]


def test_allow_plan_sanctions_accounts_and_lifts_indicator_entries() -> None:
    current = [
        owned("account:a1"),
        owned("account:a2"),
        owned("payment:pf-x"),
        owned("signup_ip:203.0.113.7"),
        owned("payment:other", case_id=8),
        owned("account:a2", hold=True, case_id=3),  # held here under another actor: lifted
        owned("account:elsewhere", hold=True),  # held, not this case's account: left
    ]
    decided = plan(CASE, "allow", current, REASON)
    assert [(e.subject, e.action) for e in decided.put] == [("account:a1", "allow"), ("account:a2", "allow")]
    assert all(e.case_id == 7 and e.actor == "case-7" for e in decided.put)
    # the account entries are replaced by the put, not lifted
    assert decided.lift == ["payment:pf-x", "signup_ip:203.0.113.7"]


def test_clear_plan_lifts_owned_entries_and_holds() -> None:
    current = [
        owned("account:a1"),
        owned("payment:pf-x"),
        owned("tls_asn:ja3abc@AS64500"),
        owned("payment:other", case_id=8),
        Ban(subject="account:a2", reason="held", hold=True, case_id=3, source="recidivism"),
        Ban(subject="account:unrelated", reason="held", hold=True, case_id=7, source="recidivism"),
        Ban(subject="account:a1x", reason="gateway rule", source="gateway"),
    ]
    decided = plan(CASE, "clear", current, REASON)
    # the accounts' own entries (this case's ban, the hold on a2) are replaced by exemptions
    assert {(e.subject, e.action) for e in decided.put} == {
        ("account:a1", "exempt"),
        ("account:a2", "exempt"),
    }
    # the case's indicator entries are lifted; other cases' entries stay
    assert decided.lift == ["payment:pf-x", "tls_asn:ja3abc@AS64500"]


def test_an_indicator_another_case_decided_is_kept() -> None:
    current = [
        owned("payment:pf-x", case_id=3, action="ban"),
        owned("signup_ip:203.0.113.7", case_id=3, action="throttle"),
    ]
    decided = plan(CASE, "throttle", current, REASON)
    subjects = {e.subject for e in decided.put}
    assert "payment:pf-x" not in subjects and "signup_ip:203.0.113.7" not in subjects
    banned = plan(CASE, "ban", current, REASON)
    subjects = {e.subject for e in banned.put}
    assert "payment:pf-x" not in subjects  # case 3's ban stays case 3's
    assert "signup_ip:203.0.113.7" in subjects  # a ban may replace another case's throttle
    # and clearing this case later does not lift case 3's entries
    assert plan(CASE, "clear", current, REASON).lift == []


def test_clearing_ends_a_gateway_ban_on_the_account() -> None:
    current = [Ban(subject="account:a1", reason="gateway rule", source="gateway")]
    decided = plan(CASE, "clear", current, REASON)
    assert ("account:a1", "exempt") in {(e.subject, e.action) for e in decided.put}


def test_unknown_decision_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown decision"):
        plan(CASE, "delete", [], REASON)


def test_case_without_indicators() -> None:
    decided = plan({"case_id": 1, "accounts": [{"account_id": "solo"}]}, "ban", [], REASON)
    assert [e.subject for e in decided.put] == ["account:solo"]


def test_deliver_reaches_another_process_through_the_bans_file(tmp_path: Path) -> None:
    bans = tmp_path / "bans.jsonl"

    async def scenario() -> None:
        writer = MemoryState(bans_file=bans)
        reader = MemoryState(bans_file=bans)
        await writer.start()
        await reader.start()
        try:
            assert reader.entries() == []
            await deliver(writer, plan(CASE, "ban", writer.entries(), REASON))
            reader._reload()
            seen = {e.subject: e for e in reader.entries()}
            assert set(seen) == {e.subject for e in plan(CASE, "ban", [], REASON).put}
            assert seen["account:a1"].action == "ban"
            assert seen["payment:pf-x"].case_id == 7
            assert seen["payment:pf-x"].actor == "case-7"
            found = reader.banned("a2", None)
            assert found is not None and found.case_id == 7
            assert reader.indicator_match(["signup_ip:203.0.113.7"]) is not None

            # a new account the actor opened was held; then the reviewer clears the case
            await writer.put(
                Ban(subject="account:a2", reason="held", hold=True, case_id=7, source="recidivism")
            )
            await deliver(writer, plan(CASE, "clear", writer.entries(), "false positive, a school"))
            reader._reload()
            assert {e.action for e in reader.entries()} == {"exempt"}
            assert reader.indicator_match(["payment:pf-x"]) is None
            cleared = reader.banned("a1", None)
            assert cleared is not None and cleared.action == "exempt"

            # allow: the accounts are sanctioned entries, no indicator entry remains
            await deliver(writer, plan(CASE, "ban", writer.entries(), REASON))
            await deliver(writer, plan(CASE, "allow", writer.entries(), "sanctioned programme"))
            reader._reload()
            assert sorted((e.subject, e.action) for e in reader.entries()) == [
                ("account:a1", "allow"),
                ("account:a2", "allow"),
            ]
        finally:
            await writer.close()
            await reader.close()

    asyncio.run(scenario())


def test_deliver_lifts_before_it_puts() -> None:
    state = MemoryState()

    async def scenario() -> None:
        await state.put(owned("account:a1"))
        await deliver(state, Plan(put=[owned("account:a1", action="allow")], lift=["account:a1"]))

    asyncio.run(scenario())
    [entry] = state.entries()
    assert entry.action == "allow"


def test_write_feedback_writes_spec_labels(tmp_path: Path) -> None:
    path = tmp_path / "feedback" / "labels.jsonl"
    assert write_feedback(path, CASE) == 2
    assert write_feedback(path, {"case_id": 9, "accounts": [{"account_id": "b1"}]}) == 1  # appends
    assert write_feedback(path, CASE) == 0  # cleared again: each account stays listed once
    labels = read_labels(path)
    assert sorted(labels) == ["a1", "a2", "b1"]
    for label in labels.values():
        assert label.label == "benign"
        assert label.actor is None
        assert label.tactic == "cleared_by_review"


# ---- delivery from the case store's outbox ------------------------------------------------------
def test_operations_lift_before_they_put_and_carry_feedback(tmp_path: Path) -> None:
    current = [owned("template:old-fp")]
    decided = plan(CASE, "ban", current, REASON)
    ops = operations(decided)
    assert ops[0] == {"kind": "lift", "subject": "template:old-fp"}
    assert [op["kind"] for op in ops] == ["lift"] + ["put"] * len(decided.put)
    assert ops[1]["entry"]["subject"] == "account:a1" and ops[1]["entry"]["case_id"] == 7
    cleared = operations(plan(CASE, "clear", [], REASON), feedback=(tmp_path / "labels.jsonl", CASE))
    assert cleared[-1] == {
        "kind": "feedback",
        "path": str(tmp_path / "labels.jsonl"),
        "case_id": 7,
        "accounts": ["a1", "a2"],
    }


def test_pending_operations_count_as_written_when_planning() -> None:
    ops = operations(plan(CASE, "ban", [], REASON))
    later = [*ops, {"kind": "lift", "subject": "template:old-fp"}]
    current = with_pending([owned("template:old-fp"), owned("account:zz", case_id=9)], later)
    subjects = {e.subject for e in current}
    assert "account:a1" in subjects and "payment:pf-x" in subjects and "account:zz" in subjects
    assert "template:old-fp" not in subjects
    # so clearing right after a ban that is still undelivered lifts the ban's indicator entries
    assert "payment:pf-x" in plan(CASE, "clear", current, REASON).lift


def _decided_store(tmp_path: Path, action: str = "ban") -> tuple[CaseStore, int, int]:
    store = CaseStore.open(str(tmp_path / "cases.db"))
    case_id = store.upsert(
        IncomingCase(
            kind="actor",
            source="scan",
            title="actor",
            accounts=[IncomingAccount("a1"), IncomingAccount("a2")],
            indicators={"payment": ["pf-x"]},
        )
    ).case_id
    case = store.case(case_id)
    ops = operations(plan(case, action, [], REASON))
    store.decide(case_id, "ivy", action, "one card behind both accounts", {}, enforcement=ops)
    return store, case_id, len(ops)


def test_a_failed_delivery_is_retried_and_the_entries_arrive_once(tmp_path: Path) -> None:
    store, _case_id, n = _decided_store(tmp_path)
    bans = tmp_path / "shared" / "bans.jsonl"  # its folder is not mounted yet: every write fails

    async def scenario() -> None:
        failing = MemoryState(bans_file=bans)
        first = await deliver_outbox(store, failing)
        assert (first.delivered, first.pending) == (0, n)
        assert first.error is not None and "bans.jsonl" in first.error
        [head, *_] = store.pending_enforcement()
        assert head.attempts == 1 and head.last_error is not None
        assert len(store.pending_enforcement()) == n  # nothing skipped: order is kept

        bans.parent.mkdir()
        working = MemoryState(bans_file=bans)
        await working.start()
        second = await deliver_outbox(store, working)
        assert (second.delivered, second.pending, second.error) == (n, 0, None)
        third = await deliver_outbox(store, working)
        assert (third.delivered, third.pending) == (0, 0)
        await working.close()

    asyncio.run(scenario())
    lines = bans.read_text().splitlines()
    assert len(lines) == n and len({json.loads(line)["subject"] for line in lines}) == n
    reader = MemoryState(bans_file=bans)
    reader._reload()
    found = reader.banned("a1", None)
    assert found is not None and found.action == "ban"
    assert store.pending_enforcement() == []
    store.close()


def test_a_crash_between_commit_and_delivery_loses_nothing(tmp_path: Path, redis_url: str) -> None:
    """The process that committed the decision died before delivering it (here: it never tried).
    The next process's deliverer finds the entries in the outbox and sends them, once."""
    store, case_id, n = _decided_store(tmp_path)
    store.close()
    prefix = f"dg-test-{uuid.uuid4().hex}:"

    async def scenario() -> None:
        restarted = CaseStore.open(str(tmp_path / "cases.db"))
        down = RedisState("redis://127.0.0.1:1/0", prefix=prefix, timeout_s=0.2)
        refused = await deliver_outbox(restarted, down)
        assert refused.delivered == 0 and refused.pending == n and refused.error
        await down.close()
        up = RedisState(redis_url, prefix=prefix)
        await up.start()
        try:
            done = await deliver_outbox(restarted, up)
            assert (done.delivered, done.pending) == (n, 0)
            assert (await deliver_outbox(restarted, up)).delivered == 0
            import redis.asyncio as redis_asyncio

            client = redis_asyncio.from_url(redis_url)
            stored = await client.hgetall(prefix + "bans")
            assert {k.decode() for k in stored} == {"account:a1", "account:a2", "payment:pf-x"}
            for raw in stored.values():
                entry = ban_from_json(raw)
                assert entry.case_id == case_id and entry.action == "ban"
            await client.delete(prefix + "bans")
            await client.aclose()
        finally:
            await up.close()
            restarted.close()

    asyncio.run(scenario())
