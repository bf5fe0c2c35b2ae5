"""The review UI's password policy: at least 12 characters and a zxcvbn score of 3 or more, with
the user's own name counted as a dictionary word; the message says what to change."""

from __future__ import annotations

import pytest

from distillguard.cases.passwords import MIN_LENGTH, MIN_SCORE, WeakPassword, check_password
from distillguard.cases.store import CaseStore, CaseStoreError


@pytest.mark.parametrize(
    ("password", "username", "message"),
    [
        ("password", "alice", "at least 12 characters"),
        ("password123456", "alice", "too easy to guess"),
        ("password123456", "alice", "similar to a commonly used password"),
        ("qwertyuiopasdf", "alice", "too easy to guess"),
        ("aaaaaaaaaaaaaaaa", "alice", "too easy to guess"),
        ("alice-alice-alice", "alice", "too easy to guess"),
        ("investigator-ivy", "investigator-ivy", "must not be the user name"),
        ("Investigator-Ivy", "investigator-ivy", "must not be the user name"),
        ("", "alice", "at least 12 characters"),
        ("x" * 1025, "alice", "at most 1024 characters"),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(password: str, username: str, message: str) -> None:
    with pytest.raises(WeakPassword, match=message) as refused:
        check_password(password, username)
    assert str(refused.value).startswith("password: ")


@pytest.mark.parametrize("password", ["qwertyuiopasdf", "password123456", "Dragon1234567"])
def test_the_message_never_echoes_the_password(password: str) -> None:
    with pytest.raises(WeakPassword) as refused:
        check_password(password, "alice")
    assert password.lower() not in str(refused.value).lower()


@pytest.mark.parametrize(
    ("password", "username"),
    [
        ("correct horse battery", "alice"),
        ("ivy-investigates-1", "ivy"),
        ("Tr0ub4dour&3-plus", "alice"),
        ("a long passphrase " * 10, "alice"),  # longer than zxcvbn's default limit of 72
    ],
)
def test_strong_passwords_pass(password: str, username: str) -> None:
    check_password(password, username)


def test_the_policy_is_what_the_docs_say() -> None:
    assert (MIN_LENGTH, MIN_SCORE) == (12, 3)


@pytest.mark.parametrize("password", ["password", "password123456", "alice-reviewer"])
def test_the_store_applies_the_policy_to_every_password_it_sets(store: CaseStore, password: str) -> None:
    with pytest.raises(CaseStoreError, match="password: "):
        store.add_user("alice-reviewer", password, "viewer")
    store.add_user("alice-reviewer", "correct horse battery", "viewer")
    with pytest.raises(CaseStoreError, match="password: "):  # changing it later: the same policy
        store.add_user("alice-reviewer", password, "admin")
    assert store.authenticate("alice-reviewer", "correct horse battery") == "viewer"
