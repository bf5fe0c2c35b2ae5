"""The case store's tables (SQLAlchemy Core) and its numbered migrations.

Core rather than the ORM: the store is a handful of insert/update/select statements that must
behave the same on SQLite (the embedded default) and PostgreSQL, and Core keeps each statement
visible. Migrations are a list of functions applied in order inside one transaction each and
recorded in `schema_version`; a database newer than this code is refused rather than written to.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

# One case per actor cluster (or single account). `status` is the latest decision (open until one
# is taken); `linked_case_id` points from a recidivism case to the banned actor's case.
cases = sa.Table(
    "cases",
    metadata,
    sa.Column("case_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # actor | account
    sa.Column("cluster_id", sa.String(64)),  # the scan's latest cluster id for these accounts
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="open"),
    sa.Column("risk", sa.Float, nullable=False, default=0.0),
    sa.Column("verdict", sa.String(16), nullable=False, default="benign"),
    sa.Column("source", sa.String(32), nullable=False),  # scan | gateway | recidivism
    sa.Column("n_accounts", sa.Integer, nullable=False, default=0),
    sa.Column("n_calls", sa.Integer, nullable=False, default=0),
    sa.Column("reasons", sa.JSON, nullable=False, default=list),
    sa.Column("indicators", sa.JSON, nullable=False, default=dict),  # kind -> [values]
    sa.Column("edges", sa.JSON, nullable=False, default=list),
    sa.Column("linked_case_id", sa.Integer, sa.ForeignKey("cases.case_id")),
    sa.Column("revision", sa.Integer, nullable=False, default=1),  # +1 per evidence update
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # v3 (intel): a reviewer keeps a decided case out of what peers receive; a case opened because
    # an account matched a peer's indicators names the peer
    sa.Column("withhold", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("peer", sa.String(100)),
)

case_accounts = sa.Table(
    "case_accounts",
    metadata,
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.case_id"), primary_key=True),
    sa.Column("account_id", sa.String(200), primary_key=True),
    sa.Column("risk", sa.Float, nullable=False, default=0.0),
    sa.Column("verdict", sa.String(16), nullable=False, default="benign"),
    sa.Column("calls", sa.Integer, nullable=False, default=0),
    sa.Column("calls_to_flag", sa.Integer),
    sa.Column("first_flagged_at", sa.DateTime(timezone=True)),
    sa.Column("reasons", sa.JSON, nullable=False, default=list),
    sa.Column("daily", sa.JSON, nullable=False, default=dict),  # day -> calls
    sa.Column("hours", sa.JSON, nullable=False, default=list),  # 24 counts, UTC
    sa.Column("signal_rates", sa.JSON, nullable=False, default=dict),  # signal -> share of calls
    sa.Index("ix_case_accounts_account", "account_id"),
)

samples = sa.Table(
    "samples",
    metadata,
    sa.Column("sample_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.case_id"), nullable=False),
    sa.Column("account_id", sa.String(200), nullable=False),
    sa.Column("event_id", sa.String(200), nullable=False),
    sa.Column("ts", sa.DateTime(timezone=True)),
    sa.Column("endpoint", sa.String(200)),
    sa.Column("system", sa.Text),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("user_agent", sa.String(500)),
    sa.Column("end_user", sa.String(500)),
    sa.Column("action", sa.String(16)),  # the gateway's decision, when the sample came from it
    sa.UniqueConstraint("case_id", "event_id", name="uq_samples_case_event"),
)

# Append-only: rows are inserted, never updated or deleted (the store has no code path that does).
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor_user", sa.String(100), nullable=False),  # who: a UI user or "system"
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.case_id")),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("justification", sa.Text, nullable=False, default=""),
    sa.Column("detail", sa.JSON, nullable=False, default=dict),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("username", sa.String(100), primary_key=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def _v1(conn: sa.Connection) -> None:
    for table in (cases, case_accounts, samples, audit_log, users):
        table.create(conn)


def _v2(conn: sa.Connection) -> None:
    # Queue filters sort and select by these on every page load.
    # Plain DDL, identical on both databases: an `sa.Index` object would attach itself to the table
    # and make `_v1` create it too on the next fresh database.
    conn.execute(sa.text("CREATE INDEX ix_cases_status_risk ON cases (status, risk)"))
    conn.execute(sa.text("CREATE INDEX ix_audit_case ON audit_log (case_id)"))


def _v3(conn: sa.Connection) -> None:
    # `_v1` creates tables from today's definitions, so a fresh database has the columns already
    have = {column["name"] for column in sa.inspect(conn).get_columns("cases")}
    if "withhold" not in have:
        conn.execute(sa.text("ALTER TABLE cases ADD COLUMN withhold BOOLEAN NOT NULL DEFAULT FALSE"))
    if "peer" not in have:
        conn.execute(sa.text("ALTER TABLE cases ADD COLUMN peer VARCHAR(100)"))


MIGRATIONS: list[Callable[[sa.Connection], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)
