"""The case store: cases per actor (or account), their accounts, sample calls, decisions, users.

`CaseStore(url)` takes `sqlite:///path.db` (or a plain path), or `postgresql://...`; the same
statements run on both and the same test suite runs against both. Evidence arriving for accounts
that already have a case updates that case (and folds other open cases of those accounts into it)
instead of opening a second one. The audit log is append-only: nothing here updates or deletes it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from distillguard.cases.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    audit_log,
    case_accounts,
    cases,
    samples,
    schema_version,
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


class CaseStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(engine_url(url), future=True)
        if self.engine.dialect.name == "sqlite":
            # one writer at a time (the UI and `cases import` may overlap): wait, don't fail
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._hasher = PasswordHasher()
        self._dummy_hash = self._hasher.hash("timing equaliser for unknown users")

    @classmethod
    def open(cls, url: str) -> CaseStore:
        store = cls(url)
        store.migrate()
        return store

    def close(self) -> None:
        self.engine.dispose()

    # ---- schema ------------------------------------------------------------------------------
    def version(self) -> int:
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("schema_version"):
                return 0
            return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)

    def migrate(self) -> int:
        """Apply the migrations this database lacks; returns how many were applied."""
        with self.engine.begin() as conn:
            if not sa.inspect(conn).has_table("schema_version"):
                schema_version.create(conn)
        current = self.version()
        if current > SCHEMA_VERSION:
            raise CaseStoreError(
                f"{redact_url(self.url)}: case store schema version {current} is newer than this "
                f"DistillGuard knows ({SCHEMA_VERSION}); upgrade DistillGuard"
            )
        for number in range(current + 1, SCHEMA_VERSION + 1):
            with self.engine.begin() as conn:
                MIGRATIONS[number - 1](conn)
                conn.execute(sa.insert(schema_version).values(version=number, applied_at=now()))
        return SCHEMA_VERSION - current

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
        with self.engine.begin() as conn:
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
        self, case_id: int, username: str, action: str, justification: str, detail: dict[str, Any]
    ) -> dict[str, Any]:
        """Record a decision (the caller has already delivered its enforcement) and its audit entry."""
        if action not in DECISIONS:
            raise CaseStoreError(f"decision must be one of {', '.join(DECISIONS)}, not {action!r}")
        justification = justification.strip()
        if len(justification) < MIN_JUSTIFICATION:
            raise CaseStoreError(f"justification: at least {MIN_JUSTIFICATION} characters are required")
        stamp = now()
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(cases)
                .where(cases.c.case_id == case_id, cases.c.status != "merged")
                .values(status=DECISIONS[action], updated_at=stamp)
            ).rowcount
            if not updated:
                raise CaseStoreError(f"no open or decided case {case_id}")
            self._audit(conn, username, case_id, action, justification, detail, stamp)
        return {"case_id": case_id, "status": DECISIONS[action]}

    def set_withhold(self, case_id: int, username: str, withhold: bool) -> dict[str, Any]:
        """Keep a case out of what peers receive (or share it again); an audit entry says who."""
        stamp = now()
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
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
    ) -> None:
        conn.execute(
            sa.insert(audit_log).values(
                ts=stamp,
                actor_user=username,
                case_id=case_id,
                action=action,
                justification=justification,
                detail=detail,
            )
        )

    # ---- users -------------------------------------------------------------------------------
    def add_user(self, username: str, password: str, role: str) -> None:
        """Create or replace a local user; only the argon2id hash is stored."""
        if role not in ROLES:
            raise CaseStoreError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if not username or len(username) > 100 or not username.isprintable():
            raise CaseStoreError("username must be 1-100 printable characters")
        if len(password) < 8:
            raise CaseStoreError("password: at least 8 characters are required")
        digest = self._hasher.hash(password)
        with self.engine.begin() as conn:
            conn.execute(sa.delete(users).where(users.c.username == username))
            conn.execute(
                sa.insert(users).values(username=username, password_hash=digest, role=role, created_at=now())
            )
            self._audit(conn, "system", None, "user", "", {"username": username, "role": role}, now())

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

    def session_key(self, username: str) -> tuple[str, str] | None:
        """(role, a digest of the password hash) while the user exists: a session carries the
        digest, so changing the password or the role ends the user's sessions."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(users.c.role, users.c.password_hash).where(users.c.username == username)
            ).one_or_none()
        if row is None:
            return None
        return str(row.role), hashlib.sha256(f"{row.role}\n{row.password_hash}".encode()).hexdigest()[:32]

    def users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                {"username": r.username, "role": r.role, "created_at": _utc(r.created_at)}
                for r in conn.execute(sa.select(users.c.username, users.c.role, users.c.created_at))
            ]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 10000")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


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
