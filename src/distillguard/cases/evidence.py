"""Evidence into cases: a scan's output folder, the gateway's call log, the enforcement list's holds.

Every reader names the file and line of a bad record and refuses the import (nothing is half
imported: each case is one transaction, and files are parsed completely before the first write).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from distillguard.cases.store import CaseStore, IncomingAccount, IncomingCase, IncomingSample, Upserted
from distillguard.enforcement.state import Ban
from distillguard.events.model import AccountVerdict

log = logging.getLogger("distillguard.cases")

_verdict_decoder = msgspec.json.Decoder(AccountVerdict)


class EvidenceError(ValueError):
    """A scan or gateway file that cannot be imported; the message names file and line."""


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, line


def _json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise EvidenceError(f"{path}:{number}: not valid JSON: {error}") from None
        if not isinstance(record, dict):
            raise EvidenceError(f"{path}:{number}: expected a JSON object")
        yield number, record


def _field(record: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = record.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise EvidenceError(f"{where}: field {name!r} is missing or has the wrong type")
    return value


def scan_cases(scan_dir: Path) -> list[IncomingCase]:
    """The cases a scan's outputs call for: every cluster that is not benign (one case per actor)
    and every non-benign account outside such a cluster (one case per account)."""
    verdicts_path, clusters_path = scan_dir / "accounts_out.jsonl", scan_dir / "clusters.jsonl"
    for path in (verdicts_path, clusters_path):
        if not path.is_file():
            raise EvidenceError(
                f"{path}: not found (is {scan_dir} the output folder of `distillguard scan`?)"
            )
    verdicts: dict[str, AccountVerdict] = {}
    for number, line in _lines(verdicts_path):
        try:
            verdict = _verdict_decoder.decode(line)
        except msgspec.DecodeError as error:
            raise EvidenceError(f"{verdicts_path}:{number}: {error}") from None
        verdicts[verdict.account_id] = verdict
    evidence: dict[str, dict[str, Any]] = {}
    evidence_path = scan_dir / "evidence.jsonl"
    if evidence_path.is_file():
        for number, record in _json_objects(evidence_path):
            account_id = _field(record, "account_id", str, f"{evidence_path}:{number}")
            evidence[account_id] = record
    else:
        log.warning("%s not found: cases get verdicts and links but no timelines or samples", evidence_path)
    out: list[IncomingCase] = []
    covered: set[str] = set()
    for number, record in _json_objects(clusters_path):
        where = f"{clusters_path}:{number}"
        verdict = _field(record, "verdict", str, where)
        if verdict == "benign":
            continue
        members = _field(record, "accounts", list, where)
        risk = float(_field(record, "risk", (int, float), where))
        cluster_id = _field(record, "cluster_id", str, where)
        covered.update(members)
        out.append(
            IncomingCase(
                kind="actor",
                source="scan",
                title=f"actor {cluster_id}: {len(members)} linked accounts",
                cluster_id=cluster_id,
                risk=risk,
                verdict=verdict,
                reasons=list(record.get("reasons") or []),
                indicators={
                    str(k): [str(v) for v in vs] for k, vs in (record.get("indicators") or {}).items()
                },
                edges=list(record.get("edges") or []),
                accounts=[_account(a, verdicts.get(a), evidence.get(a)) for a in members],
                samples=[s for a in members for s in _samples(a, evidence.get(a))],
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
    account_id: str, verdict: AccountVerdict | None, evidence: dict[str, Any] | None
) -> IncomingAccount:
    evidence = evidence or {}
    return IncomingAccount(
        account_id=account_id,
        risk=verdict.risk if verdict else 0.0,
        verdict=verdict.verdict if verdict else "benign",
        calls=int(evidence.get("calls") or 0),
        calls_to_flag=verdict.calls_to_flag if verdict else None,
        first_flagged_at=verdict.first_flagged_at if verdict else None,
        reasons=[msgspec.to_builtins(r) for r in verdict.reasons] if verdict else [],
        daily={str(k): int(v) for k, v in (evidence.get("daily") or {}).items()},
        hours=[int(c) for c in evidence.get("hours") or []],
        signal_rates={str(k): float(v) for k, v in (evidence.get("signal_rates") or {}).items()},
    )


def _samples(account_id: str, evidence: dict[str, Any] | None) -> list[IncomingSample]:
    out = []
    for example in (evidence or {}).get("examples") or []:
        out.append(
            IncomingSample(
                account_id=account_id,
                event_id=str(example.get("event_id", "")),
                ts=_time(example.get("ts")),
                endpoint=example.get("endpoint"),
                system=example.get("system"),
                prompt=str(example.get("prompt", "")),
                user_agent=example.get("user_agent") or None,
                end_user=example.get("end_user") or None,
            )
        )
    return out


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def import_scan(store: CaseStore, scan_dir: Path) -> list[Upserted]:
    return [store.upsert(case) for case in scan_cases(scan_dir)]


# ---- the gateway's flags ---------------------------------------------------------------------
FLAGGING = ("flag", "throttle", "block", "ban")


def gateway_cases(log_dir: Path) -> list[IncomingCase]:
    """One case per account the gateway's policy acted on (a rule matched: flag, throttle, block,
    ban), from its call log (live segments and archive), with those calls as samples. Refusals of
    accounts already on the ban list are enforcement, not new evidence, and are left out."""
    from distillguard.gateway.calllog import read_segment

    if not log_dir.is_dir():
        raise EvidenceError(f"{log_dir}: not a gateway log folder (`distillguard serve --log-dir`)")
    files = sorted(log_dir.glob("calls-*.jsonl")) + sorted((log_dir / "archive").glob("*.jsonl.gz"))
    by_account: dict[str, IncomingCase] = {}
    for path in files:
        for call in read_segment(path):
            decision = call.decision
            if decision is None or decision.action not in FLAGGING or not decision.matches:
                continue
            prompt = _prompt_of(call.request)
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
                    endpoint=call.endpoint,
                    prompt=prompt,
                    user_agent=call.client.user_agent if call.client else None,
                    end_user=call.end_user,
                    action=decision.action,
                )
            )
    for case in by_account.values():
        account = case.accounts[0]
        account.signal_rates = {k: v / account.calls for k, v in account.signal_rates.items()}
        account.reasons = case.reasons
    return list(by_account.values())


def _prompt_of(request: dict[str, Any] | None) -> str:
    """The text a reviewer reads: the last user message (or the completion prompt), as text."""
    if not request:
        return ""
    messages = request.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                return json.dumps(content, ensure_ascii=False)
    for key in ("prompt", "input"):
        if key in request:
            value = request[key]
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return json.dumps(request, ensure_ascii=False)[:2000]


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
