"""A reviewer's decision on a case, turned into enforcement entries every gateway replica reads.

ban / throttle: one entry per account of the case and one per indicator that linked them
(payment fingerprints, sign-up IPs, TLS fingerprints within an ASN, templates, system prompts), all
carrying the case's actor id, so an account the actor opens next is held when it matches.
allow (sanctioned): account entries with action `allow`; the actor's indicator entries are lifted.
clear (false positive): the case's indicator entries are lifted, the accounts get `exempt` entries
(never held again for what they share with the actor; bans and holds on them end), and they are
written as labelled benign examples for the next training set.
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
