"""`distillguard intel bench`: does sharing hold a returning actor at a second provider?

The simulator's world is split between two deployments. A sees every account except the
recidivists' returning accounts; it scans its traffic, opens cases, and its reviewers ban the
cases whose accounts are distillers (an oracle reviewer: this measures sharing, not A's
detection), then exports a STIX bundle. B sees the returning accounts and every benign account;
it imports A's bundle (the same checks as a TAXII pull) and runs the live gateway engine, with its
peer watch, over each of its accounts' calls in time order, as its gateway would.

Reported: returning accounts held on their first call at B with A's indicators; the same with B
alone (no peer indicators: nothing to match, so none can be held on a first call) and what B's own
scan of its traffic finds later; benign accounts B holds (any call); which kinds matched.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from distillguard.events.model import Account, account_decoder, label_decoder

A, B = "lab-a", "lab-b"


def _cli(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "distillguard", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"distillguard {' '.join(args)} failed: {done.stderr[-2000:]}")


def _split_events(events: Path, a_out: Path, b_out: Path, returning: set[str], benign: set[str]) -> None:
    """Returning accounts' calls go to B only; benign accounts are customers of both (B needs its
    own benign customers to measure false holds); every other account is A's."""
    with events.open("rb") as source, a_out.open("wb") as a, b_out.open("wb") as b:
        for line in source:
            start = line.find(b'"account_id":"') + len(b'"account_id":"')
            account = line[start : line.find(b'"', start)].decode()
            if account in returning or account in benign:
                b.write(line)
            if account not in returning:
                a.write(line)


async def _replay_b(
    events: Path, accounts: dict[str, Account], keys: Any, bundle: Path, db: Path, with_intel: bool
) -> dict[str, Any]:
    from distillguard.cases.store import CaseStore
    from distillguard.enforcement.engine import Caller, LiveEngine
    from distillguard.enforcement.policy import default_policy
    from distillguard.enforcement.state import MemoryState
    from distillguard.events.call_view import view_of
    from distillguard.gateway.calllog import read_segment
    from distillguard.intel.pull import import_bundle
    from distillguard.intel.store import IntelStore
    from distillguard.intel.watch import PeerWatch, call_values

    state = MemoryState()
    imported = None
    if with_intel:
        cases = CaseStore.open(str(db))
        imported = await import_bundle(IntelStore.open(cases), state, keys, bundle, peer=A)
        cases.close()
    # no rules: what is measured is the hold, not what B's rules would do to the calls
    policy = msgspec.structs.replace(default_policy(), rules=[])
    watch = PeerWatch(state, keys, refresh_s=3600.0) if with_intel else None
    engine = LiveEngine(policy, state, [], peer_watch=watch)
    engine.peer_watch = watch  # B alone: no peer watch even if the environment names a key
    first: dict[str, bool] = {}
    held_at: dict[str, int] = {}
    kinds: dict[str, list[str]] = {}
    calls: Counter[str] = Counter()
    for event in read_segment(events):
        account = accounts.get(event.account_id)
        indicators = []
        if account is not None:
            if account.payment_fingerprint:
                indicators.append(f"payment:{account.payment_fingerprint}")
            if account.signup_ip:
                indicators.append(f"signup_ip:{account.signup_ip}")
        caller = Caller(
            account_id=event.account_id,
            key_id=event.key_id,
            indicators=tuple(indicators),
            created_ts=account.created_at.timestamp() if account and account.created_at else None,
        )
        view = view_of(event)
        decision = await engine.decide(view, caller)
        calls[event.account_id] += 1
        held = decision.error_code == "account_held"
        if calls[event.account_id] == 1:
            first[event.account_id] = held
        if held and event.account_id not in held_at:
            held_at[event.account_id] = calls[event.account_id]
            match = watch.index().match(call_values(view, caller), caller.created_ts) if watch else None
            kinds[event.account_id] = match.kinds if match else []
    return {
        "first": first,
        "held_at": held_at,
        "kinds": kinds,
        "import": imported.totals() if imported is not None else None,
    }


def run_seed(preset: str, seed: int, out: Path, corpus: Path | None) -> dict[str, Any]:
    from distillguard.cases.evidence import import_scan
    from distillguard.cases.store import CaseStore
    from distillguard.intel.community_key import CommunityKeys
    from distillguard.intel.publish import export_bundle

    out.mkdir(parents=True, exist_ok=True)
    sim = out / "sim"
    if not (sim / "events.jsonl").is_file():
        _cli(
            "sim",
            "--preset",
            preset,
            "--seed",
            str(seed),
            "--out",
            str(sim),
            *(["--corpus", str(corpus)] if corpus else []),
        )
    labels = {
        label.account_id: label
        for label in (
            label_decoder.decode(line)
            for line in (sim / "labels.jsonl").read_bytes().splitlines()
            if line.strip()
        )
    }
    accounts = {
        a.account_id: a
        for a in (
            account_decoder.decode(line)
            for line in (sim / "accounts.jsonl").read_bytes().splitlines()
            if line.strip()
        )
    }
    returning = {a for a, label in labels.items() if label.tactic == "recidivist"}
    benign = {a for a, label in labels.items() if label.label == "benign"}
    recidivist_actors = {labels[a].actor for a in returning}
    early = {a for a, label in labels.items() if label.actor in recidivist_actors and a not in returning}
    a_events, b_events = out / "a-events.jsonl", out / "b-events.jsonl"
    _split_events(sim / "events.jsonl", a_events, b_events, returning, benign)
    a_accounts = out / "a-accounts.jsonl"
    a_accounts.write_bytes(
        b"".join(
            msgspec.json.encode(acc) + b"\n" for aid, acc in sorted(accounts.items()) if aid not in returning
        )
    )
    started = time.perf_counter()
    a_scan = out / "a-scan"
    _cli(
        "scan",
        str(a_events),
        "--accounts",
        str(a_accounts),
        "--out",
        str(a_scan),
        "--workers",
        "1",
        "--quiet",
    )
    a_db = out / "a-cases.db"
    a_db.unlink(missing_ok=True)
    cases = CaseStore.open(str(a_db))
    import_scan(cases, a_scan)
    banned_actors: set[str] = set()
    decided = 0
    for row in cases.queue(status="open", limit=100_000):
        case = cases.case(int(row["case_id"]))
        members = [m["account_id"] for m in case["accounts"]]
        distillers = [m for m in members if labels.get(m) is not None and labels[m].label == "distiller"]
        if len(distillers) * 2 > len(members):  # the oracle reviewer confirms a distiller case
            cases.decide(int(row["case_id"]), "bench", "ban", "confirmed distiller (bench oracle)", {})
            decided += 1
            banned_actors.update(labels[m].actor or "" for m in distillers)
    keys = CommunityKeys({"bench": b"distillguard-intel-bench-key-000"}, "bench")
    a_known = {aid: acc for aid, acc in accounts.items() if aid not in returning}
    made, actors = export_bundle(cases, keys, A, accounts=a_known)
    cases.close()
    bundle_path = out / "a-bundle.json"
    bundle_path.write_text(json.dumps(made), encoding="utf-8")
    b_db = out / "b-cases.db"
    b_db.unlink(missing_ok=True)
    shared = asyncio.run(_replay_b(b_events, accounts, keys, bundle_path, b_db, with_intel=True))
    alone = asyncio.run(_replay_b(b_events, accounts, keys, bundle_path, b_db, with_intel=False))
    b_scan = out / "b-scan"
    b_accounts = out / "b-accounts.jsonl"
    b_accounts.write_bytes(
        b"".join(
            msgspec.json.encode(acc) + b"\n"
            for aid, acc in sorted(accounts.items())
            if aid in returning | benign
        )
    )
    _cli(
        "scan",
        str(b_events),
        "--accounts",
        str(b_accounts),
        "--out",
        str(b_scan),
        "--workers",
        "1",
        "--quiet",
    )
    b_verdicts = {
        v["account_id"]: v
        for v in (
            json.loads(line)
            for line in (b_scan / "accounts_out.jsonl").read_text().splitlines()
            if line.strip()
        )
    }
    found_alone = [a for a in returning if b_verdicts.get(a, {}).get("verdict", "benign") != "benign"]
    to_flag = sorted(
        int(b_verdicts[a]["calls_to_flag"]) for a in found_alone if b_verdicts[a].get("calls_to_flag")
    )
    kinds = Counter(k for a in returning if a in shared["kinds"] for k in shared["kinds"][a])
    decided_returning = [a for a in returning if labels[a].actor in banned_actors]
    benign_held = sorted(a for a in benign if a in shared["held_at"])
    return {
        "preset": preset,
        "seed": seed,
        "recidivist_actors": len(recidivist_actors),
        "recidivist_actors_banned_at_A": len(recidivist_actors & banned_actors),
        "early_accounts_at_A": len(early),
        "cases_banned_at_A": decided,
        "actors_shared": len(actors),
        "indicators_shared": sum(len(a.indicators) for a in actors),
        "indicators_by_kind": dict(Counter(i.kind for a in actors for i in a.indicators)),
        "import_at_B": shared["import"],
        "returning_accounts_at_B": len(returning),
        "returning_accounts_of_actors_banned_at_A": len(decided_returning),
        "held_first_call_of_those": sum(1 for a in decided_returning if shared["first"].get(a)),
        "held_first_call_with_A": sum(1 for a in returning if shared["first"].get(a)),
        "held_any_call_with_A": sum(1 for a in returning if a in shared["held_at"]),
        "held_first_call_B_alone": sum(1 for a in returning if alone["first"].get(a)),
        "found_by_B_scan_alone": len(found_alone),
        "B_scan_calls_to_flag_median": to_flag[len(to_flag) // 2] if to_flag else None,
        "matched_kinds": dict(kinds),
        "benign_accounts_at_B": len(benign),
        "benign_held_at_B": len(benign_held),
        "benign_held_examples": [{"account": a, "kinds": shared["kinds"].get(a)} for a in benign_held[:10]],
        "seconds": round(time.perf_counter() - started, 1),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run_bench(preset: str, seeds: list[int], out: Path, corpus: Path | None) -> dict[str, Any]:
    runs = [run_seed(preset, seed, out / f"{preset}-{seed}", corpus) for seed in seeds]
    returning = sum(r["returning_accounts_at_B"] for r in runs)
    held = sum(r["held_first_call_with_A"] for r in runs)
    summary = {
        "preset": preset,
        "seeds": seeds,
        "returning_accounts_at_B": returning,
        "held_first_call_with_A": held,
        "held_first_call_share": round(held / returning, 4) if returning else None,
        "returning_accounts_of_actors_banned_at_A": sum(
            r["returning_accounts_of_actors_banned_at_A"] for r in runs
        ),
        "held_first_call_of_those": sum(r["held_first_call_of_those"] for r in runs),
        "held_first_call_B_alone": sum(r["held_first_call_B_alone"] for r in runs),
        "found_by_B_scan_alone": sum(r["found_by_B_scan_alone"] for r in runs),
        "benign_accounts_at_B": sum(r["benign_accounts_at_B"] for r in runs),
        "benign_held_at_B": sum(r["benign_held_at_B"] for r in runs),
        "runs": runs,
    }
    (out / f"intel-bench-{preset}.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
