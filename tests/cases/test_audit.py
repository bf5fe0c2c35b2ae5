"""The audit log: the database refuses UPDATE, DELETE (and TRUNCATE) of its rows, and the hash
chain finds a rewrite made after the triggers were dropped, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from distillguard.cases.audit import audit_digest
from distillguard.cases.schema import MIGRATIONS, SCHEMA_VERSION, audit_log, schema_version
from distillguard.cases.store import CaseStore, IncomingAccount, IncomingCase, engine_url

JUSTIFIED = "payment fingerprint shared by all five accounts"


def actor_case(ids: list[str]) -> IncomingCase:
    return IncomingCase(
        kind="actor", source="scan", title="actor", accounts=[IncomingAccount(a, calls=10) for a in ids]
    )


def _drop_audit_triggers(store: CaseStore) -> None:
    """What an attacker with the database owner's rights can do: remove the protection."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            names = conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"
            ).scalars()
            for name in list(names):
                conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
        else:
            conn.exec_driver_sql("DROP FUNCTION audit_log_append_only() CASCADE")


def _audited(store: CaseStore) -> list[int]:
    case_id = store.upsert(actor_case(["a", "b"])).case_id
    store.decide(case_id, "alice", "ban", JUSTIFIED, {"n_entries": 2})
    store.note("bob", "login", {})
    store.decide(case_id, "carol", "clear", "appeal upheld after review", {})
    store.add_user("dave", "correct horse battery", "viewer")
    return [e["entry_id"] for e in reversed(store.audit())]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET justification = 'nothing to see' WHERE entry_id = {id}",
        "UPDATE audit_log SET actor_user = 'mallory'",
        "DELETE FROM audit_log WHERE entry_id = {id}",
        "DELETE FROM audit_log",
    ],
)
def test_the_database_refuses_to_rewrite_the_audit_log(store: CaseStore, statement: str) -> None:
    ids = _audited(store)
    before = store.audit()
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.engine.begin() as conn:
        conn.exec_driver_sql(statement.format(id=ids[1]))
    assert store.audit() == before
    assert store.verify_audit().problem is None


def test_postgresql_refuses_truncate_of_the_audit_log(store: CaseStore) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE; DELETE without WHERE is covered above")
    _audited(store)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE audit_log CASCADE")
    assert len(store.audit()) == 5


def test_verify_audit_passes_an_untouched_log(store: CaseStore) -> None:
    ids = _audited(store)
    check = store.verify_audit()
    assert check.problem is None and check.broken_at is None
    assert check.entries == len(ids) == 5
    assert check.triggers
    assert check.head is not None and check.head[0] == ids[-1] and len(check.head[1]) == 64


@pytest.mark.parametrize(
    ("tamper", "broken"),
    [
        # (statement run with the triggers dropped, index of the entry verify-audit must name)
        ("UPDATE audit_log SET justification = 'routine' WHERE entry_id = {ids[2]}", 2),
        ("UPDATE audit_log SET actor_user = 'mallory' WHERE entry_id = {ids[0]}", 0),
        ("UPDATE audit_log SET detail = '{{}}' WHERE entry_id = {ids[1]}", 1),
        ("UPDATE audit_log SET ts = ts - INTERVAL '1 day' WHERE entry_id = {ids[3]}", 3),
        ("DELETE FROM audit_log WHERE entry_id = {ids[2]}", 3),  # the next row no longer links
        ("DELETE FROM audit_log WHERE entry_id = {ids[0]}", 1),
        ("UPDATE audit_log SET row_hash = NULL WHERE entry_id = {ids[4]}", 4),
    ],
)
def test_verify_audit_names_the_first_rewritten_row(store: CaseStore, tamper: str, broken: int) -> None:
    ids = _audited(store)
    _drop_audit_triggers(store)
    if store.engine.dialect.name == "sqlite":
        tamper = tamper.replace("ts - INTERVAL '1 day'", "datetime(ts, '-1 day')")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(tamper.format(ids=ids))
    check = store.verify_audit()
    assert check.broken_at == ids[broken]
    assert check.problem is not None and f"#{ids[broken]}" in check.problem
    assert not check.triggers


def test_verify_audit_detects_a_row_forged_with_its_own_hash(store: CaseStore) -> None:
    """Rewriting one row and recomputing its hash breaks the link to the next row."""
    ids = _audited(store)
    _drop_audit_triggers(store)
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(audit_log).where(audit_log.c.entry_id == ids[1])).one()
        forged = audit_digest(
            row.prev_hash, row.ts, row.actor_user, row.case_id, "clear", row.justification, {}
        )
        conn.execute(
            sa.text(
                "UPDATE audit_log SET action = 'clear', detail = '{}', row_hash = :h WHERE entry_id = :id"
            ),
            {"h": forged, "id": ids[1]},
        )
    check = store.verify_audit()
    assert check.broken_at == ids[2]


def test_a_database_from_before_the_chain_is_chained_at_migration(url: str) -> None:
    engine = sa.create_engine(engine_url(url), future=True)
    with engine.begin() as conn:
        schema_version.create(conn)
        for number, migration in enumerate(MIGRATIONS[:2], 1):
            migration(conn)
            conn.execute(sa.insert(schema_version).values(version=number, applied_at=datetime.now(UTC)))
        # the audit log as version 2 had it: no hash columns
        conn.exec_driver_sql("ALTER TABLE audit_log DROP COLUMN prev_hash")
        conn.exec_driver_sql("ALTER TABLE audit_log DROP COLUMN row_hash")
        for i in range(3):
            conn.execute(
                sa.text(
                    "INSERT INTO audit_log (ts, actor_user, action, justification, detail) "
                    "VALUES (:ts, 'old', 'login', '', :detail)"
                ),
                {"ts": datetime(2025, 1, 1, 12, i, tzinfo=UTC), "detail": f'{{"i": {i}}}'},
            )
    engine.dispose()
    store = CaseStore.open(url)
    try:
        assert store.version() == SCHEMA_VERSION
        store.note("new", "login", {})
        check = store.verify_audit()
        assert (check.problem, check.entries, check.triggers) == (None, 4, True)
    finally:
        store.close()
