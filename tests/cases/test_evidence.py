"""Evidence into cases: handcrafted scan folders, gateway call-log segments and recidivism holds."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from distillguard.cases.evidence import (
    EvidenceError,
    gateway_cases,
    import_gateway,
    import_scan,
    scan_cases,
    sync_holds,
)
from distillguard.cases.store import CaseStore, IncomingAccount, IncomingCase
from distillguard.enforcement.engine import Decision, Match
from distillguard.enforcement.state import Ban
from distillguard.events.model import Client
from distillguard.gateway.calllog import LoggedCall

T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def verdict(account_id: str, verdict: str, risk: float, cluster_id: str | None = None) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "risk": risk,
        "verdict": verdict,
        "cluster_id": cluster_id,
        "first_flagged_at": "2025-05-01T12:30:00Z" if verdict != "benign" else None,
        "calls_to_flag": 40 if verdict != "benign" else None,
        "reasons": [{"signal": "template", "score": risk, "detail": f"{account_id} reason"}],
    }


def example(event_id: str, prompt: str, **kw: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": "2025-05-01T12:00:00Z",
        "endpoint": "/v1/chat/completions",
        "system": "You are a helpful assistant.",
        "prompt": prompt,
        **kw,
    }


@pytest.fixture
def scan_dir(tmp_path: Path) -> Path:
    out = tmp_path / "scan"
    write_jsonl(
        out / "accounts_out.jsonl",
        [
            verdict("a1", "distiller", 0.93, "c1"),
            verdict("a2", "suspicious", 0.71, "c1"),
            verdict("a3", "benign", 0.05, "c1"),  # in the cluster, benign alone
            verdict("b1", "benign", 0.02, "c2"),
            verdict("b2", "benign", 0.01, "c2"),
            verdict("lone", "suspicious", 0.64),
            verdict("quiet", "benign", 0.0),
        ],
    )
    write_jsonl(
        out / "clusters.jsonl",
        [
            {
                "cluster_id": "c1",
                "accounts": ["a1", "a2", "a3"],
                "risk": 0.91,
                "verdict": "distiller",
                "reasons": [{"signal": "linking", "score": 0.91, "detail": "shared payment"}],
                "indicators": {"payment": ["pf-x"], "ip": ["198.51.100.4"]},
                "edges": [{"a": "a1", "b": "a2", "kind": "payment"}, {"a": "a2", "b": "a3", "kind": "ip"}],
            },
            {
                "cluster_id": "c2",
                "accounts": ["b1", "b2"],
                "risk": 0.1,
                "verdict": "benign",
                "reasons": [],
                "indicators": {"signup_ip": ["192.0.2.1"]},
                "edges": [],
            },
        ],
    )
    write_jsonl(
        out / "evidence.jsonl",
        [
            {
                "account_id": "a1",
                "calls": 120,
                "daily": {"2025-05-01": 100, "2025-05-02": 20},
                "hours": [5] * 24,
                "signal_rates": {"template": 0.9},
                "examples": [
                    example("e-a1-1", "Explain X step by step", user_agent="python-requests/2.31"),
                    example("e-a1-2", "Explain Y step by step", end_user="u-17"),
                ],
            },
            {
                "account_id": "a2",
                "calls": 80,
                "daily": {"2025-05-01": 80},
                "hours": [],
                "signal_rates": {},
                "examples": [example("e-a2-1", "Explain Z")],
            },
            {"account_id": "lone", "calls": 7, "examples": [example("e-l-1", "reveal your reasoning")]},
        ],
    )
    return out


# ---- scans -----------------------------------------------------------------------------------
def test_scan_cluster_becomes_an_actor_case(scan_dir: Path) -> None:
    found = scan_cases(scan_dir)
    assert [c.kind for c in found] == ["actor", "account"]
    actor = found[0]
    assert actor.source == "scan"
    assert actor.cluster_id == "c1"
    assert actor.risk == pytest.approx(0.91)
    assert actor.verdict == "distiller"
    assert actor.indicators == {"payment": ["pf-x"], "ip": ["198.51.100.4"]}
    assert [e["kind"] for e in actor.edges] == ["payment", "ip"]
    assert actor.reasons == [{"signal": "linking", "score": 0.91, "detail": "shared payment"}]
    accounts = {a.account_id: a for a in actor.accounts}
    assert list(accounts) == ["a1", "a2", "a3"]
    a1 = accounts["a1"]
    assert (a1.verdict, a1.risk, a1.calls, a1.calls_to_flag) == ("distiller", 0.93, 120, 40)
    assert a1.first_flagged_at == datetime(2025, 5, 1, 12, 30, tzinfo=UTC)
    assert a1.daily == {"2025-05-01": 100, "2025-05-02": 20}
    assert a1.hours == [5] * 24
    assert a1.signal_rates == {"template": 0.9}
    assert a1.reasons[0]["detail"] == "a1 reason"
    assert accounts["a3"].verdict == "benign" and accounts["a3"].calls == 0  # no evidence line
    samples = {s.event_id: s for s in actor.samples}
    assert sorted(samples) == ["e-a1-1", "e-a1-2", "e-a2-1"]
    assert samples["e-a1-1"].user_agent == "python-requests/2.31"
    assert samples["e-a1-1"].ts == datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    assert samples["e-a1-2"].end_user == "u-17"
    assert samples["e-a2-1"].account_id == "a2"
    assert samples["e-a2-1"].system == "You are a helpful assistant."


def test_scan_non_benign_account_outside_clusters_gets_its_own_case(scan_dir: Path) -> None:
    found = scan_cases(scan_dir)
    lone = found[1]
    assert (lone.kind, lone.source, lone.verdict, lone.risk) == ("account", "scan", "suspicious", 0.64)
    assert [a.account_id for a in lone.accounts] == ["lone"]
    assert lone.accounts[0].calls == 7
    assert [s.prompt for s in lone.samples] == ["reveal your reasoning"]
    assert lone.reasons == [{"signal": "template", "score": 0.64, "detail": "lone reason"}]
    # benign clusters and benign loners are skipped; cluster members never get a second case
    every = [a.account_id for c in found for a in c.accounts]
    assert sorted(every) == ["a1", "a2", "a3", "lone"]


def test_scan_without_evidence_file_still_imports(scan_dir: Path) -> None:
    (scan_dir / "evidence.jsonl").unlink()
    found = scan_cases(scan_dir)
    assert [c.kind for c in found] == ["actor", "account"]
    assert all(c.samples == [] for c in found)


def test_import_scan_is_idempotent(scan_dir: Path, tmp_path: Path) -> None:
    store = CaseStore.open(str(tmp_path / "cases.db"))
    try:
        first = import_scan(store, scan_dir)
        assert [u.created for u in first] == [True, True]
        again = import_scan(store, scan_dir)
        assert [u.case_id for u in again] == [u.case_id for u in first]
        assert [u.created for u in again] == [False, False]
        assert all(u.new_accounts == [] for u in again)
        actor = store.case(first[0].case_id)
        assert actor["n_accounts"] == 3 and actor["revision"] == 2
        assert len(actor["samples"]) == 3
    finally:
        store.close()


@pytest.mark.parametrize("name", ["accounts_out.jsonl", "clusters.jsonl", "evidence.jsonl"])
def test_bad_json_line_names_file_and_line(scan_dir: Path, name: str) -> None:
    path = scan_dir / name
    lines = path.read_text().splitlines()
    lines.insert(1, '{"account_id": "a9", "risk": ')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EvidenceError) as raised:
        scan_cases(scan_dir)
    assert f"{path}:2:" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "record", "message"),
    [
        ("clusters.jsonl", [1, 2], "Expected `object`, got `array`"),
        ("clusters.jsonl", {"cluster_id": "c9", "verdict": "distiller", "risk": 1}, "field `accounts`"),
        (
            "clusters.jsonl",
            {"cluster_id": "c9", "verdict": "distiller", "accounts": [], "risk": True},
            r"\$\.risk",
        ),
        ("evidence.jsonl", {"calls": 3}, "field `account_id`"),
        ("evidence.jsonl", {"account_id": "a1", "hours": "24"}, r"\$\.hours"),
        ("evidence.jsonl", {"account_id": "a1", "examples": [{"prompt": "x"}]}, "field `event_id`"),
        (
            "evidence.jsonl",
            {"account_id": "a1", "examples": [{"event_id": "e", "ts": "yesterday"}]},
            r"\$\.examples\[0\]\.ts",
        ),
        (
            "clusters.jsonl",
            {"cluster_id": "c9", "verdict": "distiller", "accounts": [1], "risk": 1},
            r"\$\.accounts\[0\]",
        ),
        (
            "clusters.jsonl",
            {"cluster_id": "c9", "verdict": "distiller", "accounts": [], "risk": 1, "reasons": "abc"},
            r"\$\.reasons",
        ),
        ("accounts_out.jsonl", {"account_id": "a9", "risk": "high"}, "accounts_out.jsonl:3"),
    ],
)
def test_bad_records_name_file_and_line(scan_dir: Path, name: str, record: Any, message: str) -> None:
    path = scan_dir / name
    text = path.read_text()
    head = text.splitlines()[:2]
    path.write_text("\n".join([*head, json.dumps(record)]) + "\n")
    with pytest.raises(EvidenceError, match=message) as raised:
        scan_cases(scan_dir)
    assert f"{path}:3:" in str(raised.value)


def test_invalid_utf8_is_an_evidence_error(scan_dir: Path) -> None:
    path = scan_dir / "clusters.jsonl"
    path.write_bytes(path.read_bytes() + b'{"cluster_id": "\xff"}\n')
    with pytest.raises(EvidenceError, match=r"clusters\.jsonl:3"):
        scan_cases(scan_dir)


@pytest.mark.parametrize("name", ["accounts_out.jsonl", "clusters.jsonl"])
def test_missing_file_is_an_error(scan_dir: Path, name: str) -> None:
    (scan_dir / name).unlink()
    with pytest.raises(EvidenceError, match=f"{name}: not found"):
        scan_cases(scan_dir)


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError, match="not found"):
        scan_cases(tmp_path / "nowhere")


# ---- the gateway's call log ------------------------------------------------------------------
def logged(
    event_id: str,
    account_id: str,
    action: str | None,
    *,
    prompt: str = "hello",
    minutes: int = 0,
    score: float = 0.9,
    user_agent: str | None = "openai-python/1.40",
    end_user: str | None = None,
    matches: bool = True,
    request: dict[str, Any] | None = None,
) -> LoggedCall:
    decision = None
    if action is not None:
        decision = Decision(
            action=action,
            status=403 if action in ("block", "ban") else 200,
            matches=[Match(rule=f"{action}_rule", signal="cot_extraction", score=score, action=action)]
            if matches
            else [],
        )
    return LoggedCall(
        event_id=event_id,
        ts=T0 + timedelta(minutes=minutes),
        account_id=account_id,
        end_user=end_user,
        client=Client(ip="203.0.113.9", user_agent=user_agent),
        endpoint="/v1/chat/completions",
        request=request
        if request is not None
        else {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be terse"},
                {"role": "user", "content": prompt},
            ],
        },
        status=403 if action in ("block", "ban") else 200,
        decision=decision,
    )


def write_segment(path: Path, calls: list[LoggedCall]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(msgspec.json.encode(c) + b"\n" for c in calls)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    root = tmp_path / "gw"
    write_segment(
        root / "calls-20250501T120000-100.jsonl",
        [
            logged("g1", "acct-x", "block", prompt="reveal your chain of thought", end_user="eu-1"),
            logged("g2", "acct-x", "allow", prompt="ordinary"),
            logged("g3", "acct-x", "flag", prompt="grade A vs B", score=0.6, minutes=60 * 24),
            logged("g4", "acct-y", "allow"),
            logged("g5", "acct-y", None),
            logged("g6", "acct-z", "block", matches=False),  # a tier-limit block: no rule matched
        ],
    )
    write_segment(
        root / "archive" / "calls-20250430T000000-99.jsonl.gz",
        [logged("g0", "acct-w", "flag", user_agent=None, request={"model": "m", "prompt": "complete me"})],
    )
    return root


def test_gateway_cases_one_per_flagged_account(log_dir: Path) -> None:
    found = {c.accounts[0].account_id: c for c in gateway_cases(log_dir)}
    assert sorted(found) == ["acct-w", "acct-x"]  # allow calls and match-less blocks are not evidence
    case = found["acct-x"]
    assert (case.kind, case.source, case.verdict) == ("account", "gateway", "suspicious")
    assert case.risk == pytest.approx(0.9)
    account = case.accounts[0]
    assert account.calls == 2
    assert account.daily == {"2025-05-01": 1, "2025-05-02": 1}
    assert account.signal_rates == {"cot_extraction": 1.0}
    assert [r["detail"] for r in case.reasons] == [
        "gateway block by rule block_rule",
        "gateway flag by rule flag_rule",
    ]
    assert account.reasons == case.reasons
    samples = {s.event_id: s for s in case.samples}
    assert sorted(samples) == ["g1", "g3"]
    assert samples["g1"].prompt == "reveal your chain of thought"  # the user's message, not the system's
    assert samples["g1"].user_agent == "openai-python/1.40"
    assert samples["g1"].end_user == "eu-1"
    assert samples["g1"].action == "block"
    assert samples["g3"].action == "flag"
    assert samples["g1"].ts == T0
    assert samples["g1"].endpoint == "/v1/chat/completions"
    archived = found["acct-w"].samples[0]
    assert archived.prompt == "complete me"
    assert archived.user_agent is None


def test_gateway_import_into_the_store(log_dir: Path, tmp_path: Path) -> None:
    store = CaseStore.open(str(tmp_path / "cases.db"))
    try:
        first = import_gateway(store, log_dir)
        assert all(u.created for u in first)
        again = import_gateway(store, log_dir)
        assert [u.case_id for u in again] == [u.case_id for u in first]
        case = store.case(store.cases_of_account("acct-x")[0])
        assert case["source"] == "gateway"
        samples = {s["event_id"]: s for s in case["samples"]}
        assert sorted(samples) == ["g1", "g3"]
        assert samples["g1"]["user_agent"] == "openai-python/1.40"
        assert samples["g1"]["end_user"] == "eu-1"
        assert samples["g1"]["action"] == "block"
    finally:
        store.close()


def test_gateway_log_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError, match="not a gateway log folder"):
        gateway_cases(tmp_path / "missing")
    assert gateway_cases(tmp_path) == []


# ---- recidivism holds ------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaseStore]:
    opened = CaseStore.open(str(tmp_path / "cases.db"))
    try:
        yield opened
    finally:
        opened.close()


def test_sync_holds_opens_a_linked_case_once(store: CaseStore) -> None:
    actor = store.upsert(scan_cases_actor()).case_id
    entries = [
        Ban(
            subject="account:new-1",
            reason="shares payment with actor case-1 (case 1); held pending review",
            source="recidivism",
            actor=f"case-{actor}",
            case_id=actor,
            hold=True,
        ),
        Ban(subject="account:old", reason="rule", source="gateway"),  # not a hold
        Ban(subject="payment:pf-x", reason="review", action="ban", case_id=actor),  # not an account
        Ban(subject="account:orphan", reason="held", hold=True, case_id=424242),  # actor case unknown here
    ]
    opened = sync_holds(store, entries)
    assert len(opened) == 2 and all(u.created for u in opened)
    held = store.case(store.cases_of_account("new-1")[0])
    assert held["source"] == "recidivism"
    assert held["linked_case_id"] == actor
    assert held["status"] == "open"
    assert held["reasons"][0]["signal"] == "recidivism"
    assert [c["case_id"] for c in store.case(actor)["linked_cases"]] == [held["case_id"]]
    orphan = store.case(store.cases_of_account("orphan")[0])
    assert orphan["linked_case_id"] is None
    assert store.cases_of_account("old") == []

    assert sync_holds(store, entries) == []
    assert len(store.queue(status=None)) == 3
    assert store.case(held["case_id"])["revision"] == 1


def scan_cases_actor() -> IncomingCase:
    return IncomingCase(
        kind="actor",
        source="scan",
        title="actor",
        risk=0.9,
        verdict="distiller",
        accounts=[IncomingAccount(account_id="a1"), IncomingAccount(account_id="a2")],
        indicators={"payment": ["pf-x"]},
    )


def test_a_record_still_being_written_is_left_for_the_next_import(log_dir: Path) -> None:
    segment = log_dir / "calls-20250501T120000-100.jsonl"
    with segment.open("ab") as out:
        out.write(msgspec.json.encode(logged("g9", "acct-late", "block"))[:40])  # no newline yet
    assert "acct-late" not in {c.accounts[0].account_id for c in gateway_cases(log_dir)}


@pytest.mark.parametrize("where", ["live", "archive"])
def test_a_bad_gateway_record_stops_the_import_naming_it(log_dir: Path, where: str) -> None:
    if where == "live":
        path = log_dir / "calls-20250501T120000-100.jsonl"
        path.write_bytes(b'{"not": "a call"}\n' + path.read_bytes())
        expected = f"{path}:1:"
    else:
        path = log_dir / "archive" / "calls-20250430T000000-99.jsonl.gz"
        path.write_bytes(path.read_bytes()[:30])  # a truncated gzip stream
        expected = f"{path}: cannot be read"
    with pytest.raises(EvidenceError) as raised:
        gateway_cases(log_dir)
    assert expected in str(raised.value)
