"""The case store's tables (SQLAlchemy Core) and its numbered migrations.

Core rather than the ORM: the store is a handful of insert/update/select statements that must
behave the same on SQLite (the embedded default) and PostgreSQL, and Core keeps each statement
visible. Migrations are a list of functions applied in order inside one transaction each and
recorded in `schema_version`; a database newer than this code is refused rather than written to.
`_v1` creates tables from the definitions below as they are now, so a later migration that adds a
column to one of them checks whether the column is there already.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from distillguard.cases.audit import chain_existing_audit_rows

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

# Append-only, enforced by the database: triggers (migration 3) refuse UPDATE and DELETE (and
# TRUNCATE on PostgreSQL). Each row also carries a hash chain, `row_hash` = sha256 over the previous
# row's hash and this row's canonical content (`store.audit_digest`), so a rewrite by someone who can
# drop the triggers (the database owner) is still found by `distillguard cases verify-audit`.
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
    sa.Column("prev_hash", sa.String(64)),
    sa.Column("row_hash", sa.String(64)),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("username", sa.String(100), primary_key=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


# Review-UI sessions, kept here rather than in a signed cookie so that logging out (and a password or
# role change) revokes a session for good, across restarts: the cookie carries only a random token,
# and only its sha256 is stored (a copy of this table opens no session).
ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),  # sha256 of the cookie's token
    sa.Column("username", sa.String(100), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),  # where the login came from, for the record
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),  # the absolute timeout
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Index("ix_ui_sessions_username", "username"),
    sa.Index("ix_ui_sessions_expires", "expires_at"),
)

# Failed logins per user name (its sha256: people type passwords into the name field) and per
# address, for lockout with exponential backoff. Stale rows are pruned one by one; the table is never
# emptied wholesale (that would unlock everyone an attacker had locked out of guessing).
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("scope", sa.String(8), primary_key=True),  # user | address
    sa.Column("subject", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("locked_until", sa.DateTime(timezone=True)),
    sa.Index("ix_login_failures_last", "last_failure_at"),
)

# Enforcement a decision has to deliver (ban-list entries to put or lift, feedback labels), written
# in the decision's own transaction and delivered afterwards by a deliverer that retries: a crash or
# an unreachable Redis between the commit and the delivery loses nothing.
enforcement_outbox = sa.Table(
    "enforcement_outbox",
    metadata,
    sa.Column("outbox_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.case_id"), nullable=False),
    sa.Column("entry_id", sa.Integer, sa.ForeignKey("audit_log.entry_id"), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("operation", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Index("ix_outbox_pending", "delivered_at", "outbox_id"),
)

_APPEND_ONLY = "audit_log is append-only"


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
    for table in (ui_sessions, login_failures, enforcement_outbox):
        table.create(conn)
    have = {c["name"] for c in sa.inspect(conn).get_columns("audit_log")}
    for column in ("prev_hash", "row_hash"):
        if column not in have:
            conn.execute(sa.text(f"ALTER TABLE audit_log ADD COLUMN {column} VARCHAR(64)"))
    chain_existing_audit_rows(conn)  # before the triggers: it writes the hashes of earlier rows
    if conn.dialect.name == "sqlite":
        for operation in ("UPDATE", "DELETE"):
            conn.execute(
                sa.text(
                    f"CREATE TRIGGER audit_log_no_{operation.lower()} BEFORE {operation} ON audit_log "
                    f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}: {operation} refused'); END"
                )
            )
    else:
        conn.execute(
            sa.text(
                "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}: % refused', TG_OP; END $$"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log "
                "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
            )
        )


def _v4(conn: sa.Connection) -> None:
    # `_v1` creates tables from today's definitions, so a fresh database has the columns already
    have = {column["name"] for column in sa.inspect(conn).get_columns("cases")}
    if "withhold" not in have:
        conn.execute(sa.text("ALTER TABLE cases ADD COLUMN withhold BOOLEAN NOT NULL DEFAULT FALSE"))
    if "peer" not in have:
        conn.execute(sa.text("ALTER TABLE cases ADD COLUMN peer VARCHAR(100)"))


MIGRATIONS: list[Callable[[sa.Connection], None]] = [_v1, _v2, _v3, _v4]
SCHEMA_VERSION = len(MIGRATIONS)
