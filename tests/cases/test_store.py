"""The case store's conformance suite, run unchanged against SQLite and a real PostgreSQL (the
`url` and `store` fixtures of conftest.py: a database of its own per module on the server)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from distillguard.cases.schema import SCHEMA_VERSION, schema_version
from distillguard.cases.store import (
    MIN_JUSTIFICATION,
    PROMPT_CHARS,
    ROLES,
    SAMPLES_PER_ACCOUNT,
    CaseStore,
    CaseStoreError,
    IncomingAccount,
    IncomingCase,
    IncomingSample,
    engine_url,
    redact_url,
)

JUSTIFIED = "payment fingerprint shared by all five accounts"


def account(account_id: str, **kw: Any) -> IncomingAccount:
    return IncomingAccount(account_id=account_id, **kw)


def actor_case(ids: list[str], **kw: Any) -> IncomingCase:
    kw.setdefault("risk", 0.9)
    kw.setdefault("verdict", "distiller")
    return IncomingCase(
        kind="actor",
        source="scan",
        title=f"actor of {len(ids)}",
        accounts=[account(a, calls=10) for a in ids],
        **kw,
    )


def account_case(account_id: str, **kw: Any) -> IncomingCase:
    kw.setdefault("risk", 0.5)
    kw.setdefault("verdict", "suspicious")
    return IncomingCase(
        kind="account", source="scan", title=f"account {account_id}", accounts=[account(account_id)], **kw
    )


def sample(account_id: str, event_id: str, prompt: str = "hi", **kw: Any) -> IncomingSample:
    return IncomingSample(account_id=account_id, event_id=event_id, prompt=prompt, **kw)


# ---- URLs ------------------------------------------------------------------------------------
def test_engine_url_and_redaction() -> None:
    assert engine_url("/tmp/x.db") == "sqlite:////tmp/x.db"
    assert engine_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert engine_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert "hunter2" not in redact_url("postgresql://u:hunter2@h/db")


# ---- migrations ------------------------------------------------------------------------------
def test_migrate_is_idempotent_and_records_versions(url: str) -> None:
    store = CaseStore(url)
    try:
        assert store.version() == 0
        assert store.migrate() == SCHEMA_VERSION
        assert store.version() == SCHEMA_VERSION
        assert store.migrate() == 0
        assert store.version() == SCHEMA_VERSION
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(schema_version).order_by(schema_version.c.version)).all()
            tables = set(sa.inspect(conn).get_table_names())
        assert [r.version for r in rows] == list(range(1, SCHEMA_VERSION + 1))
        assert all(r.applied_at is not None for r in rows)
        assert {"cases", "case_accounts", "samples", "audit_log", "users", "schema_version"} <= tables
    finally:
        store.close()
    # a second process opening the same database applies nothing and sees the data
    again = CaseStore.open(url)
    try:
        assert again.migrate() == 0
        assert again.queue() == []
    finally:
        again.close()


def test_refuses_a_database_newer_than_the_code(url: str) -> None:
    store = CaseStore.open(url)
    try:
        with store.engine.begin() as conn:
            conn.execute(
                sa.insert(schema_version).values(version=SCHEMA_VERSION + 1, applied_at=datetime.now(UTC))
            )
        with pytest.raises(CaseStoreError, match="newer"):
            store.migrate()
        with pytest.raises(CaseStoreError, match="newer"):
            CaseStore.open(url)
    finally:
        store.close()


# ---- upsert ----------------------------------------------------------------------------------
def test_upsert_creates_then_updates_without_duplicating(store: CaseStore) -> None:
    first = store.upsert(actor_case(["a", "b"], cluster_id="c1"))
    assert first.created and first.new_accounts == ["a", "b"] and first.status == "open"
    case = store.case(first.case_id)
    assert (case["revision"], case["n_accounts"], case["n_calls"]) == (1, 2, 20)
    assert case["kind"] == "actor" and case["cluster_id"] == "c1" and case["status"] == "open"

    second = store.upsert(actor_case(["a", "b", "c"], cluster_id="c7", risk=0.95))
    assert second.case_id == first.case_id
    assert not second.created
    assert second.new_accounts == ["c"]
    case = store.case(first.case_id)
    assert case["revision"] == 2
    assert case["n_accounts"] == 3
    assert case["cluster_id"] == "c7"
    assert case["risk"] == pytest.approx(0.95)
    assert sorted(a["account_id"] for a in case["accounts"]) == ["a", "b", "c"]
    assert [c["case_id"] for c in store.queue(status=None)] == [first.case_id]
    assert store.cases_of_account("c") == [first.case_id]

    # the same evidence again: an update, nothing new
    third = store.upsert(actor_case(["a", "b", "c"]))
    assert (third.case_id, third.created, third.new_accounts) == (first.case_id, False, [])
    assert store.case(first.case_id)["revision"] == 3
    actions = [e["action"] for e in reversed(store.audit(first.case_id))]
    assert actions == ["opened", "evidence", "evidence"]


def test_upsert_updates_account_rows(store: CaseStore) -> None:
    case_id = store.upsert(actor_case(["a", "b"])).case_id
    store.upsert(
        IncomingCase(
            kind="actor",
            source="scan",
            title="actor",
            accounts=[account("a", calls=50, risk=0.8, verdict="distiller"), account("b", calls=1)],
        )
    )
    rows = {a["account_id"]: a for a in store.case(case_id)["accounts"]}
    assert rows["a"]["calls"] == 50 and rows["a"]["verdict"] == "distiller"
    assert store.case(case_id)["n_calls"] == 51


def test_upsert_rejects_bad_input(store: CaseStore) -> None:
    with pytest.raises(CaseStoreError, match="kind"):
        store.upsert(IncomingCase(kind="cluster", source="scan", title="x", accounts=[account("a")]))
    with pytest.raises(CaseStoreError, match="no accounts"):
        store.upsert(IncomingCase(kind="actor", source="scan", title="x", accounts=[]))
    assert store.queue(status=None) == []


def test_account_case_grows_into_an_actor_case(store: CaseStore) -> None:
    case_id = store.upsert(account_case("a")).case_id
    assert store.case(case_id)["kind"] == "account"
    again = store.upsert(actor_case(["a", "b"]))
    assert again.case_id == case_id and again.new_accounts == ["b"]
    assert store.case(case_id)["kind"] == "actor"


def test_overlap_folds_an_open_account_case_into_the_actor_case(store: CaseStore) -> None:
    actor = store.upsert(actor_case(["a", "b"], samples=[sample("a", "e-a1")])).case_id
    lone = store.upsert(account_case("c", samples=[sample("c", "e-c1"), sample("c", "e-c2")])).case_id
    assert lone != actor

    result = store.upsert(actor_case(["a", "b", "c"], samples=[sample("c", "e-c2"), sample("c", "e-c3")]))
    assert result.case_id == actor
    assert not result.created

    folded = store.case(lone)
    assert folded["status"] == "merged"
    assert folded["linked_case_id"] == actor
    assert folded["accounts"] == [] and folded["samples"] == []
    assert (folded["n_accounts"], folded["n_calls"]) == (0, 0)
    assert "merged" in [e["action"] for e in folded["audit"]]

    merged = store.case(actor)
    assert sorted(a["account_id"] for a in merged["accounts"]) == ["a", "b", "c"]
    assert sorted(s["event_id"] for s in merged["samples"]) == ["e-a1", "e-c1", "e-c2", "e-c3"]
    assert merged["n_accounts"] == 3
    # merged cases leave the queue, also with `status=None`; asked for by name they are listed
    assert [c["case_id"] for c in store.queue(status=None)] == [actor]
    assert [c["case_id"] for c in store.queue(status="merged")] == [lone]
    assert store.queue(account="c", status=None)[0]["case_id"] == actor


def test_overlap_leaves_decided_cases_alone(store: CaseStore) -> None:
    actor = store.upsert(actor_case(["a", "b"])).case_id
    lone = store.upsert(account_case("c")).case_id
    store.decide(lone, "rev", "clear", "benign researcher, checked with sales", {})
    store.upsert(actor_case(["a", "b", "c"]))
    assert store.case(lone)["status"] == "cleared"
    assert [a["account_id"] for a in store.case(lone)["accounts"]] == ["c"]
    assert sorted(a["account_id"] for a in store.case(actor)["accounts"]) == ["a", "b", "c"]


def test_gateway_evidence_keeps_the_scan_verdict_and_raises_risk_only(store: CaseStore) -> None:
    case_id = store.upsert(account_case("a", risk=0.6, verdict="distiller")).case_id
    gateway = IncomingCase(
        kind="account", source="gateway", title="gw", accounts=[account("a")], risk=0.3, verdict="suspicious"
    )
    store.upsert(gateway)
    case = store.case(case_id)
    assert case["risk"] == pytest.approx(0.6) and case["verdict"] == "distiller"
    gateway.risk = 0.99
    store.upsert(gateway)
    assert store.case(case_id)["risk"] == pytest.approx(0.99)


# ---- samples ---------------------------------------------------------------------------------
def test_samples_dedup_by_event_id(store: CaseStore) -> None:
    case_id = store.upsert(actor_case(["a", "b"], samples=[sample("a", "e1"), sample("a", "e1")])).case_id
    store.upsert(actor_case(["a", "b"], samples=[sample("a", "e1"), sample("b", "e2")]))
    assert sorted(s["event_id"] for s in store.case(case_id)["samples"]) == ["e1", "e2"]


def test_samples_are_capped_per_account(store: CaseStore) -> None:
    many = [sample("a", f"a{i}") for i in range(SAMPLES_PER_ACCOUNT + 3)] + [sample("b", "b0")]
    case_id = store.upsert(actor_case(["a", "b"], samples=many)).case_id
    store.upsert(actor_case(["a", "b"], samples=[sample("a", "later"), sample("b", "b1")]))
    rows = store.case(case_id)["samples"]
    per_account = {acct: [s["event_id"] for s in rows if s["account_id"] == acct] for acct in ("a", "b")}
    assert len(per_account["a"]) == SAMPLES_PER_ACCOUNT
    assert "later" not in per_account["a"]  # the first ones are kept
    assert sorted(per_account["b"]) == ["b0", "b1"]


def test_sample_text_is_truncated(store: CaseStore) -> None:
    long = "x" * (PROMPT_CHARS + 500)
    case_id = store.upsert(
        actor_case(
            ["a", "b"],
            samples=[sample("a", "e1", long, system="s" * (PROMPT_CHARS + 1), user_agent="u" * 900)],
        )
    ).case_id
    [row] = store.case(case_id)["samples"]
    assert row["prompt"] == "x" * PROMPT_CHARS
    assert len(row["system"]) == PROMPT_CHARS
    assert len(row["user_agent"]) == 500
    assert row["end_user"] is None


# ---- the queue -------------------------------------------------------------------------------
def test_queue_order_and_filters(store: CaseStore) -> None:
    high = store.upsert(actor_case(["h1", "h2"], risk=0.95, verdict="distiller")).case_id
    mid_small = store.upsert(account_case("m1", risk=0.7, verdict="suspicious")).case_id
    mid_big = store.upsert(actor_case(["m2", "m3", "m4"], risk=0.7, verdict="suspicious")).case_id
    low = store.upsert(account_case("l1", risk=0.2, verdict="suspicious")).case_id
    decided = store.upsert(actor_case(["d1", "d2"], risk=0.99)).case_id
    store.decide(decided, "rev", "ban", JUSTIFIED, {})

    def ids(**kw: Any) -> list[int]:
        return [c["case_id"] for c in store.queue(**kw)]

    # by risk, then by size (bigger actors first), then oldest first
    assert ids() == [high, mid_big, mid_small, low]
    assert ids(status=None) == [decided, high, mid_big, mid_small, low]
    assert ids(status="banned") == [decided]
    assert ids(status="cleared") == []
    assert ids(verdict="distiller") == [high]
    assert ids(verdict="suspicious", min_risk=0.5) == [mid_big, mid_small]
    assert ids(min_risk=0.7) == [high, mid_big, mid_small]
    assert ids(account="m3") == [mid_big]
    assert ids(account="d1") == []
    assert ids(account="d1", status=None) == [decided]
    assert ids(account="nobody", status=None) == []
    assert ids(limit=2) == [high, mid_big]
    with pytest.raises(CaseStoreError, match="unknown status"):
        store.queue(status="pending")


def test_unknown_case(store: CaseStore) -> None:
    with pytest.raises(CaseStoreError, match="no case 999"):
        store.case(999)
    assert not store.exists(999)
    assert store.exists(store.upsert(account_case("a")).case_id)


# ---- decisions -------------------------------------------------------------------------------
def test_decide_requires_a_justification_and_a_known_action(store: CaseStore) -> None:
    case_id = store.upsert(actor_case(["a", "b"])).case_id
    for short in ("", "too short", " " * 20 + "abc" + " " * 20):
        with pytest.raises(CaseStoreError, match="justification"):
            store.decide(case_id, "rev", "ban", short, {})
    with pytest.raises(CaseStoreError, match="decision must be one of"):
        store.decide(case_id, "rev", "delete", JUSTIFIED, {})
    assert store.case(case_id)["status"] == "open"
    assert [e["action"] for e in store.audit(case_id)] == ["opened"]
    # exactly the minimum is enough (after stripping)
    decided = store.decide(case_id, "rev", "throttle", "  " + "j" * MIN_JUSTIFICATION + "  ", {})
    assert decided == {
        "case_id": case_id,
        "status": "throttled",
        "entry_id": store.audit(case_id)[0]["entry_id"],
        "pending": 0,
    }


@pytest.mark.parametrize(
    ("action", "status"),
    [("ban", "banned"), ("throttle", "throttled"), ("allow", "allowed"), ("clear", "cleared")],
)
def test_decide_sets_status_and_writes_audit(store: CaseStore, action: str, status: str) -> None:
    case_id = store.upsert(actor_case(["a", "b"])).case_id
    detail = {"entries": ["ban account:a", "ban payment:pf-1"], "n_entries": 2}
    assert store.decide(case_id, "alice", action, "  " + JUSTIFIED + "\n", detail)["status"] == status
    case = store.case(case_id)
    assert case["status"] == status
    latest = case["audit"][0]
    assert latest["actor_user"] == "alice"
    assert latest["action"] == action
    assert latest["justification"] == JUSTIFIED
    assert latest["detail"] == detail
    assert latest["case_id"] == case_id
    # a decided case can be decided again (a ban lifted to clear, say)
    store.decide(case_id, "bob", "clear", "appeal upheld by trust and safety", {})
    assert store.case(case_id)["status"] == "cleared"


def test_decide_refuses_unknown_and_merged_cases(store: CaseStore) -> None:
    with pytest.raises(CaseStoreError, match="no open or decided case"):
        store.decide(12345, "rev", "ban", JUSTIFIED, {})
    store.upsert(actor_case(["a", "b"]))
    lone = store.upsert(account_case("c")).case_id
    store.upsert(actor_case(["a", "b", "c"]))
    with pytest.raises(CaseStoreError, match="no open or decided case"):
        store.decide(lone, "rev", "ban", JUSTIFIED, {})
    assert store.case(lone)["status"] == "merged"


def test_audit_entries_are_never_modified(store: CaseStore) -> None:
    a = store.upsert(actor_case(["a", "b"])).case_id
    store.decide(a, "alice", "ban", JUSTIFIED, {"n": 1})
    store.note("bob", "login", {"ip": "10.0.0.1"})
    before = store.audit()
    assert len(before) == 3

    # more of everything that writes: evidence, folding, decisions, users, notes
    lone = store.upsert(account_case("c")).case_id
    store.upsert(account_case("d"))
    store.upsert(actor_case(["c", "d"]))  # folds d's open case into c's
    store.decide(a, "carol", "clear", "appeal upheld after review", {"n": 2})
    store.add_user("dave", "correct horse battery", "viewer")
    store.add_user("dave", "correct horse battery", "admin")
    store.note("system", "hold", {"account": "z"}, case_id=lone)

    after = store.audit()
    by_id = {e["entry_id"]: e for e in after}
    for entry in before:
        assert by_id[entry["entry_id"]] == entry
    ids = [e["entry_id"] for e in after]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert len(after) == len(set(ids)) == len(before) + 8
    assert store.audit(limit=2) == after[:2]
    assert {e["case_id"] for e in store.audit(a)} == {a}


# ---- users -----------------------------------------------------------------------------------
def test_users_authenticate_by_argon2(store: CaseStore) -> None:
    store.add_user("alice", "s3cret-passphrase", "investigator")
    assert store.authenticate("alice", "s3cret-passphrase") == "investigator"
    assert store.authenticate("alice", "s3cret-passphrasE") is None
    assert store.authenticate("alice", "") is None
    assert store.authenticate("ALICE", "s3cret-passphrase") is None
    assert store.authenticate("mallory", "s3cret-passphrase") is None

    from distillguard.cases.schema import users

    with store.engine.connect() as conn:
        digest = conn.execute(
            sa.select(users.c.password_hash).where(users.c.username == "alice")
        ).scalar_one()
    assert digest.startswith("$argon2id$")
    assert "s3cret-passphrase" not in digest

    listed = store.users()
    assert [u["username"] for u in listed] == ["alice"]
    assert listed[0]["role"] == "investigator"
    assert "password_hash" not in listed[0]

    # replacing a user changes the password and role, and keeps one row
    store.add_user("alice", "another-passphrase", "admin")
    assert store.authenticate("alice", "s3cret-passphrase") is None
    assert store.authenticate("alice", "another-passphrase") == "admin"
    assert len(store.users()) == 1


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_accepted(store: CaseStore, role: str) -> None:
    store.add_user("u-" + role, "long enough password", role)
    assert store.authenticate("u-" + role, "long enough password") == role


@pytest.mark.parametrize(
    ("username", "password", "role", "message"),
    [
        ("alice", "long enough password", "root", "role must be one of"),
        ("alice", "long enough password", "Admin", "role must be one of"),
        ("", "long enough password", "viewer", "username"),
        ("a" * 101, "long enough password", "viewer", "username"),
        ("ali\nce", "long enough password", "viewer", "username"),
        ("alice", "short", "viewer", "password"),
    ],
)
def test_add_user_validates(store: CaseStore, username: str, password: str, role: str, message: str) -> None:
    with pytest.raises(CaseStoreError, match=message):
        store.add_user(username, password, role)
    assert store.users() == []


# ---- values round trip -----------------------------------------------------------------------
def test_json_fields_round_trip(store: CaseStore) -> None:
    reasons = [
        {"signal": "template", "score": 0.93, "detail": "shared template «résumé» 🤖", "adjustments": []},
        {"signal": "cot_extraction", "score": 1.0, "detail": "x", "nested": {"k": [1, 2.5, None, True]}},
    ]
    indicators = {"payment": ["pf-1", "pf-2"], "signup_ip": ["203.0.113.7"], "tls_asn": ["ja3@AS64500"]}
    edges = [{"a": "a", "b": "b", "kind": "payment", "weight": 1.0}]
    acct = account(
        "a",
        calls=3,
        reasons=reasons[:1],
        daily={"2025-01-01": 2, "2025-01-02": 1},
        hours=list(range(24)),
        signal_rates={"template": 0.5, "cot_extraction": 0.25},
    )
    case_id = store.upsert(
        IncomingCase(
            kind="actor",
            source="scan",
            title="t",
            accounts=[acct, account("b")],
            reasons=reasons,
            indicators=indicators,
            edges=edges,
        )
    ).case_id
    case = store.case(case_id)
    assert case["reasons"] == reasons
    assert case["indicators"] == indicators
    assert case["edges"] == edges
    row = next(a for a in case["accounts"] if a["account_id"] == "a")
    assert row["reasons"] == reasons[:1]
    assert row["daily"] == {"2025-01-01": 2, "2025-01-02": 1}
    assert row["hours"] == list(range(24))
    assert row["signal_rates"] == {"template": 0.5, "cot_extraction": 0.25}
    assert store.queue()[0]["indicators"] == indicators

    # indicators merge (union, in order) across updates; empty reasons/edges keep the old ones
    store.upsert(
        IncomingCase(
            kind="actor",
            source="scan",
            title="t",
            accounts=[account("a"), account("b")],
            indicators={"payment": ["pf-2", "pf-3"], "template": ["tpl-9"]},
        )
    )
    case = store.case(case_id)
    assert case["indicators"] == {**indicators, "payment": ["pf-1", "pf-2", "pf-3"], "template": ["tpl-9"]}
    assert case["reasons"] == reasons
    assert case["edges"] == edges


def _aware_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


def test_timestamps_come_back_timezone_aware_utc(store: CaseStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    plus_two = timezone(timedelta(hours=2))
    flagged = datetime(2025, 3, 1, 14, 30, 0, tzinfo=plus_two)
    seen = datetime(2025, 3, 1, 9, 15, 0, tzinfo=UTC)
    case_id = store.upsert(
        IncomingCase(
            kind="actor",
            source="scan",
            title="t",
            accounts=[account("a", first_flagged_at=flagged), account("b")],
            samples=[sample("a", "e1", ts=seen), sample("a", "e2", ts=flagged)],
        )
    ).case_id
    store.decide(case_id, "alice", "ban", JUSTIFIED, {})
    store.add_user("alice", "long enough password", "admin")
    case = store.case(case_id)
    for key in ("created_at", "updated_at"):
        _aware_utc(case[key])
        assert before <= case[key] <= datetime.now(UTC) + timedelta(seconds=5)
    row = next(a for a in case["accounts"] if a["account_id"] == "a")
    _aware_utc(row["first_flagged_at"])
    assert row["first_flagged_at"] == flagged  # the same instant, whatever offset it came with
    assert next(a for a in case["accounts"] if a["account_id"] == "b")["first_flagged_at"] is None
    by_event = {s["event_id"]: s["ts"] for s in case["samples"]}
    for value in by_event.values():
        _aware_utc(value)
    assert by_event == {"e1": seen, "e2": flagged}
    for entry in store.audit():
        _aware_utc(entry["ts"])
    _aware_utc(store.queue(status=None)[0]["updated_at"])
    _aware_utc(store.users()[0]["created_at"])


# ---- evidence after a decision, and what each database accepts ---------------------------------
def test_a_decided_actor_with_new_accounts_opens_a_linked_case(store: CaseStore) -> None:
    banned = store.upsert(actor_case(["a", "b"], indicators={"payment": ["pf-1"]})).case_id
    store.decide(banned, "alice", "ban", JUSTIFIED, {})
    again = store.upsert(actor_case(["a", "b"], risk=0.95))
    assert again.case_id == banned and not again.created  # same accounts: more evidence, decision stands
    assert store.case(banned)["status"] == "banned"
    grown = store.upsert(actor_case(["a", "b", "c"]))
    assert grown.created and grown.case_id != banned
    fresh = store.case(grown.case_id)
    assert fresh["status"] == "open" and fresh["linked_case_id"] == banned
    assert [c["case_id"] for c in store.queue()] == [grown.case_id]
    assert [c["case_id"] for c in store.case(banned)["linked_cases"]] == [grown.case_id]
    # the next scan updates the open case, it does not open a third
    assert store.upsert(actor_case(["a", "b", "c"])).case_id == grown.case_id


def test_folding_keeps_the_folded_case_s_indicators_and_edges(store: CaseStore) -> None:
    edge = {"a": "c", "b": "d", "kind": "payment", "weight": 1.0, "evidence": "same card"}
    store.upsert(account_case("c", indicators={"payment": ["pf-n"]}, edges=[edge]))
    target = store.upsert(actor_case(["d", "e"], indicators={"template": ["t1"]})).case_id
    store.upsert(actor_case(["c", "d", "e"], indicators={"template": ["t1"]}))
    case = store.case(target)
    assert case["indicators"] == {"template": ["t1"], "payment": ["pf-n"]}
    assert edge in case["edges"]


def test_nul_bytes_long_fields_and_nan_are_stored_alike(store: CaseStore) -> None:
    evil = "x\x00<script>" + "y" * 600
    incoming = account_case(
        "acct\x00nul",
        risk=float("nan"),
        reasons=[{"signal": "s", "score": float("inf"), "detail": "d\x00"}],
        samples=[
            sample("acct\x00nul", "e\x00" + "1" * 300, evil, user_agent=evil, end_user=evil, endpoint=evil)
        ],
        cluster_id="c" * 100,
        verdict="v" * 40,
    )
    case = store.case(store.upsert(incoming).case_id)
    assert case["risk"] == 0.0 and case["reasons"][0]["score"] is None
    [stored] = case["samples"]
    assert "\x00" not in stored["prompt"] and stored["prompt"].startswith("x\ufffd<script>")
    assert len(stored["user_agent"]) == 500 and len(stored["event_id"]) == 200
    assert len(case["cluster_id"]) == 64 and len(case["verdict"]) == 16
    assert case["accounts"][0]["account_id"] == "acct\ufffdnul"


def test_non_ascii_user_names_log_in(store: CaseStore) -> None:
    store.add_user("josé", "correct horse battery", "viewer")
    assert store.authenticate("josé", "correct horse battery") == "viewer"


# ---- SQLite connections ------------------------------------------------------------------------
def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path: Any) -> None:
    store = CaseStore.open(str(tmp_path / "wal.db"))
    try:
        for _ in range(2):  # every pooled connection, not only the first
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        with store.engine.begin() as conn:  # a write goes to the write-ahead log first
            conn.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
        assert (tmp_path / "wal.db-wal").exists()
    finally:
        store.close()


def test_concurrent_writers_keep_one_audit_chain(url: str) -> None:
    """Two processes' worth of writers (separate engines) appending at once: every entry lands and
    the hash chain stays one line (no fork where two writers read the same previous row)."""
    stores = [CaseStore.open(url) for _ in range(2)]
    errors: list[BaseException] = []

    def write(store: CaseStore, n: int) -> None:
        try:
            for i in range(15):
                store.note(f"writer-{n}", "login", {"i": i})
        except BaseException as error:  # reported below, with the thread's error
            errors.append(error)

    threads = [threading.Thread(target=write, args=(stores[n % 2], n)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        check = stores[0].verify_audit()
        assert check.problem is None and check.entries == 60
    finally:
        for store in stores:
            store.close()


# ---- decisions and their enforcement: one transaction, then an outbox ---------------------------
OPERATIONS = [
    {"kind": "lift", "subject": "payment:old"},
    {"kind": "put", "entry": {"subject": "account:a", "reason": "r", "action": "ban", "case_id": 1}},
]


def test_a_decision_its_audit_entry_and_its_enforcement_commit_together(store: CaseStore) -> None:
    case_id = store.upsert(actor_case(["a", "b"])).case_id
    result = store.decide(case_id, "alice", "ban", JUSTIFIED, {"n": 1}, enforcement=OPERATIONS)
    assert result["status"] == "banned" and result["pending"] == 2
    pending = store.pending_enforcement()
    assert [p.operation for p in pending] == OPERATIONS
    assert {p.entry_id for p in pending} == {store.audit(case_id)[0]["entry_id"]}
    assert store.pending_count(case_id) == 2

    store.enforcement_failed(pending[0].outbox_id, "redis down")
    again = store.pending_enforcement()
    assert (again[0].attempts, again[0].last_error) == (1, "redis down")
    store.enforcement_delivered(pending[0].outbox_id)
    assert [p.outbox_id for p in store.pending_enforcement()] == [pending[1].outbox_id]
    store.enforcement_delivered(pending[1].outbox_id)
    assert store.pending_enforcement() == [] and store.pending_count(case_id) == 0


def test_a_failed_audit_write_leaves_no_decision_and_no_enforcement(
    store: CaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_id = store.upsert(actor_case(["a", "b"])).case_id

    def broken(*_args: Any, **_kw: Any) -> int:
        raise sa.exc.OperationalError("INSERT INTO audit_log", {}, Exception("disk full"))

    monkeypatch.setattr(CaseStore, "_audit", staticmethod(broken))
    with pytest.raises(sa.exc.OperationalError):
        store.decide(case_id, "alice", "ban", JUSTIFIED, {}, enforcement=OPERATIONS)
    monkeypatch.undo()
    assert store.case(case_id)["status"] == "open"
    assert store.pending_enforcement() == []
    assert [e["action"] for e in store.audit(case_id)] == ["opened"]


# ---- sessions -----------------------------------------------------------------------------------
def test_sessions_live_in_the_store_and_their_revocation_survives_a_restart(url: str) -> None:
    store = CaseStore.open(url)
    store.add_user("alice", "long enough password", "investigator")
    kept, _ = store.open_session("alice", lifetime_s=3600, address="192.0.2.1")
    ended, session = store.open_session("alice", lifetime_s=3600, address="192.0.2.1")
    assert len(ended) >= 43 and kept != ended
    assert (session.username, session.role) == ("alice", "investigator") and len(session.csrf) >= 43
    with store.engine.connect() as conn:  # only a digest of the token is stored
        dumped = repr(conn.exec_driver_sql("SELECT * FROM ui_sessions").all())
    assert kept not in dumped and ended not in dumped
    assert store.revoke_session(ended) == "alice"
    assert store.session(ended, idle_s=600) is None
    store.close()

    restarted = CaseStore.open(url)
    try:
        assert restarted.session(ended, idle_s=600) is None
        found = restarted.session(kept, idle_s=600)
        assert found is not None and found.username == "alice"
        assert restarted.session("not-a-token", idle_s=600) is None
        assert restarted.session("", idle_s=600) is None
    finally:
        restarted.close()


def test_sessions_end_when_idle_too_long_or_too_old(store: CaseStore) -> None:
    from distillguard.cases.schema import ui_sessions

    store.add_user("alice", "long enough password", "viewer")
    idle, _ = store.open_session("alice", lifetime_s=3600, address="192.0.2.1")
    old, _ = store.open_session("alice", lifetime_s=3600, address="192.0.2.1")
    fresh, _ = store.open_session("alice", lifetime_s=3600, address="192.0.2.1")
    stamp = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(ui_sessions)
            .where(ui_sessions.c.session_id == _digest(idle))
            .values(last_seen_at=stamp - timedelta(seconds=601))
        )
        conn.execute(
            sa.update(ui_sessions)
            .where(ui_sessions.c.session_id == _digest(old))
            .values(expires_at=stamp - timedelta(seconds=1))
        )
    assert store.session(idle, idle_s=600) is None
    assert store.session(old, idle_s=600) is None
    assert store.session(fresh, idle_s=600) is not None


def _digest(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


def test_a_password_or_role_change_revokes_the_user_s_sessions(store: CaseStore) -> None:
    store.add_user("alice", "long enough password", "investigator")
    store.add_user("bob", "another long password", "viewer")
    alice, _ = store.open_session("alice", lifetime_s=3600, address="192.0.2.1")
    bob, _ = store.open_session("bob", lifetime_s=3600, address="192.0.2.1")
    store.add_user("alice", "long enough password", "viewer")
    assert store.session(alice, idle_s=600) is None
    assert store.session(bob, idle_s=600) is not None


# ---- lockout ------------------------------------------------------------------------------------
def test_lockout_by_user_ignores_the_address(store: CaseStore) -> None:
    from distillguard.cases.store import LoginLimits

    limits = LoginLimits(user_failures=5, address_failures=100, first_lock_s=60, max_lock_s=900)
    for i in range(4):
        assert store.login_failed("alice", f"203.0.113.{i}", limits) == 0
    assert store.login_locked("alice", "203.0.113.99", limits) == 0
    assert store.login_failed("alice", "203.0.113.4", limits) == pytest.approx(60, abs=2)
    for address in ("203.0.113.200", "198.51.100.7", "2001:db8::1"):
        assert store.login_locked("alice", address, limits) == pytest.approx(60, abs=2)
    assert store.login_locked("bob", "203.0.113.4", limits) == 0  # other users are not affected


def test_lockout_backs_off_exponentially(store: CaseStore) -> None:
    from distillguard.cases.schema import login_failures
    from distillguard.cases.store import LoginLimits

    limits = LoginLimits(user_failures=3, address_failures=100, first_lock_s=60, max_lock_s=300)
    seen = []
    for i in range(7):
        seen.append(round(store.login_failed("alice", f"203.0.113.{i}", limits)))
        with store.engine.begin() as conn:  # wait the lock out
            conn.execute(
                sa.update(login_failures).values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
            )
    assert seen == [0, 0, 60, 120, 240, 300, 300]
    store.login_succeeded("alice")
    assert store.login_failed("alice", "203.0.113.1", limits) == 0


def test_lockout_by_address_across_user_names(store: CaseStore) -> None:
    from distillguard.cases.store import LoginLimits

    limits = LoginLimits(user_failures=5, address_failures=10, first_lock_s=60, max_lock_s=900)
    for i in range(9):
        assert store.login_failed(f"user{i}", "198.51.100.7", limits) == 0
    assert store.login_failed("user9", "198.51.100.7", limits) == pytest.approx(60, abs=2)
    assert store.login_locked("somebody-else", "198.51.100.7", limits) == pytest.approx(60, abs=2)
    assert store.login_locked("somebody-else", "198.51.100.8", limits) == 0
    # a success with the attacker's own account does not reset its address
    store.login_succeeded("user1")
    assert store.login_locked("user1", "198.51.100.7", limits) > 0
    # an IPv6 attacker rotating through its /64 is one address
    for i in range(10):
        store.login_failed(f"v6user{i}", f"2001:db8:1:2::{i + 1:x}", limits)
    assert store.login_locked("anyone", "2001:db8:1:2:ffff::1", limits) > 0
    assert store.login_locked("anyone", "2001:db8:1:3::1", limits) == 0


def test_lockout_survives_a_restart_and_forgets_only_stale_rows(url: str) -> None:
    from distillguard.cases.schema import login_failures
    from distillguard.cases.store import LoginLimits

    limits = LoginLimits(user_failures=2, address_failures=100, first_lock_s=60, forget_s=3600)
    store = CaseStore.open(url)
    store.login_failed("alice", "203.0.113.1", limits)
    store.login_failed("alice", "203.0.113.2", limits)
    for i in range(50):
        store.login_failed(f"stale{i}", f"198.51.100.{i}", limits)
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(login_failures)
            .where(login_failures.c.last_failure_at.is_not(None), login_failures.c.locked_until.is_(None))
            .values(last_failure_at=datetime.now(UTC) - timedelta(hours=2))
        )
    store.close()
    restarted = CaseStore.open(url)
    try:
        assert restarted.login_locked("alice", "192.0.2.55", limits) > 0
        restarted.login_failed("carol", "192.0.2.9", limits)  # prunes what is stale
        with restarted.engine.connect() as conn:
            left = conn.execute(sa.select(sa.func.count()).select_from(login_failures)).scalar_one()
        # alice's user row (locked) and carol's two fresh rows; every stale row is gone
        assert left == 3
        assert restarted.login_locked("alice", "192.0.2.55", limits) > 0
    finally:
        restarted.close()


def test_lockout_rows_do_not_keep_what_was_typed_as_a_user_name(store: CaseStore) -> None:
    from distillguard.cases.store import LoginLimits

    store.login_failed("hunter2-my-password", "203.0.113.1", LoginLimits())
    with store.engine.connect() as conn:
        dumped = repr(conn.exec_driver_sql("SELECT * FROM login_failures").all())
    assert "hunter2" not in dumped and "203.0.113.1" in dumped


# ---- sharing (intel) -------------------------------------------------------------------------
def test_the_sharing_migration_adds_its_columns_to_an_existing_database(url: str) -> None:
    from distillguard.cases import schema

    number = schema.MIGRATIONS.index(schema._v4) + 1
    store = CaseStore.open(url)
    try:
        store.upsert(actor_case(["a1"]))
        with store.engine.begin() as conn:  # the database as the code before the migration left it
            conn.execute(sa.text("ALTER TABLE cases DROP COLUMN withhold"))
            conn.execute(sa.text("ALTER TABLE cases DROP COLUMN peer"))
            conn.execute(sa.delete(schema_version).where(schema_version.c.version >= number))
        assert store.migrate() == SCHEMA_VERSION - number + 1
        old = store.case(1)
        assert old["withhold"] is False and old["peer"] is None and old["title"] == "actor of 1"
    finally:
        store.close()


def test_withhold_from_sharing_and_peer_cases(store: CaseStore) -> None:
    decided = store.upsert(actor_case(["a1", "a2"])).case_id
    assert store.case(decided)["withhold"] is False
    assert store.set_withhold(decided, "ivy", True) == {"case_id": decided, "withhold": True}
    assert store.case(decided)["withhold"] is True
    store.set_withhold(decided, "ivy", False)
    actions = [e["action"] for e in store.audit(decided)]
    assert actions[:2] == ["share", "withhold"] and store.audit(decided)[1]["actor_user"] == "ivy"
    with pytest.raises(CaseStoreError, match="no open or decided case 999"):
        store.set_withhold(999, "ivy", True)
    incoming = IncomingCase(
        kind="account", source="intel", title="b1 held", accounts=[account("b1")], peer="lab-a"
    )
    held = store.upsert(incoming).case_id
    assert store.case(held)["peer"] == "lab-a"
