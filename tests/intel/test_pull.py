"""Pulling a peer's collection with taxii2-client: from our own server (a real process), into the
watch list; incremental and idempotent re-pulls; revocations and expiry honoured; and a hostile
peer's every trick a counted rejection that neither crashes the pull nor reaches enforcement."""

from __future__ import annotations

import asyncio
import base64
import copy
import gzip
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import Response

from distillguard.cases.store import CaseStore
from distillguard.enforcement.state import MemoryState
from distillguard.intel.publish import default_collection
from distillguard.intel.pull import import_bundle, pull
from distillguard.intel.store import IntelStore, active
from distillguard.intel.watch import WATCH, sync_watch
from tests.intel.conftest import KEYS, actor_case
from tests.intel.peer_servers import COLLECTION, HostilePeer, endless, envelope, intel_server
from tests.intel.test_stix import peer_objects

pytestmark = pytest.mark.slow
SECRET = "lab-b-secret-0123456789"


def key_file(folder: Path) -> Path:
    path = folder / "community.yaml"
    path.write_text(
        "keys:\n"
        f"  - id: k1\n    secret: {base64.b64encode(KEYS.secrets['k1']).decode()}\n    current: true\n"
        f"  - id: k0\n    secret: {base64.b64encode(KEYS.secrets['k0']).decode()}\n"
    )
    path.chmod(0o600)
    return path


def watch_subjects(state: MemoryState) -> set[str]:
    return {e.subject for e in state.entries() if e.subject.startswith(WATCH)}


@pytest.fixture
def b_side(tmp_path: Path) -> Iterator[tuple[IntelStore, MemoryState]]:
    cases = CaseStore.open(str(tmp_path / "b.db"))
    yield IntelStore.open(cases), MemoryState(bans_file=tmp_path / "b-bans.jsonl")
    cases.close()


def test_pull_from_our_server_incremental_idempotent_revocations(tmp_path: Path, b_side: Any) -> None:
    intel_b, state = b_side
    a = CaseStore.open(str(tmp_path / "a.db"))
    IntelStore.open(a).add_peer("lab-b", SECRET, [default_collection("lab-a")])
    a.upsert(actor_case())
    a.decide(1, "ivy", "ban", "three accounts, one card, judge harvesting", {})
    env = {**os.environ, "DISTILLGUARD_INTEL_KEYS_FILE": str(key_file(tmp_path))}
    with intel_server(str(tmp_path / "a.db"), "lab-a", env, tmp_path / "serve.err") as base:

        def pull_once(**extra: Any) -> Any:
            return asyncio.run(
                pull(
                    intel_b,
                    state,
                    KEYS,
                    api_root=base + "/distillguard/",
                    collection_id=default_collection("lab-a"),
                    peer="lab-a",
                    user="lab-b",
                    password=SECRET,
                    per_page=7,
                    **extra,
                )
            )

        first = pull_once()
        assert first.error is None and first.pages == 3 and first.objects == 20
        assert not first.received.rejected and (first.stored.new, first.written) == (11, 5)
        assert len(watch_subjects(state)) == 5
        again = pull_once()  # incremental: only what was added since
        assert (again.objects, again.stored.new, again.written, again.lifted) == (0, 0, 0, 0)
        full = pull_once(full=True)  # everything again: unchanged, nothing rewritten
        assert (full.objects, full.stored.unchanged, full.written) == (20, 11, 0)
        a.set_withhold(1, "ivy", True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            revoked = pull_once()
            if revoked.lifted:
                break
            time.sleep(0.5)
        assert revoked.lifted == 5 and watch_subjects(state) == set()
        assert revoked.stored.updated == 11 and not revoked.received.rejected
        # the bans file the gateways watch says the same
        lines = [json.loads(x) for x in (tmp_path / "b-bans.jsonl").read_text().splitlines()]
        assert sum(1 for x in lines if x.get("lifted")) == 5
        wrong = asyncio.run(
            pull(
                intel_b,
                state,
                KEYS,
                api_root=base + "/distillguard/",
                collection_id=default_collection("lab-a"),
                peer="lab-a",
                user="lab-b",
                password="not-the-secret-000",
            )
        )
        assert wrong.error is not None and "401" in wrong.error and wrong.objects == 0
    a.close()


def test_expired_watch_entries_are_lifted(b_side: Any) -> None:
    intel_b, state = b_side
    got = __import__("distillguard.intel.stix", fromlist=["read_objects"]).read_objects(
        peer_objects(valid_days=1), "lab-a", KEYS, now=datetime.now(UTC)
    )
    intel_b.store_received("lab-a", got)
    now = datetime.now(UTC)
    assert asyncio.run(sync_watch(state, active(intel_b.watch_records(), now))) == (1, 0)
    later = now + timedelta(days=2)
    assert asyncio.run(sync_watch(state, active(intel_b.watch_records(), later))) == (0, 1)


# ---- a hostile peer ------------------------------------------------------------------------------
GOOD = peer_objects()


def _bad_pattern(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(objects)
    out.append(
        {
            **next(o for o in out if o["type"] == "indicator"),
            "id": "indicator--0f0f0f0f-0000-4000-8000-000000000001",
            "pattern": "rule evil { condition: true }",
            "pattern_type": "yara",
        }
    )
    return out


CASES: list[tuple[str, Any, dict[str, int], int]] = [
    (
        "oversized by Content-Length",
        lambda r: Response(b"x" * 70_000, media_type="application/taxii+json;version=2.1"),
        {"oversized": 1},
        0,
    ),
    ("oversized while streaming", lambda r: endless(b"[" * 8192, 20), {"oversized": 1}, 0),
    (
        "gzip bomb",
        lambda r: Response(
            gzip.compress(b"{" * 2_000_000),
            media_type="application/taxii+json;version=2.1",
            headers={"Content-Encoding": "gzip"},
        ),
        {"oversized": 1},
        0,
    ),
    (
        "not JSON",
        lambda r: Response(b"<html>hi</html>", media_type="application/taxii+json;version=2.1"),
        {"malformed": 1},
        0,
    ),
    (
        "wrong media type",
        lambda r: Response(json.dumps({"objects": GOOD}), media_type="application/json"),
        {"malformed": 1},
        0,
    ),
    (
        "an array, not an envelope",
        lambda r: Response(json.dumps(GOOD), media_type="application/taxii+json;version=2.1"),
        {"malformed": 1},
        0,
    ),
    (
        "objects not a list",
        lambda r: Response(
            json.dumps({"objects": {"a": 1}}), media_type="application/taxii+json;version=2.1"
        ),
        {"malformed": 1},
        0,
    ),
    (
        "deeply nested",
        lambda r: Response(
            b'{"objects": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
            media_type="application/taxii+json;version=2.1",
        ),
        {"malformed": 1},
        0,
    ),
    (
        "more forever with the same cursor",
        lambda r: envelope(GOOD, more=True, next_="same"),
        {"malformed": 1},
        1,
    ),
    ("a bad object among good ones", lambda r: envelope(_bad_pattern(GOOD)), {"not_stix_pattern": 1}, 1),
    ("server error", lambda r: Response(b"boom", status_code=500), {}, 0),
]


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostilePeer]:
    with HostilePeer().running() as peer:
        yield peer


@pytest.mark.parametrize(("name", "behaviour", "rejected", "watched"), CASES, ids=[c[0] for c in CASES])
def test_hostile_peer(
    hostile: HostilePeer, b_side: Any, name: str, behaviour: Any, rejected: dict[str, int], watched: int
) -> None:
    intel_b, state = b_side
    hostile.behaviour = behaviour
    report = asyncio.run(
        pull(
            intel_b,
            state,
            KEYS,
            api_root=hostile.url,
            collection_id=COLLECTION,
            peer="evil",
            max_bytes=65_536,
        )
    )
    assert dict(report.received.rejected) == rejected, report.lines()
    assert len(watch_subjects(state)) == watched  # only the good objects' indicator, if any
    if rejected:
        assert report.received.details and report.lines()
    if name == "server error":
        assert report.error is not None and "500" in report.error
    # the pull is recorded with its counts (the UI's Sharing page shows them)
    assert intel_b.pulls()[0]["totals"]["rejected"] == rejected


def test_replayed_old_versions_are_refused(hostile: HostilePeer, b_side: Any) -> None:
    intel_b, state = b_side
    newer = copy.deepcopy(GOOD)
    for obj in newer:
        if obj["type"] == "indicator":
            obj["modified"] = "2026-12-01T00:00:05Z"
            obj["revoked"] = True
    hostile.behaviour = lambda r: envelope(newer, added_last="2026-12-01T00:00:05.000000Z")
    first = asyncio.run(
        pull(intel_b, state, KEYS, api_root=hostile.url, collection_id=COLLECTION, peer="evil")
    )
    assert not first.received.rejected and watch_subjects(state) == set()  # revoked: nothing to watch
    hostile.behaviour = lambda r: envelope(GOOD)  # the old, unrevoked version again
    replay = asyncio.run(
        pull(intel_b, state, KEYS, api_root=hostile.url, collection_id=COLLECTION, peer="evil", full=True)
    )
    assert replay.received.rejected == {"replayed": 1} and watch_subjects(state) == set()
    assert "older than the one held" in replay.received.details[0]
    # the cursor from the header is sent next time
    asyncio.run(pull(intel_b, state, KEYS, api_root=hostile.url, collection_id=COLLECTION, peer="evil"))
    assert "added_after=2026-12-01T00%3A00%3A05.000000Z" in hostile.requests[-1]


def test_import_bundle_file(tmp_path: Path, b_side: Any) -> None:
    intel_b, state = b_side
    bundle = tmp_path / "bundle.json"
    bundle.write_text(
        json.dumps({"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "objects": GOOD})
    )
    done = asyncio.run(import_bundle(intel_b, state, KEYS, bundle, peer="lab-a"))
    assert done.error is None and done.written == 1
    for text, reason in (("{", "malformed"), ('{"type": "report"}', "malformed"), ("x" * 5000, "oversized")):
        bundle.write_text(text)
        bad = asyncio.run(import_bundle(intel_b, state, KEYS, bundle, peer="lab-a", max_bytes=4096))
        assert dict(bad.received.rejected) == {reason: 1} and bad.written == 0 and bad.lifted == 0
