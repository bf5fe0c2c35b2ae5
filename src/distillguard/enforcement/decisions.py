"""A reviewer's decision on a case, turned into enforcement entries every gateway replica reads.

ban / throttle: one entry per account of the case and one per indicator that linked them
(payment fingerprints, sign-up IPs, TLS fingerprints within an ASN, templates, system prompts), all
carrying the case's actor id, so an account the actor opens next is held when it matches.
allow (sanctioned): account entries with action `allow`; the actor's indicator entries are lifted.
clear (false positive): the case's indicator entries are lifted, the accounts get `exempt` entries
(never held again for what they share with the actor; bans and holds on them end), and they are
written as labelled benign examples for the next training set.

Delivery goes through the case store's outbox: the decision's operations (`operations`) are committed
with the decision and its audit entry, then `deliver_outbox` sends them in order and marks each one
delivered; a failure leaves it (and everything after it) for the next attempt. An operation is
idempotent (an entry put twice is the same entry; a lift of a lifted subject changes nothing), so a
crash between sending one and marking it costs a repeated line at worst, never a lost one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec

from distillguard.enforcement.state import INDICATOR_KINDS, Ban, EnforcementState, ban_subject

log = logging.getLogger("distillguard.enforcement.decisions")


def actor_id(case_id: int) -> str:
    return f"case-{case_id}"


@dataclass
class Plan:
    put: list[Ban]
    lift: list[str]

    def summary(self) -> dict[str, Any]:
        return {
            "entries": [f"{e.action} {e.subject}" for e in self.put][:200],
            "n_entries": len(self.put),
            "lifted": self.lift[:200],
            "n_lifted": len(self.lift),
        }


def plan(case: dict[str, Any], action: str, current: Sequence[Ban], reason: str) -> Plan:
    """What a decision writes: `current` is the enforcement list as the deciding process sees it.

    An indicator shared with another decided case keeps that case's entry (a ban may replace a
    throttle), so clearing this case later cannot lift the other case's enforcement. Clearing
    writes `exempt` entries over the accounts' own entries, whoever wrote them (this case, the
    gateway's rules, a recidivism hold): the cleared accounts are not held again by the indicators
    they share with the actor."""
    case_id = int(case["case_id"])
    accounts = [ban_subject("account", a["account_id"]) for a in case["accounts"]]
    indicators = [
        ban_subject(kind, value)
        for kind, values in sorted((case.get("indicators") or {}).items())
        if kind in INDICATOR_KINDS
        for value in values
    ]
    by_subject = {e.subject: e for e in current}
    owned = {e.subject for e in current if e.case_id == case_id and not e.hold}

    def entry(subject: str, what: str) -> Ban:
        return Ban(
            subject=subject,
            reason=reason,
            source="review",
            ts=time.time(),
            action=what,
            actor=actor_id(case_id),
            case_id=case_id,
        )

    def another_case_keeps(subject: str) -> bool:
        other = by_subject.get(subject)
        if other is None or other.hold or other.case_id in (None, case_id) or other.action == "exempt":
            return False
        return not (action == "ban" and other.action == "throttle")

    if action in ("ban", "throttle"):
        put = [entry(s, action) for s in accounts + indicators if not another_case_keeps(s)]
        return Plan(put=put, lift=sorted(owned - {e.subject for e in put}))
    if action in ("allow", "clear"):
        what = "allow" if action == "allow" else "exempt"
        return Plan(put=[entry(s, what) for s in accounts], lift=sorted(owned - set(accounts)))
    raise ValueError(f"unknown decision {action!r}")


def operations(decided: Plan, *, feedback: tuple[Path, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The plan as outbox operations (JSON), in delivery order: lifts, then puts (a subject may be
    lifted and put again), then the cleared accounts as feedback labels (`feedback`: the labels file
    and the case)."""
    out: list[dict[str, Any]] = [{"kind": "lift", "subject": subject} for subject in decided.lift]
    out += [{"kind": "put", "entry": msgspec.to_builtins(entry)} for entry in decided.put]
    if feedback is not None:
        path, case = feedback
        out.append(
            {
                "kind": "feedback",
                "path": str(path),
                "case_id": int(case["case_id"]),
                "accounts": [a["account_id"] for a in case["accounts"]],
            }
        )
    return out


def with_pending(entries: Sequence[Ban], pending: Iterable[dict[str, Any]]) -> list[Ban]:
    """The enforcement list as it will be once the undelivered operations arrive: what a new
    decision must be planned against (or a ban still in the outbox would not be lifted by a clear)."""
    by_subject = {e.subject: e for e in entries}
    for operation in pending:
        if operation["kind"] == "put":
            entry = msgspec.convert(operation["entry"], Ban)
            by_subject[entry.subject] = entry
        elif operation["kind"] == "lift":
            by_subject.pop(operation["subject"], None)
    return list(by_subject.values())


async def apply(state: EnforcementState, operation: dict[str, Any]) -> None:
    """Deliver one operation; raises whatever the state or the file system raises."""
    kind = operation.get("kind")
    if kind == "lift":
        await state.lift(str(operation["subject"]))
    elif kind == "put":
        await state.put(msgspec.convert(operation["entry"], Ban))
    elif kind == "feedback":
        case = {
            "case_id": operation["case_id"],
            "accounts": [{"account_id": a} for a in operation["accounts"]],
        }
        await asyncio.to_thread(write_feedback, Path(operation["path"]), case)
    else:
        raise ValueError(f"outbox operation: unknown kind {kind!r}")


async def deliver(state: EnforcementState, decided: Plan) -> None:
    """Write the plan to the shared list (Redis hash + pub/sub, or the watched bans file) directly,
    without an outbox (for callers that have no case store)."""
    for operation in operations(decided):
        await apply(state, operation)


class PendingOperation(Protocol):
    @property
    def outbox_id(self) -> int: ...
    @property
    def operation(self) -> dict[str, Any]: ...


class Outbox(Protocol):
    """Where decisions leave their operations (the case store)."""

    def pending_enforcement(self, limit: int = ...) -> Sequence[PendingOperation]: ...
    def enforcement_delivered(self, outbox_id: int) -> None: ...
    def enforcement_failed(self, outbox_id: int, error: str) -> None: ...
    def pending_count(self) -> int: ...


@dataclass
class Delivery:
    delivered: int
    pending: int
    error: str | None = None


async def deliver_outbox(outbox: Outbox, state: EnforcementState, batch: int = 500) -> Delivery:
    """Send every undelivered operation in order, marking each as it arrives; stop at the first
    failure (later operations may depend on it: a clear after a ban) and leave it for the next call.
    Run one deliverer at a time per process (the caller's lock); two processes delivering the same
    row repeat an idempotent write."""
    delivered = 0
    while True:
        pending = await asyncio.to_thread(outbox.pending_enforcement, batch)
        for item in pending:
            try:
                await apply(state, item.operation)
            except Exception as error:  # a state, disk or data error: recorded, retried, reported
                why = f"{type(error).__name__}: {error}"
                await asyncio.to_thread(outbox.enforcement_failed, item.outbox_id, why)
                log.warning("enforcement not delivered (outbox #%d), will retry: %s", item.outbox_id, why)
                return Delivery(delivered, await asyncio.to_thread(outbox.pending_count), why)
            await asyncio.to_thread(outbox.enforcement_delivered, item.outbox_id)
            delivered += 1
        if len(pending) < batch:
            return Delivery(delivered, 0)


def write_feedback(path: Path, case: dict[str, Any]) -> int:
    """Cleared accounts as `labels.jsonl` lines (the events spec's Label: benign, tactic
    `cleared_by_review`), appended for the next `distillguard train` data set; an account already
    in the file is not repeated (a labels file lists each account once). Who cleared them and why
    is in the case's audit log. Returns how many lines were added."""
    path.parent.mkdir(parents=True, exist_ok=True)
    known: set[str] = set()
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                known.add(json.loads(line)["account_id"])
    added = 0
    with path.open("a", encoding="utf-8") as out:
        for account in case["accounts"]:
            if account["account_id"] in known:
                continue
            known.add(account["account_id"])
            record = {
                "account_id": account["account_id"],
                "label": "benign",
                "actor": None,
                "tactic": "cleared_by_review",
            }
            out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
            added += 1
    return added
