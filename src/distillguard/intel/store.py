"""Intel's tables in the case store's database: what we publish (versioned STIX objects, the TAXII
server's collection), the peers allowed to read it, which of our cases each peer has fetched, what
we received from peers, and where each pull stopped.

Same habits as the case store: SQLAlchemy Core statements that run on SQLite and PostgreSQL alike,
numbered migrations applied at open and recorded (in `intel_schema_version`, so intel's tables
change without touching the case store's numbering), a database newer than the code refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from distillguard.cases.store import CaseStore, now
from distillguard.intel.records import ActorRef, SharedIndicator
from distillguard.intel.stix import PeerActor, PeerLink, Received, Versioned

metadata = sa.MetaData()
PEER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
COLLECTION_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

intel_schema_version = sa.Table(
    "intel_schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

# Every version of every object we publish; `latest` marks the newest version of each object.
intel_objects = sa.Table(
    "intel_objects",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("collection_id", sa.String(36), nullable=False),
    sa.Column("object_id", sa.String(120), nullable=False),
    sa.Column("object_type", sa.String(40), nullable=False),
    sa.Column("version", sa.DateTime(timezone=True), nullable=False),
    sa.Column("date_added", sa.DateTime(timezone=True), nullable=False),
    sa.Column("latest", sa.Boolean, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False),
    sa.Column("case_id", sa.Integer),
    sa.Column("body", sa.Text, nullable=False),
    sa.UniqueConstraint("collection_id", "object_id", "version", name="uq_intel_objects_version"),
    sa.Index("ix_intel_objects_added", "collection_id", "date_added", "seq"),
    sa.Index("ix_intel_objects_case", "case_id"),
)

# Peers that may read our collections over TAXII: only an argon2id hash of each peer's secret.
intel_peers = sa.Table(
    "intel_peers",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("secret_hash", sa.String(200), nullable=False),
    sa.Column("collections", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Which of our cases a peer has fetched objects of: "which of ours were shared", per peer.
intel_deliveries = sa.Table(
    "intel_deliveries",
    metadata,
    sa.Column("peer", sa.String(40), primary_key=True),
    sa.Column("case_id", sa.Integer, primary_key=True),
    sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("fetches", sa.Integer, nullable=False),
)

# What peers sent us and we accepted: the newest version of each object, as a typed record.
intel_received = sa.Table(
    "intel_received",
    metadata,
    sa.Column("peer", sa.String(40), primary_key=True),
    sa.Column("object_id", sa.String(120), primary_key=True),
    sa.Column("object_type", sa.String(40), nullable=False),
    sa.Column("version", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

# Where the last pull of a (server, collection) stopped: the next one asks for what came after.
intel_pulls = sa.Table(
    "intel_pulls",
    metadata,
    sa.Column("source", sa.String(600), primary_key=True),
    sa.Column("peer", sa.String(40), nullable=False),
    sa.Column("added_after", sa.String(40)),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("totals", sa.JSON, nullable=False),
)


def _v1(conn: sa.Connection) -> None:
    for table in (intel_objects, intel_peers, intel_deliveries, intel_received, intel_pulls):
        table.create(conn)


MIGRATIONS: list[Callable[[sa.Connection], None]] = [_v1]
SCHEMA_VERSION = len(MIGRATIONS)


class IntelStoreError(ValueError):
    """A request the intel store refuses; the message says which field."""


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def taxii_time(value: datetime) -> str:
    """TAXII/STIX timestamps: UTC, microseconds, Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_taxii_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("a timestamp must say its time zone (end it with Z)")
    return parsed.astimezone(UTC)


@dataclass
class Published:
    """What one publish did to a collection."""

    added: int
    updated: int
    revoked: int
    unchanged: int


@dataclass
class Stored:
    """What storing one pull's records did: new, newer, unchanged, and replays refused."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0


class IntelStore:
    """Intel's tables, over the case store's engine (one database, one backup)."""

    def __init__(self, cases: CaseStore) -> None:
        self.cases = cases
        self.engine = cases.engine
        self._hasher = PasswordHasher()
        self._dummy_hash = self._hasher.hash("timing equaliser for unknown peers")

    def _write(self) -> AbstractContextManager[sa.Connection]:
        # the case store's write transaction (SQLite: BEGIN IMMEDIATE under WAL, so a transaction
        # that reads before it writes cannot fail on a snapshot another writer moved)
        return self.cases._write()

    @classmethod
    def open(cls, cases: CaseStore) -> IntelStore:
        store = cls(cases)
        store.migrate()
        return store

    def migrate(self) -> int:
        with self._write() as conn:
            if not sa.inspect(conn).has_table("intel_schema_version"):
                intel_schema_version.create(conn)
            current = int(conn.execute(sa.select(sa.func.max(intel_schema_version.c.version))).scalar() or 0)
        if current > SCHEMA_VERSION:
            raise IntelStoreError(
                f"intel schema version {current} is newer than this DistillGuard knows ({SCHEMA_VERSION})"
            )
        for number in range(current + 1, SCHEMA_VERSION + 1):
            with self._write() as conn:
                MIGRATIONS[number - 1](conn)
                conn.execute(sa.insert(intel_schema_version).values(version=number, applied_at=now()))
        return SCHEMA_VERSION - current

    # ---- peers (the TAXII server's users) -----------------------------------------------------
    def add_peer(self, name: str, secret: str, collections: Sequence[str]) -> None:
        if not PEER_NAME.match(name):
            raise IntelStoreError(
                "peer name: 1-40 characters of a-z 0-9 . _ -, starting with a letter or digit"
            )
        if len(secret) < 16:
            raise IntelStoreError("peer secret: at least 16 characters are required")
        for collection in collections:
            if not COLLECTION_ID.match(collection):
                raise IntelStoreError(f"collection {collection!r}: expected a lower-case UUID")
        digest = self._hasher.hash(secret)
        with self._write() as conn:
            conn.execute(sa.delete(intel_peers).where(intel_peers.c.name == name))
            conn.execute(
                sa.insert(intel_peers).values(
                    name=name, secret_hash=digest, collections=list(collections), created_at=now()
                )
            )
        self.cases.note("system", "intel_peer", {"peer": name, "collections": list(collections)})

    def authenticate(self, name: str, secret: str) -> list[str] | None:
        """The collections a peer may read when its secret matches, else None (same work either way)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(intel_peers).where(intel_peers.c.name == name)).one_or_none()
        digest = row.secret_hash if row is not None else self._dummy_hash
        ok: bool
        try:
            ok = self._hasher.verify(digest, secret)
        except (VerificationError, InvalidHashError):
            ok = False
        if row is None or not ok:
            return None
        return [str(c) for c in row.collections]

    def peers(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                {"name": r.name, "collections": r.collections, "created_at": _utc(r.created_at)}
                for r in conn.execute(sa.select(intel_peers).order_by(intel_peers.c.name))
            ]

    # ---- what we publish ----------------------------------------------------------------------
    def publish(
        self, collection_id: str, desired: Sequence[Versioned], revoke: Callable[..., Versioned]
    ) -> Published:
        """Make the collection say what `desired` says: new objects added, changed ones as a new
        version, objects of cases no longer shared revoked (a new version with `revoked`: true). All in
        one transaction, with one `date_added` later than any before it, so a reader sees a publish
        whole or not at all and `added_after` never skips an object."""
        stamp = now()
        counts = Published(0, 0, 0, 0)
        with self._write() as conn:
            last = conn.execute(
                sa.select(sa.func.max(intel_objects.c.date_added)).where(
                    intel_objects.c.collection_id == collection_id
                )
            ).scalar()
            last = _utc(last)
            if last is not None and stamp <= last:
                stamp = last + timedelta(microseconds=1)
            latest = {
                r.object_id: r
                for r in conn.execute(
                    sa.select(intel_objects).where(
                        intel_objects.c.collection_id == collection_id, intel_objects.c.latest
                    )
                )
            }
            wanted = {o.object_id for o in desired}
            rows: list[Versioned] = []
            for obj in desired:
                row = latest.get(obj.object_id)
                if row is None:
                    rows.append(obj)
                    counts.added += 1
                    continue
                body = json.loads(row.body)
                if row.revoked:
                    continue  # a revoked object never comes back; re-sharing makes new ids
                if {k: v for k, v in body.items() if k != "modified"} == obj.content():
                    counts.unchanged += 1
                    continue
                version = _after(stamp, row.version)
                rows.append(
                    Versioned(
                        obj.object_id,
                        obj.object_type,
                        version,
                        {**obj.body, "modified": taxii_time(version)},
                        obj.case_id,
                    )
                )
                counts.updated += 1
            for object_id, row in latest.items():
                if object_id in wanted or row.revoked or row.case_id is None:
                    continue
                published = Versioned(
                    object_id, row.object_type, _after(row.version, None), json.loads(row.body), row.case_id
                )
                rows.append(revoke(published, _after(stamp, row.version)))
                counts.revoked += 1
            if rows:
                changed = [r.object_id for r in rows]
                for chunk in _chunks(changed, 500):
                    conn.execute(
                        sa.update(intel_objects)
                        .where(
                            intel_objects.c.collection_id == collection_id,
                            intel_objects.c.object_id.in_(chunk),
                        )
                        .values(latest=False)
                    )
                conn.execute(
                    sa.insert(intel_objects),
                    [
                        {
                            "collection_id": collection_id,
                            "object_id": r.object_id,
                            "object_type": r.object_type,
                            "version": r.version,
                            "date_added": stamp,
                            "latest": True,
                            "revoked": bool(r.body.get("revoked", False)),
                            "case_id": r.case_id,
                            "body": json.dumps(r.body, sort_keys=True, separators=(",", ":")),
                        }
                        for r in rows
                    ],
                )
        return counts

    def objects(
        self,
        collection_id: str,
        *,
        added_after: datetime | None = None,
        after: tuple[datetime, int] | None = None,
        ids: Sequence[str] = (),
        types: Sequence[str] = (),
        versions: str | Sequence[datetime] = "last",
        limit: int = 100,
    ) -> list[Any]:
        """Rows of a collection in `date_added` order (then `seq`), filtered as TAXII's `match[...]`
        asks; `after` is the pagination cursor (the last row served). Returns up to limit + 1 rows
        (the extra one says there is more)."""
        table = intel_objects
        query = sa.select(table).where(table.c.collection_id == collection_id)
        if added_after is not None:
            query = query.where(table.c.date_added > added_after)
        if after is not None:
            query = query.where(
                sa.or_(
                    table.c.date_added > after[0],
                    sa.and_(table.c.date_added == after[0], table.c.seq > after[1]),
                )
            )
        if ids:
            query = query.where(table.c.object_id.in_(list(ids)))
        if types:
            query = query.where(table.c.object_type.in_(list(types)))
        if versions == "last":
            query = query.where(table.c.latest)
        elif versions == "first":
            first = (
                sa.select(table.c.object_id, sa.func.min(table.c.version).label("v"))
                .where(table.c.collection_id == collection_id)
                .group_by(table.c.object_id)
                .subquery()
            )
            query = query.join(
                first, sa.and_(first.c.object_id == table.c.object_id, first.c.v == table.c.version)
            )
        elif versions != "all":
            query = query.where(table.c.version.in_(list(versions)))
        query = query.order_by(table.c.date_added, table.c.seq).limit(limit + 1)
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def delivered(self, peer: str, case_ids: Iterable[int]) -> None:
        """Record that a peer fetched objects of these cases (for the review UI)."""
        ids = sorted(set(case_ids))
        if not ids:
            return
        stamp = now()
        with self._write() as conn:
            have = {
                int(c)
                for c in conn.execute(
                    sa.select(intel_deliveries.c.case_id).where(
                        intel_deliveries.c.peer == peer, intel_deliveries.c.case_id.in_(ids)
                    )
                ).scalars()
            }
            if have:
                conn.execute(
                    sa.update(intel_deliveries)
                    .where(intel_deliveries.c.peer == peer, intel_deliveries.c.case_id.in_(sorted(have)))
                    .values(last_at=stamp, fetches=intel_deliveries.c.fetches + 1)
                )
            new = [c for c in ids if c not in have]
            if new:
                conn.execute(
                    sa.insert(intel_deliveries),
                    [
                        {"peer": peer, "case_id": c, "first_at": stamp, "last_at": stamp, "fetches": 1}
                        for c in new
                    ],
                )

    def shared_of_case(self, case_id: int) -> dict[str, Any]:
        """What of this case we publish (latest versions) and which peers fetched it."""
        with self.engine.connect() as conn:
            objects = [
                {
                    "object_id": r.object_id,
                    "object_type": r.object_type,
                    "version": _utc(r.version),
                    "date_added": _utc(r.date_added),
                    "revoked": r.revoked,
                    "pattern": json.loads(r.body).get("pattern"),
                    "name": json.loads(r.body).get("name"),
                }
                for r in conn.execute(
                    sa.select(intel_objects)
                    .where(intel_objects.c.case_id == case_id, intel_objects.c.latest)
                    .order_by(intel_objects.c.object_type, intel_objects.c.object_id)
                )
            ]
            deliveries = [
                {
                    "peer": r.peer,
                    "first_at": _utc(r.first_at),
                    "last_at": _utc(r.last_at),
                    "fetches": r.fetches,
                }
                for r in conn.execute(
                    sa.select(intel_deliveries)
                    .where(intel_deliveries.c.case_id == case_id)
                    .order_by(intel_deliveries.c.peer)
                )
            ]
        return {"objects": objects, "deliveries": deliveries}

    def published_cases(self) -> list[dict[str, Any]]:
        """Per case we published: indicators live and revoked, and the peers that fetched them."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    intel_objects.c.case_id,
                    intel_objects.c.revoked,
                    sa.func.count().label("n"),
                    sa.func.max(intel_objects.c.date_added).label("last"),
                )
                .where(intel_objects.c.latest, intel_objects.c.object_type == "indicator")
                .group_by(intel_objects.c.case_id, intel_objects.c.revoked)
            ).all()
            deliveries = conn.execute(sa.select(intel_deliveries)).all()
        out: dict[int, dict[str, Any]] = {}
        for r in rows:
            entry = out.setdefault(
                int(r.case_id),
                {"case_id": int(r.case_id), "live": 0, "revoked": 0, "last": None, "peers": []},
            )
            entry["revoked" if r.revoked else "live"] += int(r.n)
            last = _utc(r.last)
            entry["last"] = max(filter(None, [entry["last"], last]), default=None)
        for d in deliveries:
            if int(d.case_id) in out:
                out[int(d.case_id)]["peers"].append(d.peer)
        return sorted(out.values(), key=lambda e: e["case_id"])

    # ---- what peers send us -------------------------------------------------------------------
    def store_received(self, peer: str, received: Received) -> Stored:
        """Keep the newest version of each accepted object. A version older than the one held is a
        replay: rejected and counted in `received` (nothing from it is used); the same version again
        is unchanged (re-pulls are idempotent)."""
        counts = Stored()
        stamp = now()
        items: list[tuple[str, str, datetime, bool, dict[str, Any]]] = []
        for ind in received.indicators:
            items.append(
                (ind.object_id, "indicator", ind.version or stamp, ind.revoked, _indicator_record(ind))
            )
        for actor in received.actors:
            items.append((actor.actor_id, "threat-actor", actor.version, actor.revoked, {"name": actor.name}))
        for link in received.links:
            items.append(
                (
                    link.relationship_id,
                    "relationship",
                    link.version,
                    link.revoked,
                    {"indicator": link.indicator_id, "actor": link.actor_id},
                )
            )
        with self._write() as conn:
            for object_id, object_type, version, revoked, record in items:
                row = conn.execute(
                    sa.select(intel_received.c.version, intel_received.c.revoked).where(
                        intel_received.c.peer == peer, intel_received.c.object_id == object_id
                    )
                ).one_or_none()
                held = _utc(row.version) if row is not None else None
                if held is not None and version < held:
                    received.reject(
                        "replayed",
                        object_id,
                        f"version {taxii_time(version)} is older than the one held ({taxii_time(held)})",
                    )
                    continue
                if held is not None and version == held:
                    counts.unchanged += 1
                    continue
                if row is not None and row.revoked:
                    received.reject("replayed", object_id, "a newer version of a revoked object")
                    continue
                values = {
                    "object_type": object_type,
                    "version": version,
                    "revoked": revoked,
                    "record": record,
                    "received_at": stamp,
                }
                if row is None:
                    conn.execute(sa.insert(intel_received).values(peer=peer, object_id=object_id, **values))
                    counts.new += 1
                else:
                    conn.execute(
                        sa.update(intel_received)
                        .where(intel_received.c.peer == peer, intel_received.c.object_id == object_id)
                        .values(**values)
                    )
                    counts.updated += 1
        return counts

    def watch_records(self, peer: str | None = None, *, at: datetime | None = None) -> list[SharedIndicator]:
        """Peers' indicators, each with its actor resolved through its `indicates` relationship.
        Revoked and expired ones are included (flagged) for the UI; `active` filters them."""
        query = sa.select(intel_received)
        if peer is not None:
            query = query.where(intel_received.c.peer == peer)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
        actors: dict[tuple[str, str], tuple[str, bool]] = {}
        links: dict[tuple[str, str], tuple[str, bool]] = {}
        for r in rows:
            if r.object_type == "threat-actor":
                actors[(r.peer, r.object_id)] = (str(r.record.get("name", "")), bool(r.revoked))
            elif r.object_type == "relationship":
                key = (r.peer, str(r.record.get("indicator")))
                if not r.revoked or key not in links:
                    links[key] = (str(r.record.get("actor")), bool(r.revoked))
        out = []
        for r in rows:
            if r.object_type != "indicator":
                continue
            actor_id, link_revoked = links.get((r.peer, r.object_id), ("", False))
            name, actor_revoked = actors.get((r.peer, actor_id), ("", False))
            record = dict(r.record)
            out.append(
                SharedIndicator(
                    kind=record["kind"],
                    key_id=record["key_id"],
                    digest=record["digest"],
                    actor=ActorRef(
                        actor_id=actor_id if actor_id and not link_revoked else f"unlinked/{r.object_id}",
                        name=name or f"actor of {r.object_id}",
                    ),
                    confidence=int(record["confidence"]),
                    valid_from=parse_taxii_time(record["valid_from"]),
                    valid_until=parse_taxii_time(record["valid_until"])
                    if record.get("valid_until")
                    else None,
                    source=r.peer,
                    object_id=r.object_id,
                    version=_utc(r.version),
                    revoked=bool(r.revoked) or actor_revoked,
                )
            )
        return sorted(out, key=lambda i: (i.source, i.actor.actor_id, i.kind, i.digest))

    def pull_state(self, source: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(intel_pulls).where(intel_pulls.c.source == source)).one_or_none()
        return None if row is None else {**row._asdict(), "last_at": _utc(row.last_at)}

    def save_pull(self, source: str, peer: str, added_after: str | None, totals: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(intel_pulls).where(intel_pulls.c.source == source))
            conn.execute(
                sa.insert(intel_pulls).values(
                    source=source, peer=peer, added_after=added_after, last_at=now(), totals=totals
                )
            )

    def pulls(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                {**r._asdict(), "last_at": _utc(r.last_at)}
                for r in conn.execute(sa.select(intel_pulls).order_by(intel_pulls.c.source))
            ]


def _after(stamp: datetime, previous: datetime | None) -> datetime:
    """`stamp`, or just after `previous` when that is later: a new version's `modified` must be later
    than the version it replaces."""
    before = _utc(previous)
    return stamp if before is None else max(stamp, before + timedelta(milliseconds=1))


def active(records: Iterable[SharedIndicator], at: datetime) -> list[SharedIndicator]:
    return [r for r in records if not r.revoked and not r.expired(at)]


def _indicator_record(ind: SharedIndicator) -> dict[str, Any]:
    return {
        "kind": ind.kind,
        "key_id": ind.key_id,
        "digest": ind.digest,
        "confidence": ind.confidence,
        "valid_from": taxii_time(ind.valid_from),
        "valid_until": taxii_time(ind.valid_until) if ind.valid_until else None,
    }


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = ["IntelStore", "IntelStoreError", "PeerActor", "PeerLink", "Published", "active", "taxii_time"]
