"""`distillguard intel pull` and `intel import`: a peer's indicators in, as watch entries.

The TAXII side is `taxii2-client` (the OASIS client): it pages through a collection's objects with
`added_after` and `next`. Around it, what a hostile or broken peer could do is bounded: every
response is read through a cap (a larger one is refused before it is parsed), a page that is not a
TAXII envelope stops the pull, and each object is parsed strictly and checked (`intel.stix`).
Every refusal is counted by reason, and nothing from a refused object is stored or enforced.

A pull resumes where the last one stopped: the newest `X-TAXII-Date-Added-Last` of the pages it
stored is kept per (server, collection) and sent as `added_after` next time; objects seen again
are unchanged, older versions are replays and refused, so re-pulls are incremental and idempotent.
After storing, the enforcement list's watch entries are made to match every peer's live
indicators: new ones written, revoked and expired ones lifted.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from taxii2client.common import _HTTPConnection
from taxii2client.exceptions import TAXIIServiceException
from taxii2client.v21 import Collection, as_pages

from distillguard.enforcement.state import EnforcementState
from distillguard.intel.community_key import CommunityKeys
from distillguard.intel.stix import Received, read_objects
from distillguard.intel.store import PEER_NAME, IntelStore, Stored, active, parse_taxii_time
from distillguard.intel.watch import sync_watch

log = logging.getLogger("distillguard.intel.pull")

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_PAGES = 10_000
PER_PAGE = 500


class PullError(RuntimeError):
    """The pull could not go on (the server refused, answered something that is not TAXII, ...)."""


class Oversized(RuntimeError):
    pass


@dataclass
class PullReport:
    peer: str
    source: str
    pages: int = 0
    objects: int = 0
    received: Received = field(default_factory=Received)
    stored: Stored = field(default_factory=Stored)
    written: int = 0
    lifted: int = 0
    added_after: str | None = None
    error: str | None = None

    def totals(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "objects": self.objects,
            "indicators": len(self.received.indicators),
            "new": self.stored.new,
            "updated": self.stored.updated,
            "unchanged": self.stored.unchanged,
            "rejected": dict(sorted(self.received.rejected.items())),
            "watch_written": self.written,
            "watch_lifted": self.lifted,
            "error": self.error,
        }

    def lines(self) -> list[str]:
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.received.rejected.items())) or "none"
        out = [
            f"{self.source} ({self.peer}): {self.pages} page(s), {self.objects} object(s); "
            f"stored {self.stored.new} new, {self.stored.updated} newer, {self.stored.unchanged} unchanged; "
            f"rejected: {rejected}; watch entries: {self.written} written, {self.lifted} lifted"
        ]
        out += [f"  rejected {d}" for d in self.received.details[:20]]
        if self.error:
            out.append(f"  stopped: {self.error}")
        return out


def _capped(max_bytes: int, seen: list[str | None]) -> Any:
    """A `requests` response hook: hooks run before the body is read, so the body is read here
    in chunks and refused past `max_bytes` (after decompression: a gzip bomb is refused too)."""

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > max_bytes:
            response.close()
            raise Oversized(f"response of {int(length):,} bytes (limit {max_bytes:,})")
        body = bytearray()
        for chunk in response.raw.stream(64 * 1024, decode_content=True):
            body += chunk
            if len(body) > max_bytes:
                response.close()
                raise Oversized(f"response over {max_bytes:,} bytes")
        response._content = bytes(body)
        response._content_consumed = True
        seen.append(response.headers.get("X-TAXII-Date-Added-Last"))
        return response

    return hook


async def pull(
    store: IntelStore,
    state: EnforcementState,
    keys: CommunityKeys,
    *,
    api_root: str,
    collection_id: str,
    peer: str,
    user: str | None = None,
    password: str | None = None,
    full: bool = False,
    min_confidence: int = 50,
    max_bytes: int = MAX_RESPONSE_BYTES,
    per_page: int = PER_PAGE,
    hold_action: str = "ban",
    verify: bool | str = True,
) -> PullReport:
    """One pull of a peer's collection into the watch list; see the module docstring."""
    if not PEER_NAME.match(peer):
        raise PullError("peer name: 1-40 characters of a-z 0-9 . _ -, starting with a letter or digit")
    source = f"{api_root.rstrip('/')}/collections/{collection_id}/"
    report = PullReport(peer=peer, source=source)
    previous = store.pull_state(source)
    # where to resume next time: the newest date_added seen, never moved back (a full pull too)
    added_after: str | None = previous["added_after"] if previous is not None else None
    asked = None if full else added_after
    seen: list[str | None] = []
    conn = _HTTPConnection(user=user, password=password, verify=verify, version="2.1")
    conn.session.hooks["response"].append(_capped(max_bytes, seen))
    now = datetime.now(UTC)
    try:
        collection = Collection(source, conn=conn)
        filters: dict[str, Any] = {"added_after": asked} if asked else {}
        cursors: set[str] = set()
        for envelope in as_pages(collection.get_objects, per_request=per_page, **filters):
            report.pages += 1
            objects = _objects_of(envelope, report.pages)
            report.objects += len(objects)
            page = read_objects(
                objects, peer, keys, now=now, min_confidence=min_confidence, where=f"page {report.pages}"
            )
            stored = store.store_received(peer, page)
            report.stored.new += stored.new
            report.stored.updated += stored.updated
            report.stored.unchanged += stored.unchanged
            report.received.merge(page)
            stamps = [s for s in seen if s]
            if stamps:
                last = max(parse_taxii_time(s) for s in stamps)
                if added_after is None or last > parse_taxii_time(added_after):
                    added_after = last.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            next_ = envelope.get("next")
            if envelope.get("more") and (
                not isinstance(next_, str) or next_ in cursors or report.pages >= MAX_PAGES
            ):
                raise PullError(
                    f"page {report.pages}: 'more' without a new 'next' cursor (or past {MAX_PAGES} pages)"
                )
            if isinstance(next_, str):
                cursors.add(next_)
    except Oversized as error:
        report.received.reject("oversized", f"page {report.pages + 1}", str(error))
        report.error = f"page {report.pages + 1}: {error}"
    except PullError as error:
        report.received.reject("malformed", "envelope", str(error))
        report.error = str(error)
    except (TAXIIServiceException, ValueError, RecursionError) as error:
        # not TAXII: a wrong media type, a body that is not JSON (taxii2-client's errors)
        report.received.reject("malformed", f"page {report.pages + 1}", _first_line(error))
        report.error = f"page {report.pages + 1}: {_first_line(error)}"
    except requests.RequestException as error:
        report.error = f"{source}: {_first_line(error)}"
    finally:
        conn.close()
    report.written, report.lifted = await sync_watch(state, active(store.watch_records(), now), hold_action)
    report.added_after = added_after
    store.save_pull(source, peer, added_after, report.totals())
    store.cases.note("system", "intel_pull", {"peer": peer, "source": source, **report.totals()})
    return report


def _objects_of(envelope: Any, number: int) -> list[Any]:
    if not isinstance(envelope, dict):
        raise PullError(f"page {number}: not a TAXII envelope (a JSON object)")
    objects = envelope.get("objects", [])
    if not isinstance(objects, list) or not isinstance(envelope.get("more", False), bool):
        raise PullError(f"page {number}: not a TAXII envelope ('objects' must be a list, 'more' a boolean)")
    return objects


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


async def import_bundle(
    store: IntelStore,
    state: EnforcementState,
    keys: CommunityKeys,
    path: Path,
    *,
    peer: str,
    min_confidence: int = 50,
    max_bytes: int = MAX_RESPONSE_BYTES,
    hold_action: str = "ban",
) -> PullReport:
    """A bundle file a peer sent out of band, under the same checks as a pull."""
    if not PEER_NAME.match(peer):
        raise PullError("peer name: 1-40 characters of a-z 0-9 . _ -, starting with a letter or digit")
    report = PullReport(peer=peer, source=str(path))
    now = datetime.now(UTC)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise Oversized(f"{size:,} bytes (limit {max_bytes:,})")
        data = json.loads(path.read_bytes())
        if (
            not isinstance(data, dict)
            or data.get("type") != "bundle"
            or not isinstance(data.get("objects", []), list)
        ):
            raise PullError(f"{path}: not a STIX bundle (an object with type 'bundle' and a list of objects)")
        objects = data.get("objects", [])
        report.pages, report.objects = 1, len(objects)
        page = read_objects(objects, peer, keys, now=now, min_confidence=min_confidence, where=path.name)
        report.stored = store.store_received(peer, page)
        report.received.merge(page)
    except Oversized as error:
        report.received.reject("oversized", str(path), str(error))
        report.error = str(error)
    except (PullError, ValueError, RecursionError, UnicodeDecodeError) as error:
        report.received.reject("malformed", str(path), _first_line(error))
        report.error = _first_line(error)
    report.written, report.lifted = await sync_watch(state, active(store.watch_records(), now), hold_action)
    store.cases.note("system", "intel_import", {"peer": peer, "source": str(path), **report.totals()})
    return report


def rejection_counts(report: PullReport) -> Counter[str]:
    return Counter(report.received.rejected)
