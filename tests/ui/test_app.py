"""The review UI's HTTP surface through Starlette's test client: authentication on every route,
roles, CSRF, clear 4xx errors for bad input, sessions and lockout kept in the case store (across
restarts), and a decision's enforcement entries delivered from the outbox."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from distillguard.cases.evidence import import_scan
from distillguard.cases.store import CaseStore, LoginLimits
from distillguard.enforcement.state import MemoryState
from distillguard.ui.app import ReviewApp, _safe_next
from tests.ui.review_deployment import write_scan

PASSWORD = "correct horse battery"


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[tuple[TestClient, CaseStore, MemoryState, Path]]:
    store = CaseStore.open(str(tmp_path / "cases.db"))
    import_scan(store, write_scan(tmp_path / "scan"))
    for user, role in (("ivy", "investigator"), ("vic", "viewer")):
        store.add_user(user, PASSWORD, role)
    bans = tmp_path / "bans.jsonl"
    state = MemoryState(bans_file=bans)
    app = ReviewApp(store, state, feedback_labels=tmp_path / "labels.jsonl", sync_s=3600).asgi("test-secret")
    with TestClient(app, base_url="http://testserver") as client:
        yield client, store, state, tmp_path
    store.close()


def login(client: TestClient, user: str, password: str = PASSWORD) -> str:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    answer = client.post(
        "/login",
        data={"username": user, "password": password, "csrf_token": token.group(1), "next": "/"},
        follow_redirects=False,
    )
    if answer.status_code != 303:
        return ""
    home = client.get("/")
    found = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize("path", ["/", "/cases/1", "/audit", "/api/cases", "/api/cases/1", "/api/audit"])
def test_every_route_needs_a_login(ui: tuple[TestClient, CaseStore, MemoryState, Path], path: str) -> None:
    client = ui[0]
    answer = client.get(path, follow_redirects=False)
    if path.startswith("/api/"):
        assert answer.status_code == 401
    else:
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


def test_wrong_password_and_lockout(ui: tuple[TestClient, CaseStore, MemoryState, Path]) -> None:
    client = ui[0]
    assert login(client, "ivy", "wrong password") == ""
    for _ in range(5):
        login(client, "ivy", "wrong password")
    assert login(client, "ivy") == ""  # locked for a minute, even with the right password


def test_login_without_csrf_token_is_refused(ui: tuple[TestClient, CaseStore, MemoryState, Path]) -> None:
    client = ui[0]
    client.get("/login")
    answer = client.post("/login", data={"username": "ivy", "password": PASSWORD})
    assert answer.status_code == 403


def test_decision_needs_csrf_role_and_justification(
    ui: tuple[TestClient, CaseStore, MemoryState, Path],
) -> None:
    client, _store, state, tmp_path = ui
    token = login(client, "ivy")
    top = client.get("/api/cases").json()[0]
    url = f"/api/cases/{top['case_id']}/decision"
    body = {"action": "ban", "justification": "harvesting synthetic data at volume"}
    assert client.post(url, json=body).status_code == 403  # no token
    assert client.post(url, json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403
    short = client.post(url, json={"action": "ban", "justification": "bad"}, headers={"X-CSRF-Token": token})
    assert short.status_code == 400 and "justification" in short.json()["error"]
    unknown = client.post(
        url, json={"action": "nuke", "justification": body["justification"]}, headers={"X-CSRF-Token": token}
    )
    assert unknown.status_code == 400 and "action" in unknown.json()["error"]
    not_json = client.post(
        url, content=b"{", headers={"X-CSRF-Token": token, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert (
        client.post("/api/cases/999/decision", json=body, headers={"X-CSRF-Token": token}).status_code == 404
    )

    done = client.post(url, json=body, headers={"X-CSRF-Token": token})
    assert done.status_code == 200 and done.json()["status"] == "banned"
    subjects = {e.subject: e for e in state.entries()}
    for account in ("acct-d1", "acct-d2", "acct-d3"):
        assert subjects["account:" + account].action == "ban"
    assert subjects["payment:pf-evil"].case_id == top["case_id"]
    assert "ip:198.51.100.7" not in subjects  # raw IPs are shared by innocents behind proxies
    assert (tmp_path / "bans.jsonl").read_text().count("pf-evil") == 1
    audit = client.get("/api/audit").json()
    assert audit[0]["actor_user"] == "ivy" and audit[0]["action"] == "ban"

    cleared = client.post(
        url,
        json={"action": "clear", "justification": "a school's tutoring app, confirmed"},
        headers={"X-CSRF-Token": token},
    )
    assert cleared.status_code == 200
    # the accounts are exempt from holds now; the actor's indicator entries are gone
    assert {(e.subject, e.action) for e in state.entries()} == {
        ("account:acct-d1", "exempt"),
        ("account:acct-d2", "exempt"),
        ("account:acct-d3", "exempt"),
    }
    assert (tmp_path / "labels.jsonl").read_text().count('"cleared_by_review"') == 3

    client.cookies.clear()
    viewer_token = login(client, "vic")
    refused = client.post(url, json=body, headers={"X-CSRF-Token": viewer_token})
    assert refused.status_code == 403 and "viewer" in refused.json()["error"]


def test_bad_filters_are_clear_4xx(ui: tuple[TestClient, CaseStore, MemoryState, Path]) -> None:
    client = ui[0]
    login(client, "vic")
    assert client.get("/api/cases?min_risk=high").status_code == 400
    assert "status" in client.get("/api/cases?status=bogus").json()["error"]
    assert client.get("/cases/424242").status_code == 404
    assert client.get("/cases/notanumber").status_code == 404


def test_pages_forbid_scripts(ui: tuple[TestClient, CaseStore, MemoryState, Path]) -> None:
    client = ui[0]
    login(client, "vic")
    answer = client.get("/cases/1")
    assert answer.status_code == 200
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert "<script" not in answer.text


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/cases/3", "/cases/3"),
        ("//evil.example/x", "/"),
        ("https://evil.example", "/"),
        ("/\\evil", "/"),
        (None, "/"),
    ],
)
def test_login_redirects_stay_on_site(target: str | None, expected: str) -> None:
    assert _safe_next(target) == expected


def test_a_role_or_password_change_ends_the_user_s_sessions(
    ui: tuple[TestClient, CaseStore, MemoryState, Path],
) -> None:
    client, store, _state, _tmp = ui
    token = login(client, "ivy")
    assert client.get("/api/cases").status_code == 200
    store.add_user("ivy", PASSWORD, "viewer")  # demoted
    assert client.get("/api/cases").status_code == 401
    token = login(client, "ivy")
    refused = client.post(
        "/api/cases/1/decision",
        json={"action": "ban", "justification": "harvesting synthetic data at volume"},
        headers={"X-CSRF-Token": token},
    )
    assert refused.status_code == 403 and "viewer" in refused.json()["error"]


def test_a_copied_cookie_stops_working_at_logout(ui: tuple[TestClient, CaseStore, MemoryState, Path]) -> None:
    client = ui[0]
    token = login(client, "vic")
    copied = dict(client.cookies)
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    client.cookies.clear()
    for name, value in copied.items():
        client.cookies.set(name, value)
    assert client.get("/api/cases").status_code == 401


def test_the_json_api_takes_only_json(ui: tuple[TestClient, CaseStore, MemoryState, Path]) -> None:
    client = ui[0]
    token = login(client, "ivy")
    form = client.post(
        "/api/cases/1/decision",
        data={"action": "ban", "justification": "harvesting synthetic data at volume", "csrf_token": token},
        headers={"X-CSRF-Token": token},
    )
    assert form.status_code == 415
    # and a form-encoded CSRF token is not accepted by the API
    assert client.post("/api/cases/1/decision", data={"csrf_token": token}).status_code == 403


# ---- sessions kept in the case store --------------------------------------------------------------
@contextlib.contextmanager
def review_client(
    tmp_path: Path, bans: Path | None = None, trusted: str | None = None, **app_kw: Any
) -> Iterator[tuple[TestClient, ReviewApp]]:
    """The UI as one process started over the case store in `tmp_path` (again after a restart)."""
    store = CaseStore.open(str(tmp_path / "cases.db"))
    state = MemoryState(bans_file=bans or tmp_path / "bans.jsonl")
    review = ReviewApp(store, state, sync_s=3600, deliver_s=3600, **app_kw)
    app = review.asgi(secrets.token_urlsafe(16), forwarded_allow_ips=trusted)  # a new key per start
    try:
        with TestClient(app, base_url="http://testserver") as client:
            yield client, review
    finally:
        store.close()


def test_logout_survives_a_restart_of_the_ui(ui: tuple[TestClient, CaseStore, MemoryState, Path]) -> None:
    client, _store, _state, tmp_path = ui
    token = login(client, "vic")
    copied = dict(client.cookies)
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    with review_client(tmp_path) as (restarted, _review):
        for name, value in copied.items():
            restarted.cookies.set(name, value)
        answer = restarted.get("/", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        assert restarted.get("/api/cases").status_code == 401


def test_a_session_outlives_a_restart_until_it_ends(
    ui: tuple[TestClient, CaseStore, MemoryState, Path],
) -> None:
    client, _store, _state, tmp_path = ui
    login(client, "vic")
    with review_client(tmp_path) as (restarted, _review):
        for name, value in dict(client.cookies).items():
            restarted.cookies.set(name, value)
        assert restarted.get("/api/cases").status_code == 200


def test_the_cookie_is_only_a_random_session_id(ui: tuple[TestClient, CaseStore, MemoryState, Path]) -> None:
    client = ui[0]
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    answer = client.post(
        "/login",
        data={"username": "ivy", "password": PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    cookie = answer.headers["set-cookie"]
    assert re.match(r"dg_session=[A-Za-z0-9_-]{43};", cookie), cookie
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute.lower() in cookie.lower()
    value = client.cookies["dg_session"]
    assert "ivy" not in value and "investigator" not in value
    other = TestClient(client.app, base_url="http://testserver")
    other.get("/login")
    assert other.cookies["dg_login"] != client.cookies.get("dg_login")


def test_sessions_end_when_idle_or_too_old(tmp_path: Path) -> None:
    from distillguard.cases.schema import ui_sessions

    setup = CaseStore.open(str(tmp_path / "cases.db"))
    setup.add_user("vic", PASSWORD, "viewer")
    setup.close()
    with review_client(tmp_path, idle_s=600, absolute_s=3600) as (client, review):
        for column, age in (("last_seen_at", 601), ("expires_at", 0)):
            login(client, "vic")
            assert client.get("/api/cases").status_code == 200
            with review.store.engine.begin() as conn:
                conn.execute(
                    sa.update(ui_sessions).values({column: datetime.now(UTC) - timedelta(seconds=age + 1)})
                )
            assert client.get("/api/cases").status_code == 401, column
            client.cookies.clear()


def test_a_login_token_from_another_browser_is_refused(
    ui: tuple[TestClient, CaseStore, MemoryState, Path],
) -> None:
    client = ui[0]
    stolen = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert stolen is not None
    victim = TestClient(client.app, base_url="http://testserver")
    victim.get("/login")  # the victim's own pre-login cookie
    answer = victim.post(
        "/login", data={"username": "ivy", "password": PASSWORD, "csrf_token": stolen.group(1)}
    )
    assert answer.status_code == 403


# ---- lockout --------------------------------------------------------------------------------------
def _attempt(client: TestClient, user: str, password: str, address: str) -> int:
    page = client.get("/login", headers={"X-Forwarded-For": address})
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    return client.post(
        "/login",
        data={"username": user, "password": password, "csrf_token": token.group(1)},
        headers={"X-Forwarded-For": address},
        follow_redirects=False,
    ).status_code


def _users(tmp_path: Path) -> None:
    setup = CaseStore.open(str(tmp_path / "cases.db"))
    for user, role in (("ivy", "investigator"), ("vic", "viewer")):
        setup.add_user(user, PASSWORD, role)
    setup.close()


def test_rotating_addresses_do_not_evade_the_lockout_of_a_user(tmp_path: Path) -> None:
    """Behind a trusted proxy every guess comes from a new address; the user is locked anyway."""
    _users(tmp_path)
    with review_client(tmp_path, trusted="testclient") as (client, _review):
        for i in range(5):
            assert _attempt(client, "ivy", f"guess number {i}", f"203.0.113.{i + 1}") == 401
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        locked = client.post(
            "/login",
            data={"username": "ivy", "password": PASSWORD, "csrf_token": token.group(1)},
            headers={"X-Forwarded-For": "198.51.100.200"},  # a fresh address, the right password
        )
        assert locked.status_code == 429 and "try again in" in locked.text
        assert 0 < int(locked.headers["retry-after"]) <= 60
        # another user from the very addresses the guesses came from is not affected
        assert _attempt(client, "vic", PASSWORD, "203.0.113.1") == 303
    with review_client(tmp_path, trusted="testclient") as (client, _review):  # nor is it forgotten
        assert _attempt(client, "ivy", PASSWORD, "192.0.2.77") == 429


def test_one_address_trying_many_users_is_locked(tmp_path: Path) -> None:
    _users(tmp_path)
    limits = LoginLimits(user_failures=5, address_failures=8)
    with review_client(tmp_path, trusted="testclient", limits=limits) as (client, _review):
        for i in range(8):
            assert _attempt(client, f"user{i}", "a wrong password", "198.51.100.7") == 401
        assert _attempt(client, "ivy", PASSWORD, "198.51.100.7") == 429
        assert _attempt(client, "ivy", PASSWORD, "198.51.100.8") == 303


def test_a_forwarded_for_header_is_ignored_unless_its_proxy_is_trusted(tmp_path: Path) -> None:
    """Without --forwarded-allow-ips, a client writing its own X-Forwarded-For is still one address."""
    _users(tmp_path)
    limits = LoginLimits(user_failures=50, address_failures=4)
    with review_client(tmp_path, limits=limits) as (client, _review):
        for i in range(4):
            assert _attempt(client, f"user{i}", "a wrong password", f"203.0.113.{i + 1}") == 401
        assert _attempt(client, "ivy", PASSWORD, "192.0.2.1") == 429


# ---- decisions: recorded, then delivered from the outbox ------------------------------------------
def test_a_decision_is_recorded_while_enforcement_is_down_and_delivered_later(tmp_path: Path) -> None:
    import_scan(CaseStore.open(str(tmp_path / "cases.db")), write_scan(tmp_path / "scan"))
    _users(tmp_path)
    bans = tmp_path / "shared" / "bans.jsonl"  # not mounted yet: every write fails
    with review_client(tmp_path, bans=bans) as (client, review):
        token = login(client, "ivy")
        top = client.get("/api/cases").json()[0]
        answer = client.post(
            f"/api/cases/{top['case_id']}/decision",
            json={"action": "ban", "justification": "harvesting synthetic data at volume"},
            headers={"X-CSRF-Token": token},
        )
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["status"] == "banned" and body["delivery"] == "pending" and body["pending"] > 0
        assert "bans.jsonl" in body["delivery_error"]
        assert client.get("/api/audit").json()[0]["action"] == "ban"  # the record came first
        page = client.get(f"/cases/{top['case_id']}")
        assert 'id="enforcement-pending"' in page.text

        bans.parent.mkdir()
        delivered = client.portal.call(review.deliver)  # type: ignore[union-attr]
        assert (delivered.delivered, delivered.pending) == (body["pending"], 0)
        client.portal.call(review.deliver)  # type: ignore[union-attr]
        assert 'id="enforcement-pending"' not in client.get(f"/cases/{top['case_id']}").text
    subjects = [json.loads(line)["subject"] for line in bans.read_text().splitlines()]
    assert len(subjects) == len(set(subjects)) == body["pending"]
    assert {"account:acct-d1", "account:acct-d2", "account:acct-d3", "payment:pf-evil"} <= set(subjects)


# ---- sharing with peers (intel) --------------------------------------------------------------
def test_sharing_page_and_withhold_switch(ui: tuple[TestClient, CaseStore, MemoryState, Path]) -> None:
    client, store, _state, _tmp = ui
    assert client.get("/intel", follow_redirects=False).status_code == 303  # login first
    token = login(client, "ivy")
    page = client.get("/intel")
    assert page.status_code == 200 and "No indicators received from peers yet" in page.text
    case_page = client.get("/cases/1")
    assert (
        'id="withhold-form"' in case_page.text and "Not shared: only banned and throttled" in case_page.text
    )
    url = "/api/cases/1/sharing"
    assert client.post(url, json={"withhold": True}).status_code == 403  # no CSRF token
    headers = {"X-CSRF-Token": token}
    assert client.post(url, json={"withhold": "yes"}, headers=headers).status_code == 400
    assert (
        client.post(url, content=b"{", headers={**headers, "Content-Type": "application/json"}).status_code
        == 400
    )
    assert (
        client.post(url, content=b"withhold=1", headers={**headers, "Content-Type": "text/plain"}).status_code
        == 415
    )
    assert client.post("/api/cases/999/sharing", json={"withhold": True}, headers=headers).status_code == 404
    assert client.post(url, json={"withhold": True}, headers=headers).json() == {
        "case_id": 1,
        "withhold": True,
    }
    assert store.case(1)["withhold"] is True
    assert "Withheld from sharing" in client.get("/cases/1").text
    form = client.post(
        "/cases/1/sharing", data={"csrf_token": token, "withhold": "0"}, follow_redirects=False
    )
    assert form.status_code == 303 and store.case(1)["withhold"] is False
    assert [e["action"] for e in store.audit(1)][:2] == ["share", "withhold"]


def test_a_viewer_cannot_withhold(ui: tuple[TestClient, CaseStore, MemoryState, Path]) -> None:
    client, store, _state, _tmp = ui
    token = login(client, "vic")
    assert 'id="withhold-form"' not in client.get("/cases/1").text
    assert client.post("/cases/1/sharing", data={"csrf_token": token, "withhold": "1"}).status_code == 403
    assert store.case(1)["withhold"] is False


def test_a_peer_s_hold_shows_the_peer(ui: tuple[TestClient, CaseStore, MemoryState, Path]) -> None:
    from distillguard.cases.evidence import sync_holds
    from distillguard.enforcement.state import Ban

    client, store, _state, _tmp = ui
    hold = Ban(
        subject="account:acct-new",
        reason="matches indicators shared by peer lab-<b>a</b>: payment fingerprint; held pending review",
        source="intel:lab-<b>a</b>",
        hold=True,
    )
    (opened,) = sync_holds(store, [hold])
    login(client, "vic")
    page = client.get(f"/cases/{opened.case_id}").text
    assert 'id="from-peer"' in page and "lab-&lt;b&gt;a&lt;/b&gt;" in page and "<b>a</b>" not in page
