"""`distillguard cases add-user` (password policy) and `distillguard cases verify-audit`, on SQLite
and PostgreSQL, through the real click commands."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from distillguard.cases.cli import cases
from distillguard.cases.store import CaseStore, IncomingAccount, IncomingCase


def _add_user(url: str, name: str, password: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cases,
        ["add-user", name, "--role", "viewer", "--db", url, "--password-env", "DG_PW"],
        env={"DG_PW": password},
    )
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("password", "at least 12 characters"),
        ("password123456", "too easy to guess"),
        ("alice-in-review", "must not be the user name"),
    ],
)
def test_add_user_refuses_weak_passwords(url: str, password: str, message: str) -> None:
    code, output = _add_user(url, "alice-in-review", password)
    assert code != 0 and message in output
    assert len(password) < 12 or password not in output  # "password" itself is in every message
    store = CaseStore.open(url)
    try:
        assert store.users() == []
    finally:
        store.close()


def test_add_user_accepts_a_strong_password(url: str) -> None:
    code, output = _add_user(url, "alice", "correct horse battery")
    assert code == 0, output
    assert "correct horse battery" not in output


def _history(url: str) -> list[int]:
    store = CaseStore.open(url)
    try:
        case_id = store.upsert(
            IncomingCase(kind="actor", source="scan", title="t", accounts=[IncomingAccount("a")])
        ).case_id
        store.decide(case_id, "alice", "ban", "shared payment fingerprint, five accounts", {})
        store.note("bob", "login", {})
        return [e["entry_id"] for e in reversed(store.audit())]
    finally:
        store.close()


def test_verify_audit_passes_and_prints_the_head(url: str) -> None:
    ids = _history(url)
    result = CliRunner().invoke(cases, ["verify-audit", "--db", url])
    assert result.exit_code == 0, result.output
    assert "3 entries" in result.output and f"#{ids[-1]}" in result.output


def test_verify_audit_fails_naming_the_rewritten_row(url: str) -> None:
    ids = _history(url)
    store = CaseStore.open(url)
    try:
        with store.engine.begin() as conn:  # the database owner removes the protection first
            if conn.dialect.name == "sqlite":
                for name in ("audit_log_no_update", "audit_log_no_delete"):
                    conn.exec_driver_sql(f"DROP TRIGGER {name}")
            else:
                conn.exec_driver_sql("DROP FUNCTION audit_log_append_only() CASCADE")
            conn.execute(
                sa.text("UPDATE audit_log SET justification = 'routine check' WHERE entry_id = :id"),
                {"id": ids[1]},
            )
    finally:
        store.close()
    result = CliRunner().invoke(cases, ["verify-audit", "--db", url])
    assert result.exit_code == 1
    assert f"entry #{ids[1]}" in result.output
    assert "triggers" in result.output  # and the missing protection is reported


def test_verify_audit_checks_a_recorded_head(url: str) -> None:
    ids = _history(url)
    store = CaseStore.open(url)
    try:
        head = store.verify_audit().head
    finally:
        store.close()
    assert head is not None
    ok = CliRunner().invoke(cases, ["verify-audit", "--db", url, "--anchor", f"{head[0]}:{head[1]}"])
    assert ok.exit_code == 0, ok.output
    wrong = CliRunner().invoke(cases, ["verify-audit", "--db", url, "--anchor", f"{ids[0]}:{head[1]}"])
    assert wrong.exit_code == 1 and f"#{ids[0]}" in wrong.output
    bad = CliRunner().invoke(cases, ["verify-audit", "--db", url, "--anchor", "seven"])
    assert bad.exit_code == 2 and "--anchor" in bad.output
