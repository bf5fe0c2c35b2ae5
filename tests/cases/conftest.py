"""The case store's backends for every test under tests/cases: SQLite and a real PostgreSQL.

PostgreSQL is `postgresql://postgres@127.0.0.1:5432/` (or DISTILLGUARD_TEST_POSTGRES, any database
on the server): each test module creates its own database `dg_test_<random>` and drops it
afterwards (parallel runs never share one), and every test starts from an empty `public` schema.
An unreachable server fails the PostgreSQL tests; set DISTILLGUARD_NO_POSTGRES=1 to skip them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from distillguard.cases.store import CaseStore, engine_url, redact_url

PG_SERVER = os.environ.get("DISTILLGUARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
NO_POSTGRES = os.environ.get("DISTILLGUARD_NO_POSTGRES") == "1"


def _server_engine() -> sa.Engine:
    return sa.create_engine(engine_url(PG_SERVER), isolation_level="AUTOCOMMIT", future=True)


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A database of its own for this module, dropped at the end."""
    if NO_POSTGRES:
        pytest.skip("DISTILLGUARD_NO_POSTGRES=1")
    server = _server_engine()
    name = "dg_test_" + secrets.token_hex(6)
    try:
        with server.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as error:
        server.dispose()
        pytest.fail(
            f"PostgreSQL at {redact_url(PG_SERVER)} is unreachable ({error.orig}); start it, or set "
            "DISTILLGUARD_NO_POSTGRES=1 to skip the PostgreSQL half of this suite"
        )
    url = sa.engine.make_url(engine_url(PG_SERVER)).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield "sqlite:///" + str(tmp_path / "cases.db")
        return
    database: str = request.getfixturevalue("pg_database")
    engine = sa.create_engine(database, isolation_level="AUTOCOMMIT", future=True)

    def empty() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))

    empty()
    try:
        yield database
    finally:
        empty()
        engine.dispose()


@pytest.fixture
def store(url: str) -> Iterator[CaseStore]:
    opened = CaseStore.open(url)
    try:
        yield opened
    finally:
        opened.close()
