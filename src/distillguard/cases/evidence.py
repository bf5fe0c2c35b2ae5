"""Evidence into cases: a scan's output folder, the gateway's call log, the enforcement list's holds.

Every reader names the file and line of a bad record and refuses the import (nothing is half
imported: each case is one transaction, and files are parsed completely before the first write).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import msgspec

from distillguard.cases.store import CaseStore, IncomingAccount, IncomingCase, IncomingSample, Upserted
from distillguard.enforcement.state import Ban
from distillguard.events.call_view import view_of
from distillguard.events.model import AccountVerdict, Reason
from distillguard.gateway.calllog import SegmentError, read_segment

log = logging.getLogger("distillguard.cases")


class EvidenceError(ValueError):
    """A scan or gateway file that cannot be imported; the message names file and line."""


class Example(msgspec.Struct, kw_only=True):
    event_id: str
    prompt: str = ""
    ts: datetime | None = None
    endpoint: str | None = None
    system: str = ""
    user_agent: str = ""
    end_user: str = ""


class AccountEvidence(msgspec.Struct, kw_only=True):
    """An `evidence.jsonl` line (`scan/outputs.py` writes it)."""

    account_id: str
    calls: int = 0
    daily: dict[str, int] = {}
    hours: list[int] = []
    signal_rates: dict[str, float] = {}
    examples: list[Example] = []


class Edge(msgspec.Struct, kw_only=True):
    a: str
    b: str
    kind: str
    weight: float = 0.0
    evidence: str = ""


class ClusterRecord(msgspec.Struct, kw_only=True):
    """The fields of a `clusters.jsonl` line that a case keeps (`linking` and `scan` write it)."""

    cluster_id: str
    accounts: list[str]
    risk: float
    verdict: str
    reasons: list[Reason] = []
    indicators: dict[str, list[str]] = {}
    edges: list[Edge] = []


T = TypeVar("T")


def _records(path: Path, kind: type[T]) -> Iterator[T]:
    """Every line of a JSON-lines file as `kind`; the first bad line stops the import, named."""
    decoder = msgspec.json.Decoder(kind)
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield decoder.decode(line)
            except msgspec.DecodeError as error:
                raise EvidenceError(f"{path}:{number}: {error}") from None


def scan_cases(scan_dir: Path) -> list[IncomingCase]:
    """The cases a scan's outputs call for: every cluster that is not benign (one case per actor)
    and every non-benign account outside such a cluster (one case per account)."""
    verdicts_path, clusters_path = scan_dir / "accounts_out.jsonl", scan_dir / "clusters.jsonl"
    for path in (verdicts_path, clusters_path):
        if not path.is_file():
            raise EvidenceError(
                f"{path}: not found (is {scan_dir} the output folder of `distillguard scan`?)"
            )
    verdicts = {v.account_id: v for v in _records(verdicts_path, AccountVerdict)}
    evidence_path = scan_dir / "evidence.jsonl"
    evidence: dict[str, AccountEvidence] = {}
    if evidence_path.is_file():
        evidence = {e.account_id: e for e in _records(evidence_path, AccountEvidence)}
    else:
        log.warning("%s not found: cases get verdicts and links but no timelines or samples", evidence_path)
    clusters = list(_records(clusters_path, ClusterRecord))
    out: list[IncomingCase] = []
    covered: set[str] = set()
    for cluster in clusters:
        if cluster.verdict == "benign":
            continue
        covered.update(cluster.accounts)
        out.append(
            IncomingCase(
                kind="actor",
                source="scan",
                title=f"actor {cluster.cluster_id}: {len(cluster.accounts)} linked accounts",
                cluster_id=cluster.cluster_id,
                risk=cluster.risk,
                verdict=cluster.verdict,
                reasons=[msgspec.to_builtins(r) for r in cluster.reasons],
                indicators=cluster.indicators,
                edges=[msgspec.to_builtins(e) for e in cluster.edges],
                accounts=[_account(a, verdicts.get(a), evidence.get(a)) for a in cluster.accounts],
                samples=[s for a in cluster.accounts for s in _samples(a, evidence.get(a))],
            )
        )
    for account_id, verdict in verdicts.items():
        if verdict.verdict == "benign" or account_id in covered:
            continue
        out.append(
            IncomingCase(
                kind="account",
                source="scan",
                title=f"account {account_id}",
                cluster_id=verdict.cluster_id,
                risk=verdict.risk,
                verdict=verdict.verdict,
                reasons=[msgspec.to_builtins(r) for r in verdict.reasons],
                accounts=[_account(account_id, verdict, evidence.get(account_id))],
                samples=_samples(account_id, evidence.get(account_id)),
            )
        )
    return out


def _account(
    account_id: str, verdict: AccountVerdict | None, evidence: AccountEvidence | None
) -> IncomingAccount:
    evidence = evidence or AccountEvidence(account_id=account_id)
    return IncomingAccount(
        account_id=account_id,
        risk=verdict.risk if verdict else 0.0,
        verdict=verdict.verdict if verdict else "benign",
        calls=evidence.calls,
        calls_to_flag=verdict.calls_to_flag if verdict else None,
        first_flagged_at=verdict.first_flagged_at if verdict else None,
        reasons=[msgspec.to_builtins(r) for r in verdict.reasons] if verdict else [],
        daily=evidence.daily,
        hours=evidence.hours,
        signal_rates=evidence.signal_rates,
    )


def _samples(account_id: str, evidence: AccountEvidence | None) -> list[IncomingSample]:
    return [
        IncomingSample(
            account_id=account_id,
            event_id=example.event_id,
            ts=example.ts,
            endpoint=example.endpoint,
            system=example.system,
            prompt=example.prompt,
            user_agent=example.user_agent or None,
            end_user=example.end_user or None,
        )
        for example in (evidence.examples if evidence else [])
    ]


def import_scan(store: CaseStore, scan_dir: Path) -> list[Upserted]:
    return [store.upsert(case) for case in scan_cases(scan_dir)]


# ---- the gateway's flags ---------------------------------------------------------------------
FLAGGING = ("flag", "throttle", "block", "ban")


def gateway_cases(log_dir: Path) -> list[IncomingCase]:
    """One case per account the gateway's policy acted on (a rule matched: flag, throttle, block,
    ban), from its call log (live segments and archive), with those calls as samples. Refusals of
    accounts already on the ban list are enforcement, not new evidence, and are left out."""
    if not log_dir.is_dir():
        raise EvidenceError(f"{log_dir}: not a gateway log folder (`distillguard serve --log-dir`)")
    files = sorted(log_dir.glob("calls-*.jsonl")) + sorted((log_dir / "archive").glob("*.jsonl.gz"))
    by_account: dict[str, IncomingCase] = {}
    for path in files:
        try:
            calls = list(read_segment(path, strict=True))
        except SegmentError as error:
            raise EvidenceError(str(error)) from None
        for call in calls:
            decision = call.decision
            if decision is None or decision.action not in FLAGGING or not decision.matches:
                continue
            view = view_of(call)
            score = max(m.score for m in decision.matches)
            case = by_account.get(call.account_id)
            if case is None:
                case = by_account[call.account_id] = IncomingCase(
                    kind="account",
                    source="gateway",
                    title=f"account {call.account_id} (gateway)",
                    verdict="suspicious",
                    accounts=[IncomingAccount(account_id=call.account_id, verdict="suspicious")],
                )
            account = case.accounts[0]
            account.calls += 1
            day = call.ts.date().isoformat()
            account.daily[day] = account.daily.get(day, 0) + 1
            for match in decision.matches:
                account.signal_rates[match.signal] = account.signal_rates.get(match.signal, 0) + 1
            case.risk = max(case.risk, score)
            account.risk = case.risk
            reason = {
                "signal": decision.matches[0].signal,
                "score": score,
                "detail": f"gateway {decision.action} by rule {decision.matches[0].rule}",
            }
            if reason["detail"] not in {r["detail"] for r in case.reasons}:
                case.reasons.append(reason)
            case.samples.append(
                IncomingSample(
                    account_id=call.account_id,
                    event_id=call.event_id,
                    ts=call.ts,
                    endpoint=view.endpoint,
                    system=view.system_prompt,
                    prompt=view.prompt,
                    user_agent=view.client_user_agent,
                    end_user=view.end_user,
                    action=decision.action,
                )
            )
    for case in by_account.values():
        account = case.accounts[0]
        account.signal_rates = {k: v / account.calls for k, v in account.signal_rates.items()}
        account.reasons = case.reasons
    return list(by_account.values())


def import_gateway(store: CaseStore, log_dir: Path) -> list[Upserted]:
    return [store.upsert(case) for case in gateway_cases(log_dir)]


# ---- recidivism holds ------------------------------------------------------------------------
def sync_holds(store: CaseStore, entries: list[Ban]) -> list[Upserted]:
    """Open a case, linked to the actor's, for each held account that has none yet."""
    out = []
    for entry in entries:
        if not entry.hold or not entry.subject.startswith("account:"):
            continue
        account_id = entry.subject.split(":", 1)[1]
        if store.cases_of_account(account_id):
            continue
        if entry.source.startswith("intel:"):
            out.append(store.upsert(_peer_hold_case(account_id, entry)))
            continue
        linked = entry.case_id if entry.case_id is not None and store.exists(entry.case_id) else None
        out.append(
            store.upsert(
                IncomingCase(
                    kind="account",
                    source="recidivism",
                    title=f"account {account_id}: held, linked to case {entry.case_id}",
                    risk=1.0,
                    verdict="suspicious",
                    reasons=[{"signal": "recidivism", "score": 1.0, "detail": entry.reason}],
                    accounts=[IncomingAccount(account_id=account_id, verdict="suspicious", risk=1.0)],
                    linked_case_id=linked,
                )
            )
        )
    return out


def _peer_hold_case(account_id: str, entry: Ban) -> IncomingCase:
    """A hold on a peer's indicators (`distillguard intel pull`): the case names the peer; nothing
    links it to a case of ours, and only a reviewer's decision on it bans."""
    peer = entry.source.split(":", 1)[1]
    return IncomingCase(
        kind="account",
        source="intel",
        peer=peer,
        title=f"account {account_id}: held on indicators shared by peer {peer}",
        risk=1.0,
        verdict="suspicious",
        reasons=[{"signal": "intel", "score": 1.0, "detail": entry.reason}],
        accounts=[IncomingAccount(account_id=account_id, verdict="suspicious", risk=1.0)],
    )
