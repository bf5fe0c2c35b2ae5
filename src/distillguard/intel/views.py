"""What the review UI shows of sharing: per case (came from a peer? shared with peers? withheld?)
and overall (every peer's indicators on the watch list, what we published, who fetched it)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from distillguard.intel.export import SHARED_DECISIONS
from distillguard.intel.records import KINDS
from distillguard.intel.store import IntelStore


def case_sharing(intel: IntelStore, case: dict[str, Any]) -> dict[str, Any]:
    case_id = int(case["case_id"])
    shared = intel.shared_of_case(case_id)
    indicators = [o for o in shared["objects"] if o["object_type"] == "indicator"]
    peer = case.get("peer")
    from_peer = []
    if peer:
        now = datetime.now(UTC)
        from_peer = [_watch_row(r, now) for r in intel.watch_records(peer)]
    return {
        "peer": peer,
        "from_peer": from_peer,
        "shareable": case["status"] in SHARED_DECISIONS,
        "withhold": bool(case.get("withhold")),
        "indicators": indicators,
        "live": sum(1 for o in indicators if not o["revoked"]),
        "revoked": sum(1 for o in indicators if o["revoked"]),
        "deliveries": shared["deliveries"],
    }


def overview(intel: IntelStore) -> dict[str, Any]:
    now = datetime.now(UTC)
    by_peer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in intel.watch_records():
        by_peer[record.source].append(_watch_row(record, now))
    return {
        "by_peer": dict(sorted(by_peer.items())),
        "pulls": intel.pulls(),
        "published": intel.published_cases(),
        "peers": intel.peers(),
    }


def _watch_row(record: Any, now: datetime) -> dict[str, Any]:
    status = "revoked" if record.revoked else "expired" if record.expired(now) else "watching"
    return {
        "peer": record.source,
        "kind": KINDS[record.kind].description if record.kind in KINDS else record.kind,
        "actor": record.actor.name,
        "confidence": record.confidence,
        "valid_from": record.valid_from,
        "valid_until": record.valid_until,
        "status": status,
        "object_id": record.object_id,
    }
