"""The audit log's hash chain: how a row's hash is computed, and the walk that checks every link.

Triggers make the database refuse UPDATE and DELETE on `audit_log`, but whoever owns the database can
drop them. The chain is what is left then: each row stores `row_hash` = sha256(previous row's hash,
a newline, this row's canonical content), so a changed, removed or inserted row breaks the link at
that row or the next. Rewriting every later hash as well is caught by checking a head recorded
elsewhere (`verify-audit` prints it; `--anchor ID:HASH` checks it).

Statements here use a lightweight `sa.table` rather than the schema's `audit_log`, so the schema's
migration can chain the rows of an older database without importing the store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

GENESIS = "0" * 64  # the "previous hash" of the first row

_log = sa.table(
    "audit_log",
    sa.column("entry_id", sa.Integer),
    sa.column("ts"),
    sa.column("actor_user"),
    sa.column("case_id"),
    sa.column("action"),
    sa.column("justification"),
    sa.column("detail"),
    sa.column("prev_hash"),
    sa.column("row_hash"),
)


def _ts_text(ts: datetime) -> str:
    utc = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(
    ts: datetime, actor_user: str, case_id: int | None, action: str, justification: str, detail: Any
) -> str:
    """One row's content as the same bytes whichever database stored it: JSON with sorted keys, ASCII
    only, the time in UTC with microseconds (both databases keep them)."""
    return json.dumps(
        {
            "ts": _ts_text(ts),
            "actor_user": actor_user,
            "case_id": case_id,
            "action": action,
            "justification": justification,
            "detail": detail,
        },
        sort_keys=True,
        ensure_ascii=True,
        separators=(",", ":"),
        allow_nan=False,
    )


def audit_digest(
    prev_hash: str,
    ts: datetime,
    actor_user: str,
    case_id: int | None,
    action: str,
    justification: str,
    detail: Any,
) -> str:
    content = canonical(ts, actor_user, case_id, action, justification, detail)
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


def head_hash(conn: sa.Connection) -> str:
    """The hash the next row links to. The caller holds the lock that serialises audit writes, or
    two writers would both link to the same row and fork the chain."""
    last = conn.execute(sa.select(_log.c.row_hash).order_by(_log.c.entry_id.desc()).limit(1)).first()
    return str(last[0]) if last is not None and last[0] else GENESIS


def _rows(conn: sa.Connection) -> sa.CursorResult[Any]:
    # SQLite keeps whatever text it was given; read the time and the detail as text and parse them
    # here, so a mangled row is reported as that row instead of failing the whole walk. PostgreSQL's
    # typed timestamp cannot hold garbage, and its text form depends on the session's DateStyle.
    sqlite = conn.dialect.name == "sqlite"
    ts = sa.cast(_log.c.ts, sa.Text) if sqlite else sa.column("ts", sa.DateTime(timezone=True))
    query = sa.select(
        _log.c.entry_id,
        ts.label("ts"),
        _log.c.actor_user,
        _log.c.case_id,
        _log.c.action,
        _log.c.justification,
        sa.cast(_log.c.detail, sa.Text).label("detail"),
        _log.c.prev_hash,
        _log.c.row_hash,
    ).order_by(_log.c.entry_id)
    return conn.execute(query.execution_options(yield_per=1000))


def _content(row: Any) -> tuple[datetime, Any]:
    ts = row.ts if isinstance(row.ts, datetime) else datetime.fromisoformat(str(row.ts).replace(" ", "T"))
    return ts, json.loads(row.detail)


def chain_existing_audit_rows(conn: sa.Connection) -> int:
    """Give the rows of a database from before the chain their hashes (migration 3, before the
    triggers exist); returns how many rows were chained."""
    prev = GENESIS
    rows = list(_rows(conn))
    for row in rows:
        ts, detail = _content(row)
        digest = audit_digest(prev, ts, row.actor_user, row.case_id, row.action, row.justification, detail)
        conn.execute(
            sa.update(_log).where(_log.c.entry_id == row.entry_id).values(prev_hash=prev, row_hash=digest)
        )
        prev = digest
    return len(rows)


def triggers_present(conn: sa.Connection) -> bool:
    """Whether the append-only triggers are still installed (an owner can drop them)."""
    if conn.dialect.name == "sqlite":
        names = set(
            conn.execute(
                sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'")
            ).scalars()
        )
        return {"audit_log_no_update", "audit_log_no_delete"} <= names
    names = set(
        conn.execute(
            sa.text(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass('audit_log') AND NOT tgisinternal"
            )
        ).scalars()
    )
    return {"audit_log_no_update_delete", "audit_log_no_truncate"} <= names


@dataclass
class AuditCheck:
    """What `verify` found: `problem` is None when every link holds (and the anchor, if given)."""

    entries: int
    head: tuple[int, str] | None  # the last row's id and hash: record it to check later
    triggers: bool
    broken_at: int | None = None
    problem: str | None = None


def _row_problem(row: Any, prev: str, anchor: tuple[int, str] | None) -> str | None:
    if row.prev_hash != prev:
        return "does not link to the entry before it (an entry was removed, inserted or re-chained)"
    try:
        ts, detail = _content(row)
        expected = audit_digest(prev, ts, row.actor_user, row.case_id, row.action, row.justification, detail)
    except (ValueError, TypeError) as error:
        return f"unreadable content ({error})"
    if row.row_hash != expected:
        return "its content does not match its hash (the entry was changed)"
    if anchor is not None and int(row.entry_id) == anchor[0] and row.row_hash != anchor[1]:
        return f"its hash is not the recorded anchor {anchor[1][:16]}..."
    return None


def verify(conn: sa.Connection, anchor: tuple[int, str] | None = None) -> AuditCheck:
    """Walk the chain in entry order; stop at the first row whose link or content does not hold."""
    triggers = triggers_present(conn)
    prev, count, last, anchored = GENESIS, 0, None, anchor is None
    for row in _rows(conn):
        count += 1
        entry_id = int(row.entry_id)
        problem = _row_problem(row, prev, anchor)
        if problem is not None:
            return AuditCheck(count, last, triggers, entry_id, f"entry #{entry_id}: {problem}")
        anchored = anchored or (anchor is not None and entry_id == anchor[0])
        prev = str(row.row_hash)
        last = (entry_id, prev)
    if not anchored and anchor is not None:
        missing = f"entry #{anchor[0]}: the recorded anchor is not in the log (removed, or never there)"
        return AuditCheck(count, last, triggers, anchor[0], missing)
    return AuditCheck(count, last, triggers)
