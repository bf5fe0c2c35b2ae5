"""The review UI's HTTP surface through Starlette's test client: authentication on every route,
roles, CSRF, clear 4xx errors for bad input, and a decision's enforcement entries."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from review_deployment import write_scan
from starlette.testclient import TestClient

from distillguard.cases.evidence import import_scan
from distillguard.cases.store import CaseStore
from distillguard.enforcement.state import MemoryState
from distillguard.ui.app import ReviewApp, _safe_next

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
