"""A reviewer's decision on a case, turned into enforcement entries every gateway replica reads.

ban / throttle: one entry per account of the case and one per indicator that linked them
(payment fingerprints, sign-up IPs, TLS fingerprints within an ASN, templates, system prompts), all
carrying the case's actor id, so an account the actor opens next is held when it matches.
allow (sanctioned): account entries with action `allow`; the actor's indicator entries are lifted.
clear (false positive): every entry of the case is lifted, and the cleared accounts are written as
labelled benign examples for the next training set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillguard.enforcement.state import INDICATOR_KINDS, Ban, EnforcementState, ban_subject


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
    """What a decision writes: `current` is the enforcement list as the deciding process sees it."""
    case_id = int(case["case_id"])
    accounts = [a["account_id"] for a in case["accounts"]]
    account_subjects = [ban_subject("account", a) for a in accounts]
    indicator_subjects = [
        ban_subject(kind, value)
        for kind, values in sorted((case.get("indicators") or {}).items())
        if kind in INDICATOR_KINDS
        for value in values
    ]
    owned = {e.subject for e in current if e.case_id == case_id and not e.hold}
    held_here = {e.subject for e in current if e.hold and e.subject in set(account_subjects)}
    stamp = time.time()
    if action in ("ban", "throttle"):
        put = [
            Ban(
                subject=subject,
                reason=reason,
                source="review",
                ts=stamp,
                action=action,
                actor=actor_id(case_id),
                case_id=case_id,
            )
            for subject in account_subjects + indicator_subjects
        ]
        stale = owned - {e.subject for e in put}
        return Plan(put=put, lift=sorted(stale))
    if action == "allow":
        put = [
            Ban(
                subject=s,
                reason=reason,
                source="review",
                ts=stamp,
                action="allow",
                actor=actor_id(case_id),
                case_id=case_id,
            )
            for s in account_subjects
        ]
        return Plan(put=put, lift=sorted((owned | held_here) - set(account_subjects)))
    if action == "clear":
        return Plan(put=[], lift=sorted(owned | held_here))
    raise ValueError(f"unknown decision {action!r}")


async def deliver(state: EnforcementState, decided: Plan) -> None:
    """Write the plan to the shared list (Redis hash + pub/sub, or the watched bans file)."""
    for subject in decided.lift:
        await state.lift(subject)
    for entry in decided.put:
        await state.put(entry)


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
