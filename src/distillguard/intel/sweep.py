"""`distillguard intel sweep`: the batch side of the watch list. Accounts we already know (sign-up
records, and a scan's sample calls for templates and system prompts) are matched against peers'
watch entries the way the gateway matches a caller; a match is held (its own enforcement entry)
and a case naming the peer is opened."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from distillguard.cases.evidence import AccountEvidence, _records, sync_holds
from distillguard.cases.store import CaseStore
from distillguard.enforcement.state import Ban, EnforcementState
from distillguard.events.model import Account
from distillguard.intel.community_key import CommunityKeys
from distillguard.intel.watch import WATCH, WatchIndex, account_values, hold_entry


def sample_frames(scan_dir: Path | None) -> dict[str, list[tuple[str, str]]]:
    """(prompt, system prompt) of each account's sample calls in a scan's `evidence.jsonl`."""
    if scan_dir is None or not (scan_dir / "evidence.jsonl").is_file():
        return {}
    return {
        e.account_id: [(x.prompt, x.system) for x in e.examples]
        for e in _records(scan_dir / "evidence.jsonl", AccountEvidence)
    }


async def sweep(
    cases: CaseStore,
    state: EnforcementState,
    keys: CommunityKeys,
    accounts: Mapping[str, Account],
    scan_dir: Path | None = None,
) -> list[tuple[str, str]]:
    frames = sample_frames(scan_dir)
    index = WatchIndex((e for e in state.entries() if e.subject.startswith(WATCH)), keys)
    held: list[Ban] = []
    if len(index):
        for account_id, account in sorted(accounts.items()):
            if state.banned(account_id, None) is not None:
                continue  # its own entry (banned, held, cleared, sanctioned) stands
            created = account.created_at.timestamp() if account.created_at else None
            match = index.match(account_values(account, frames.get(account_id, [])), created)
            if match is None:
                continue
            entry = hold_entry(account_id, match)
            await state.put(entry)
            held.append(entry)
    sync_holds(cases, held)
    return [(e.subject.split(":", 1)[1], e.reason) for e in held]
