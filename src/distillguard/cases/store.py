"""The case store: cases per actor (or account), their accounts, sample calls, decisions, users.

`CaseStore(url)` takes `sqlite:///path.db` (or a plain path), or `postgresql://...`; the same
statements run on both and the same test suite runs against both. Evidence arriving for accounts
that already have a case updates that case (and folds other open cases of those accounts into it)
instead of opening a second one. The audit log is append-only (the database's triggers refuse
UPDATE and DELETE) and hash-chained (`verify_audit`). Every write that adds an audit entry is
serialised (BEGIN IMMEDIATE on SQLite, a table lock on PostgreSQL) so the chain never forks; a
decision, its audit entry and the enforcement it has to deliver (the outbox) commit together.
Review-UI sessions and failed-login counters live here too, so they outlast a restart of the UI.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import math
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from distillguard.cases.audit import AuditCheck, audit_digest, head_hash, verify
from distillguard.cases.passwords import WeakPassword, check_password
from distillguard.cases.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    audit_log,
    case_accounts,
    cases,
    enforcement_outbox,
    login_failures,
    samples,
    schema_version,
    ui_sessions,
    users,
)

ROLES = ("viewer", "investigator", "admin")
DECISIONS = {"ban": "banned", "throttle": "throttled", "allow": "allowed", "clear": "cleared"}
STATUSES = ("open", *DECISIONS.values(), "merged")
PROMPT_CHARS = 2000  # samples keep this much of a prompt: enough to judge, not a copy of the traffic
SAMPLES_PER_ACCOUNT = 5
MIN_JUSTIFICATION = 10


class CaseStoreError(ValueError):
    """A request the store refuses (unknown case, bad role, missing justification, ...)."""


def engine_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here; a bare path is a SQLite file."""
    if "://" not in url:
        return "sqlite:///" + str(Path(url))
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def redact_url(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    return sa.engine.make_url(engine_url(url)).render_as_string(hide_password=True)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_stamp(value: datetime) -> datetime:
    """A NOT NULL timestamp column's value, timezone-aware UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class IncomingAccount:
    account_id: str
    risk: float = 0.0
    verdict: str = "benign"
    calls: int = 0
    calls_to_flag: int | None = None
    first_flagged_at: datetime | None = None
    reasons: list[dict[str, Any]] = field(default_factory=list)
    daily: dict[str, int] = field(default_factory=dict)
    hours: list[int] = field(default_factory=list)
    signal_rates: dict[str, float] = field(default_factory=dict)


@dataclass
class IncomingSample:
    account_id: str
    event_id: str
    prompt: str
    ts: datetime | None = None
    endpoint: str | None = None
    system: str | None = None
    user_agent: str | None = None
    end_user: str | None = None
    action: str | None = None


@dataclass
class IncomingCase:
    """New evidence about one actor (or one account), from a scan, the gateway or a recidivism hold."""

    kind: str
    source: str
    title: str
    accounts: list[IncomingAccount]
    cluster_id: str | None = None
    risk: float = 0.0
    verdict: str = "benign"
    reasons: list[dict[str, Any]] = field(default_factory=list)
    indicators: dict[str, list[str]] = field(default_factory=dict)
    edges: list[dict[str, Any]] = field(default_factory=list)
    samples: list[IncomingSample] = field(default_factory=list)
    linked_case_id: int | None = None
    peer: str | None = None  # the sharing peer whose indicators opened this case


@dataclass
class Upserted:
    case_id: int
    created: bool
    new_accounts: list[str]
    status: str


@dataclass
class Session:
    """A logged-in review-UI session, as the store holds it (the cookie holds only its token)."""

    username: str
    role: str
    csrf: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class LoginLimits:
    """Lockout after failed logins. Per user name whatever the address (an attacker rotating
    addresses still runs into it), and per address whatever the user name (one address trying many
    users). Each failure past a threshold locks again for twice as long, up to `max_lock_s`;
    failures are forgotten after `forget_s` without one."""

    user_failures: int = 5
    address_failures: int = 20
    first_lock_s: float = 60.0
    max_lock_s: float = 900.0
    forget_s: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if self.user_failures < 1 or self.address_failures < 1:
            raise ValueError("LoginLimits: failure thresholds must be at least 1")
        if not 0 < self.first_lock_s <= self.max_lock_s <= self.forget_s:
            raise ValueError("LoginLimits: need 0 < first_lock_s <= max_lock_s <= forget_s")

    def lock_s(self, failures: int, threshold: int) -> float:
        if failures < threshold:
            return 0.0
        return min(self.max_lock_s, self.first_lock_s * 2.0 ** min(failures - threshold, 40))


@dataclass
class PendingEnforcement:
    """One outbox row not yet delivered: an operation of `enforcement.decisions` (put, lift,
    feedback) with the decision's audit entry it came from."""

    outbox_id: int
    case_id: int
    entry_id: int
    operation: dict[str, Any]
    attempts: int
    last_error: str | None


class CaseStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(engine_url(url), future=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_connect)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        self._hasher = PasswordHasher()
        self._dummy_hash = self._hasher.hash("timing equaliser for unknown users")

    @classmethod
    def open(cls, url: str) -> CaseStore:
        store = cls(url)
        store.migrate()
        return store

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _write(self, *, audited: bool = False) -> Iterator[sa.Connection]:
        """A write transaction. SQLite: BEGIN IMMEDIATE takes the write lock up front, so a writer
        that read first never fails on a snapshot another writer moved (WAL's SQLITE_BUSY_SNAPSHOT),
        and writers queue under busy_timeout instead. PostgreSQL, when the transaction adds audit
        entries: a lock that only audit writers take, first thing, so each links to the entry that is
        really last (and so two writers never wait on each other's rows in opposite order)."""
        with self.engine.connect() as conn:
            conn.execution_options(dg_write=True)
            with conn.begin():
                if audited and conn.dialect.name == "postgresql":
                    conn.execute(sa.text("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE"))
                yield conn

    # ---- schema ------------------------------------------------------------------------------
    def version(self) -> int:
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("schema_version"):
                return 0
            return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)

    def migrate(self) -> int:
        """Apply the migrations this database lacks; returns how many were applied."""
        with self._write() as conn:
            if not sa.inspect(conn).has_table("schema_version"):
                schema_version.create(conn)
        current = self.version()
        if current > SCHEMA_VERSION:
            raise CaseStoreError(
                f"{redact_url(self.url)}: case store schema version {current} is newer than this "
                f"DistillGuard knows ({SCHEMA_VERSION}); upgrade DistillGuard"
            )
        applied = 0
        for number in range(current + 1, SCHEMA_VERSION + 1):
            with self._write() as conn:
                # another process opening the same database at the same moment may have applied it
                # while this one waited for the lock (SQLite's BEGIN IMMEDIATE, PostgreSQL's here)
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("LOCK TABLE schema_version IN EXCLUSIVE MODE"))
                done = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
                if done >= number:
                    continue
                MIGRATIONS[number - 1](conn)
                conn.execute(sa.insert(schema_version).values(version=number, applied_at=now()))
                applied += 1
        return applied

    # ---- evidence in -------------------------------------------------------------------------
    def upsert(self, incoming: IncomingCase) -> Upserted:
        """Open a case for this evidence, or update the case that already holds its accounts."""
        if incoming.kind not in ("actor", "account"):
            raise CaseStoreError(f"case kind must be 'actor' or 'account', not {incoming.kind!r}")
        if not incoming.accounts:
            raise CaseStoreError(f"case {incoming.title!r} has no accounts")
        incoming = _clean_case(incoming)
        ids = [a.account_id for a in incoming.accounts]
        stamp = now()
        with self._write(audited=True) as conn:
            overlap = conn.execute(
                sa.select(case_accounts.c.case_id, cases.c.status, sa.func.count().label("n"))
                .join(cases, cases.c.case_id == case_accounts.c.case_id)
                .where(case_accounts.c.account_id.in_(ids), cases.c.status != "merged")
                .group_by(case_accounts.c.case_id, cases.c.status)
                .order_by(sa.desc("n"), case_accounts.c.case_id)
            ).all()
            open_ = [o for o in overlap if o.status == "open"]
            target: int | None = None
            linked = incoming.linked_case_id
            if open_:
                # the open case holding most of these accounts takes the evidence and absorbs the
                # other open ones; decided cases keep their history
                target = int(open_[0].case_id)
                for other in open_[1:]:
                    self._fold(conn, int(other.case_id), target, stamp)
                decided_ = [o for o in overlap if o.status != "open"]
                if decided_ and linked is None:
                    linked = int(decided_[0].case_id)  # the evidence ties it to a decided actor
            elif overlap:
                decided = int(overlap[0].case_id)
                members = set(
                    conn.execute(
                        sa.select(case_accounts.c.account_id).where(case_accounts.c.case_id == decided)
                    ).scalars()
                )
                if set(ids) <= members:
                    target = decided  # more evidence on the same accounts: the decision stands
                else:
                    linked = decided  # the decided actor with accounts it did not have: a new case
            if target is not None:
                case_id, created = target, False
            else:
                case_id = int(
                    conn.execute(
                        sa.insert(cases).values(
                            kind=incoming.kind,
                            title=incoming.title,
                            status="open",
                            source=incoming.source,
                            risk=incoming.risk,
                            verdict=incoming.verdict,
                            linked_case_id=linked,
                            peer=incoming.peer,
                            reasons=[],
                            indicators={},
                            edges=[],
                            created_at=stamp,
                            updated_at=stamp,
                            revision=0,
                        )
                    ).inserted_primary_key[0]  # type: ignore[index]
                )
                created = True
            row = conn.execute(sa.select(cases).where(cases.c.case_id == case_id)).one()
            known = set(
                conn.execute(
                    sa.select(case_accounts.c.account_id).where(case_accounts.c.case_id == case_id)
                ).scalars()
            )
            new_accounts = [a.account_id for a in incoming.accounts if a.account_id not in known]
            for account in incoming.accounts:
                values = _account_values(account)
                if account.account_id in known:
                    conn.execute(
                        sa.update(case_accounts)
                        .where(
                            case_accounts.c.case_id == case_id,
                            case_accounts.c.account_id == account.account_id,
                        )
                        .values(**values)
                    )
                else:
                    conn.execute(
                        sa.insert(case_accounts).values(
                            case_id=case_id, account_id=account.account_id, **values
                        )
                    )
            self._add_samples(conn, case_id, incoming.samples)
            indicators = _merge_indicators(row.indicators or {}, incoming.indicators)
            totals = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(case_accounts.c.calls), 0)).where(
                    case_accounts.c.case_id == case_id
                )
            ).one()
            kind = "actor" if int(totals[0]) > 1 or incoming.kind == "actor" else "account"
            conn.execute(
                sa.update(cases)
                .where(cases.c.case_id == case_id)
                .values(
                    kind=kind,
                    cluster_id=incoming.cluster_id or row.cluster_id,
                    title=incoming.title if created or incoming.kind == "actor" else row.title,
                    risk=incoming.risk
                    if incoming.source == "scan" or created
                    else max(row.risk, incoming.risk),
                    verdict=incoming.verdict if incoming.source == "scan" or created else row.verdict,
                    reasons=incoming.reasons or row.reasons,
                    indicators=indicators,
                    edges=incoming.edges or row.edges,
                    n_accounts=int(totals[0]),
                    n_calls=int(totals[1]),
                    linked_case_id=row.linked_case_id or linked,
                    revision=row.revision + 1,
                    updated_at=stamp,
                )
            )
            self._audit(
                conn,
                "system",
                case_id,
                "opened" if created else "evidence",
                "",
                {"source": incoming.source, "new_accounts": new_accounts[:50], "n_new": len(new_accounts)},
                stamp,
            )
            return Upserted(case_id, created, new_accounts, row.status)

    def _fold(self, conn: sa.Connection, source: int, target: int, stamp: datetime) -> None:
        """Move an open case's accounts and samples into `target`; decided cases keep their history."""
        folded = conn.execute(sa.select(cases).where(cases.c.case_id == source)).one()
        if folded.status != "open":
            return
        kept = conn.execute(
            sa.select(cases.c.indicators, cases.c.edges).where(cases.c.case_id == target)
        ).one()
        conn.execute(
            sa.update(cases)
            .where(cases.c.case_id == target)
            .values(
                indicators=_merge_indicators(kept.indicators or {}, folded.indicators or {}),
                edges=list(kept.edges or []) + [e for e in folded.edges or [] if e not in (kept.edges or [])],
            )
        )
        for table, key in ((case_accounts, case_accounts.c.account_id), (samples, samples.c.event_id)):
            # rows the target lacks move over; the rest (already in the target) go
            in_target = sa.select(key).where(table.c.case_id == target)
            conn.execute(
                sa.update(table)
                .where(table.c.case_id == source, key.not_in(in_target))
                .values(case_id=target)
            )
            conn.execute(sa.delete(table).where(table.c.case_id == source))
        conn.execute(
            sa.update(cases)
            .where(cases.c.case_id == source)
            .values(status="merged", linked_case_id=target, n_accounts=0, n_calls=0, updated_at=stamp)
        )
        self._audit(conn, "system", source, "merged", "", {"into": target}, stamp)

    @staticmethod
    def _add_samples(conn: sa.Connection, case_id: int, incoming: Sequence[IncomingSample]) -> None:
        if not incoming:
            return
        have = set(conn.execute(sa.select(samples.c.event_id).where(samples.c.case_id == case_id)).scalars())
        per_account: dict[str, int] = {}
        for account_id, n in conn.execute(
            sa.select(samples.c.account_id, sa.func.count())
            .where(samples.c.case_id == case_id)
            .group_by(samples.c.account_id)
        ):
            per_account[account_id] = int(n)
        rows = []
        for sample in incoming:
            if sample.event_id in have or per_account.get(sample.account_id, 0) >= SAMPLES_PER_ACCOUNT:
                continue
            have.add(sample.event_id)
            per_account[sample.account_id] = per_account.get(sample.account_id, 0) + 1
            rows.append(
                {
                    "case_id": case_id,
                    "account_id": sample.account_id,
                    "event_id": sample.event_id,
                    "ts": _utc(sample.ts),  # SQLite drops an offset without converting: store UTC
                    "endpoint": sample.endpoint,
                    "system": sample.system,
                    "prompt": sample.prompt,
                    "user_agent": sample.user_agent,
                    "end_user": sample.end_user,
                    "action": sample.action,
                }
            )
        if rows:
            conn.execute(sa.insert(samples), rows)

    # ---- reading -----------------------------------------------------------------------------
    def queue(
        self,
        *,
        status: str | None = "open",
        verdict: str | None = None,
        min_risk: float = 0.0,
        account: str | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Cases by descending risk. `status=None` means every status but merged."""
        query = (
            sa.select(cases)
            .order_by(cases.c.risk.desc(), cases.c.n_accounts.desc(), cases.c.case_id)
            .limit(limit)
        )
        if status:
            if status not in STATUSES:
                raise CaseStoreError(f"unknown status {status!r}; known: {', '.join(STATUSES)}")
            query = query.where(cases.c.status == status)
        else:
            query = query.where(cases.c.status != "merged")
        if verdict:
            query = query.where(cases.c.verdict == verdict)
        if min_risk:
            query = query.where(cases.c.risk >= min_risk)
        if account:
            holding = sa.select(case_accounts.c.case_id).where(case_accounts.c.account_id == account)
            query = query.where(cases.c.case_id.in_(holding))
        with self.engine.connect() as conn:
            return [_case_dict(row) for row in conn.execute(query)]

    def case(self, case_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(cases).where(cases.c.case_id == case_id)).one_or_none()
            if row is None:
                raise CaseStoreError(f"no case {case_id}")
            out = _case_dict(row)
            out["accounts"] = [
                {**r._asdict(), "first_flagged_at": _utc(r.first_flagged_at)}
                for r in conn.execute(
                    sa.select(case_accounts)
                    .where(case_accounts.c.case_id == case_id)
                    .order_by(case_accounts.c.risk.desc(), case_accounts.c.account_id)
                )
            ]
            out["samples"] = [
                {**r._asdict(), "ts": _utc(r.ts)}
                for r in conn.execute(
                    sa.select(samples)
                    .where(samples.c.case_id == case_id)
                    .order_by(samples.c.ts, samples.c.sample_id)
                )
            ]
            out["audit"] = self._audit_rows(conn, case_id, 500)
            out["linked_cases"] = [
                _case_dict(r)
                for r in conn.execute(
                    sa.select(cases)
                    .where(cases.c.linked_case_id == case_id, cases.c.status != "merged")
                    .order_by(cases.c.case_id)
                )
            ]
            return out

    def exists(self, case_id: int) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(cases.c.case_id).where(cases.c.case_id == case_id)).first()
        return found is not None

    def cases_of_account(self, account_id: str) -> list[int]:
        with self.engine.connect() as conn:
            return [
                int(c)
                for c in conn.execute(
                    sa.select(case_accounts.c.case_id)
                    .where(case_accounts.c.account_id == account_id)
                    .order_by(case_accounts.c.case_id)
                ).scalars()
            ]

    def audit(self, case_id: int | None = None, limit: int = 500) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return self._audit_rows(conn, case_id, limit)

    @staticmethod
    def _audit_rows(conn: sa.Connection, case_id: int | None, limit: int) -> list[dict[str, Any]]:
        query = sa.select(audit_log).order_by(audit_log.c.entry_id.desc()).limit(limit)
        if case_id is not None:
            query = query.where(audit_log.c.case_id == case_id)
        return [{**r._asdict(), "ts": _utc(r.ts)} for r in conn.execute(query)]

    # ---- decisions ---------------------------------------------------------------------------
    def decide(
        self,
        case_id: int,
        username: str,
        action: str,
        justification: str,
        detail: dict[str, Any],
        enforcement: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """Record a decision, its audit entry and the enforcement it has to deliver (`enforcement`:
        operations of `enforcement.decisions`, in delivery order) in one transaction; a deliverer
        sends them on from the outbox (`pending_enforcement`), so none is lost to a crash or an
        unreachable enforcement list after the commit."""
        if action not in DECISIONS:
            raise CaseStoreError(f"decision must be one of {', '.join(DECISIONS)}, not {action!r}")
        justification = justification.strip()
        if len(justification) < MIN_JUSTIFICATION:
            raise CaseStoreError(f"justification: at least {MIN_JUSTIFICATION} characters are required")
        stamp = now()
        with self._write(audited=True) as conn:
            updated = conn.execute(
                sa.update(cases)
                .where(cases.c.case_id == case_id, cases.c.status != "merged")
                .values(status=DECISIONS[action], updated_at=stamp)
            ).rowcount
            if not updated:
                raise CaseStoreError(f"no open or decided case {case_id}")
            entry_id = self._audit(conn, username, case_id, action, justification, detail, stamp)
            if enforcement:
                conn.execute(
                    sa.insert(enforcement_outbox),
                    [
                        {
                            "case_id": case_id,
                            "entry_id": entry_id,
                            "created_at": stamp,
                            "operation": _json(dict(operation)),
                            "attempts": 0,
                        }
                        for operation in enforcement
                    ],
                )
        return {
            "case_id": case_id,
            "status": DECISIONS[action],
            "entry_id": entry_id,
            "pending": len(enforcement),
        }

    def pending_enforcement(self, limit: int = 500) -> list[PendingEnforcement]:
        """Undelivered outbox rows, oldest first: delivery order is decision order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(enforcement_outbox)
                .where(enforcement_outbox.c.delivered_at.is_(None))
                .order_by(enforcement_outbox.c.outbox_id)
                .limit(limit)
            )
            return [
                PendingEnforcement(
                    outbox_id=int(r.outbox_id),
                    case_id=int(r.case_id),
                    entry_id=int(r.entry_id),
                    operation=dict(r.operation),
                    attempts=int(r.attempts),
                    last_error=r.last_error,
                )
                for r in rows
            ]

    def enforcement_delivered(self, outbox_id: int) -> None:
        with self._write() as conn:
            conn.execute(
                sa.update(enforcement_outbox)
                .where(enforcement_outbox.c.outbox_id == outbox_id)
                .values(delivered_at=now())
            )

    def enforcement_failed(self, outbox_id: int, error: str) -> None:
        with self._write() as conn:
            conn.execute(
                sa.update(enforcement_outbox)
                .where(enforcement_outbox.c.outbox_id == outbox_id)
                .values(attempts=enforcement_outbox.c.attempts + 1, last_error=_text(error, 500))
            )

    def pending_count(self, case_id: int | None = None) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(enforcement_outbox)
            .where(enforcement_outbox.c.delivered_at.is_(None))
        )
        if case_id is not None:
            query = query.where(enforcement_outbox.c.case_id == case_id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def set_withhold(self, case_id: int, username: str, withhold: bool) -> dict[str, Any]:
        """Keep a case out of what peers receive (or share it again); an audit entry says who."""
        stamp = now()
        with self._write(audited=True) as conn:
            updated = conn.execute(
                sa.update(cases)
                .where(cases.c.case_id == case_id, cases.c.status != "merged")
                .values(withhold=withhold, updated_at=stamp)
            ).rowcount
            if not updated:
                raise CaseStoreError(f"no open or decided case {case_id}")
            self._audit(conn, username, case_id, "withhold" if withhold else "share", "", {}, stamp)
        return {"case_id": case_id, "withhold": withhold}

    def note(self, username: str, action: str, detail: dict[str, Any], case_id: int | None = None) -> None:
        """An audit entry that is not a decision (a login, a hold synced from the gateway)."""
        with self._write(audited=True) as conn:
            self._audit(conn, username, case_id, action, "", detail, now())

    @staticmethod
    def _audit(
        conn: sa.Connection,
        username: str,
        case_id: int | None,
        action: str,
        justification: str,
        detail: dict[str, Any],
        stamp: datetime,
    ) -> int:
        """Append one entry, chained to the last; the caller's transaction is `_write(audited=True)`.
        Values are hashed as the database will give them back (text cleaned, JSON round-tripped)."""
        username = _text(username, 100) or ""
        action = _text(action, 32) or ""
        justification = (justification or "").replace("\x00", "\ufffd")
        detail = json.loads(json.dumps(_json(detail)))
        prev = head_hash(conn)
        result = conn.execute(
            sa.insert(audit_log).values(
                ts=stamp,
                actor_user=username,
                case_id=case_id,
                action=action,
                justification=justification,
                detail=detail,
                prev_hash=prev,
                row_hash=audit_digest(prev, stamp, username, case_id, action, justification, detail),
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def verify_audit(self, anchor: tuple[int, str] | None = None) -> AuditCheck:
        """Walk the audit log's hash chain (and check a head recorded earlier, if given)."""
        with self.engine.connect() as conn:
            return verify(conn, anchor)

    # ---- users -------------------------------------------------------------------------------
    def add_user(self, username: str, password: str, role: str) -> None:
        """Create or replace a local user; only the argon2id hash is stored. The password must pass
        the policy (`cases.passwords`); replacing a user ends its sessions."""
        if role not in ROLES:
            raise CaseStoreError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if not username or len(username) > 100 or not username.isprintable():
            raise CaseStoreError("username must be 1-100 printable characters")
        try:
            check_password(password, username)
        except WeakPassword as error:
            raise CaseStoreError(str(error)) from None
        digest = self._hasher.hash(password)
        stamp = now()
        with self._write(audited=True) as conn:
            conn.execute(sa.delete(users).where(users.c.username == username))
            conn.execute(
                sa.insert(users).values(username=username, password_hash=digest, role=role, created_at=stamp)
            )
            ended = conn.execute(
                sa.update(ui_sessions)
                .where(ui_sessions.c.username == username, ui_sessions.c.revoked_at.is_(None))
                .values(revoked_at=stamp)
            ).rowcount
            self._audit(
                conn,
                "system",
                None,
                "user",
                "",
                {"username": username, "role": role, "sessions_ended": ended},
                stamp,
            )

    def authenticate(self, username: str, password: str) -> str | None:
        """The user's role if the password matches, else None (same work either way)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.username == username)).one_or_none()
        digest = row.password_hash if row is not None else self._dummy_hash
        ok: bool
        try:
            ok = self._hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            ok = False
        if row is None or not ok:
            return None
        return str(row.role)

    def users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                {"username": r.username, "role": r.role, "created_at": _utc(r.created_at)}
                for r in conn.execute(sa.select(users.c.username, users.c.role, users.c.created_at))
            ]

    # ---- sessions ----------------------------------------------------------------------------
    def open_session(self, username: str, *, lifetime_s: float, address: str) -> tuple[str, Session]:
        """A new session for a user who just logged in: (the cookie's token, the session). Sessions
        past their absolute expiry are removed here; until then a revoked one stays revoked."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        stamp = now()
        with self._write() as conn:
            conn.execute(sa.delete(ui_sessions).where(ui_sessions.c.expires_at < stamp))
            role = conn.execute(sa.select(users.c.role).where(users.c.username == username)).scalar()
            if role is None:
                raise CaseStoreError(f"no user {username!r}")
            expires = stamp + timedelta(seconds=lifetime_s)
            conn.execute(
                sa.insert(ui_sessions).values(
                    session_id=_token_digest(token),
                    username=username,
                    csrf=csrf,
                    address=_text(address, 64) or "",
                    created_at=stamp,
                    last_seen_at=stamp,
                    expires_at=expires,
                )
            )
        return token, Session(username, str(role), csrf, stamp, expires)

    def session(self, token: str, *, idle_s: float) -> Session | None:
        """The live session this token opens, or None: unknown, revoked, idle for more than
        `idle_s`, past its absolute expiry, or its user gone. Marks it seen (at most once a minute,
        not a write per request)."""
        if not token or len(token) > 200:
            return None
        digest = _token_digest(token)
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(ui_sessions, users.c.role)
                .join(users, users.c.username == ui_sessions.c.username)
                .where(ui_sessions.c.session_id == digest)
            ).one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        stamp = now()
        expires, seen = _utc_stamp(row.expires_at), _utc_stamp(row.last_seen_at)
        idle = (stamp - seen).total_seconds()
        if stamp >= expires or idle > idle_s:
            return None
        if idle > min(60.0, idle_s / 4):
            with self._write() as conn:
                conn.execute(
                    sa.update(ui_sessions)
                    .where(ui_sessions.c.session_id == digest, ui_sessions.c.revoked_at.is_(None))
                    .values(last_seen_at=stamp)
                )
        return Session(str(row.username), str(row.role), str(row.csrf), _utc_stamp(row.created_at), expires)

    def revoke_session(self, token: str) -> str | None:
        """End a session for good (logout); returns its user name, or None if it was not live."""
        if not token or len(token) > 200:
            return None
        digest = _token_digest(token)
        with self._write() as conn:
            username = conn.execute(
                sa.select(ui_sessions.c.username).where(
                    ui_sessions.c.session_id == digest, ui_sessions.c.revoked_at.is_(None)
                )
            ).scalar()
            conn.execute(
                sa.update(ui_sessions).where(ui_sessions.c.session_id == digest).values(revoked_at=now())
            )
        return None if username is None else str(username)

    # ---- failed logins -----------------------------------------------------------------------
    def login_locked(self, username: str, address: str, limits: LoginLimits) -> float:
        """Seconds until this user name may try again from this address (0: it may now)."""
        stamp = now()
        keys = _login_keys(username, address, limits)
        with self.engine.connect() as conn:
            until = conn.execute(
                sa.select(sa.func.max(login_failures.c.locked_until)).where(
                    sa.or_(
                        *(
                            sa.and_(login_failures.c.scope == scope, login_failures.c.subject == subject)
                            for scope, subject, _ in keys
                        )
                    ),
                    login_failures.c.locked_until > stamp,
                )
            ).scalar()
        locked = _utc(until)
        return 0.0 if locked is None else max(0.0, (locked - stamp).total_seconds())

    def login_failed(self, username: str, address: str, limits: LoginLimits) -> float:
        """Count a wrong password against the user name and the address; returns the seconds of
        lockout it starts (0: none). Rows quiet for `forget_s` and not locked are pruned one by one
        (never the whole table: that would unlock whoever an attacker had run into a lock)."""
        stamp = now()
        locked = 0.0
        with self._write() as conn:
            conn.execute(
                sa.delete(login_failures).where(
                    login_failures.c.last_failure_at < stamp - timedelta(seconds=limits.forget_s),
                    sa.or_(login_failures.c.locked_until.is_(None), login_failures.c.locked_until < stamp),
                )
            )
            insert = pg_dialect.insert if conn.dialect.name == "postgresql" else sqlite_dialect.insert
            for scope, subject, threshold in _login_keys(username, address, limits):
                statement = (
                    insert(login_failures)
                    .values(scope=scope, subject=subject, failures=1, last_failure_at=stamp)
                    .on_conflict_do_update(
                        index_elements=["scope", "subject"],
                        set_={"failures": login_failures.c.failures + 1, "last_failure_at": stamp},
                    )
                    .returning(login_failures.c.failures)
                )
                failures = int(conn.execute(statement).scalar_one())
                seconds = limits.lock_s(failures, threshold)
                if seconds:
                    conn.execute(
                        sa.update(login_failures)
                        .where(login_failures.c.scope == scope, login_failures.c.subject == subject)
                        .values(locked_until=stamp + timedelta(seconds=seconds))
                    )
                    locked = max(locked, seconds)
        return locked

    def login_succeeded(self, username: str) -> None:
        """A correct password clears the user name's count, not the address's: an attacker holding
        one account of their own must not reset their address between guesses at others."""
        with self._write() as conn:
            conn.execute(
                sa.delete(login_failures).where(
                    login_failures.c.scope == "user", login_failures.c.subject == _user_key(username)
                )
            )


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _user_key(username: str) -> str:
    # a digest, not the name: people type their password into the user-name field by mistake
    return hashlib.sha256(("user\n" + username).encode("utf-8", "surrogatepass")).hexdigest()


def address_key(address: str) -> str:
    """The unit an address lockout counts: an IPv4 address, or an IPv6 /64 (one customer's
    allocation: rotating through it is free); anything else (a Unix socket name) as given."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _login_keys(username: str, address: str, limits: LoginLimits) -> list[tuple[str, str, int]]:
    return [
        ("user", _user_key(username), limits.user_failures),
        ("address", address_key(address), limits.address_failures),
    ]


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers (the UI's pages) never wait for the writer (an import, a decision) and the writer
    # never waits for them; busy_timeout: writers queue for up to 10 s instead of failing; foreign
    # keys are off in SQLite unless asked for, on every connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA busy_timeout = 10000")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()
    # SQLAlchemy emits BEGIN itself (`_sqlite_begin`): the driver's own implicit BEGIN is deferred
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: sa.Connection) -> None:
    immediate = conn.get_execution_options().get("dg_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _account_values(account: IncomingAccount) -> dict[str, Any]:
    return {
        "risk": account.risk,
        "verdict": account.verdict,
        "calls": account.calls,
        "calls_to_flag": account.calls_to_flag,
        "first_flagged_at": _utc(account.first_flagged_at),
        "reasons": account.reasons,
        "daily": account.daily,
        "hours": account.hours,
        "signal_rates": account.signal_rates,
    }


def _case_dict(row: sa.Row[Any]) -> dict[str, Any]:
    out = row._asdict()
    out["created_at"] = _utc(out["created_at"])
    out["updated_at"] = _utc(out["updated_at"])
    return out


def _merge_indicators(*parts: dict[str, list[str]]) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for part in parts:
        for kind, values in part.items():
            into = merged.setdefault(kind, [])
            into.extend(v for v in values if v not in into)
    return merged


def _text(value: str | None, limit: int) -> str | None:
    """What both databases store alike: no NUL (PostgreSQL refuses it), at most `limit` characters
    (PostgreSQL enforces VARCHAR lengths, SQLite does not)."""
    if value is None:
        return None
    return value.replace("\x00", "\ufffd")[:limit]


def _json(value: Any) -> Any:
    """JSON both databases accept: no NaN or infinity (PostgreSQL refuses them), no NUL in strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {str(k).replace("\x00", "\ufffd"): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def _clean_case(case: IncomingCase) -> IncomingCase:
    accounts = [
        replace(
            a,
            account_id=_text(a.account_id, 200) or "",
            verdict=_text(a.verdict, 16) or "benign",
            risk=_number(a.risk),
            reasons=_json(a.reasons),
            daily=_json(a.daily),
            hours=_json(a.hours),
            signal_rates=_json(a.signal_rates),
        )
        for a in case.accounts
    ]
    samples_ = [
        replace(
            s,
            account_id=_text(s.account_id, 200) or "",
            event_id=_text(s.event_id, 200) or "",
            endpoint=_text(s.endpoint, 200),
            system=_text(s.system or "", PROMPT_CHARS),
            prompt=_text(s.prompt, PROMPT_CHARS) or "",
            user_agent=_text(s.user_agent, 500) or None,
            end_user=_text(s.end_user, 500) or None,
            action=_text(s.action, 16),
        )
        for s in case.samples
    ]
    return replace(
        case,
        title=_text(case.title, 300) or "",
        cluster_id=_text(case.cluster_id, 64),
        verdict=_text(case.verdict, 16) or "benign",
        source=_text(case.source, 32) or "",
        peer=_text(case.peer, 100),
        risk=_number(case.risk),
        reasons=_json(case.reasons),
        indicators=_json(case.indicators),
        edges=_json(case.edges),
        accounts=accounts,
        samples=samples_,
    )


def _number(value: float) -> float:
    return value if math.isfinite(value) else 0.0
