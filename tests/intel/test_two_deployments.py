"""Two deployments on this machine, end to end in Debian's Chromium. Each has its own case store,
review UI, gateway (with a local model server) and TAXII server on loopback ports; A's enforcement
list is a bans file, B's is Redis. An investigator bans an actor in A's UI; B pulls A's collection;
a new account at B with the actor's card is held on its very first call and B's case names A; A's
UI shows that B fetched the case; withholding the case in A's UI revokes it, and B's next pull
lifts the watch entry."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import stix2

from tests.intel.conftest import KEYS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))

from distillguard.intel.publish import default_collection
from tests.gateway.gateway_processes import BIN, free_port, start_upstream, stop, wait_http
from tests.ui.review_deployment import CHROMIUM, CHROMIUM_ARGS, write_scan

pytestmark = pytest.mark.slow

PASSWORD = "investigates-all-day-1"
PEER_SECRET = "lab-b-reads-lab-a-0123456789"
REDIS = os.environ.get("DISTILLGUARD_TEST_REDIS", "redis://127.0.0.1:6379/0")
# B's callers: (api key, account, payment fingerprint). pf-evil is the card A's actor used.
B_KEYS = {
    "returning": ("sk-b-returning-000000001", "acct-b-new", "pf-evil"),
    "good": ("sk-b-good-00000000000002", "acct-b-good", "pf-good"),
    "later": ("sk-b-later-0000000000003", "acct-b-later", "pf-evil"),
    **{f"probe{i}": (f"sk-b-probe-{i:015d}", f"acct-b-probe{i}", "pf-evil") for i in range(40)},
}
A_KEYS = {"d1": ("sk-a-d1-000000000000001", "acct-d1", "pf-evil")}


def cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(BIN / "distillguard"), *args], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, f"distillguard {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


def keys_file(path: Path, keys: dict[str, tuple[str, str, str]]) -> Path:
    lines = ["keys:"]
    for name, (key, account, payment) in keys.items():
        lines += [
            f"  - sha256: {hashlib.sha256(key.encode()).hexdigest()}",
            f"    key_id: key-{name}",
            f"    account_id: {account}",
            "    tier: free",
            f"    payment_fingerprint: {payment}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Deployments:
    a_ui: str
    a_gateway: str
    a_taxii: str
    b_ui: str
    b_gateway: str
    a_db: str
    b_db: str
    env: dict[str, str]
    b_state: list[str]
    root: Path


def _community(root: Path) -> Path:
    path = root / "community.yaml"
    secret = base64.b64encode(KEYS.secrets["k1"]).decode()
    path.write_text(f"keys:\n  - id: k1\n    secret: {secret}\n    current: true\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def deployments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployments]:
    import redis

    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except redis.RedisError as error:
        pytest.fail(f"no Redis at {REDIS} ({error}); start one (`make test` does)")
    root = tmp_path_factory.mktemp("two")
    env = {
        **os.environ,
        "DISTILLGUARD_INTEL_KEYS_FILE": str(_community(root)),
        "DG_PW": PASSWORD,
        "DG_PEER": PEER_SECRET,
    }
    a_db, b_db = str(root / "a.db"), str(root / "b.db")
    b_state = ["--state", REDIS, "--state-prefix", f"dg-intel-{uuid.uuid4().hex}:"]
    cli("cases", "import", "--db", a_db, "--scan", str(write_scan(root / "scan")), env=env)
    for db in (a_db, b_db):
        cli(
            "cases",
            "add-user",
            "ivy",
            "--role",
            "investigator",
            "--db",
            db,
            "--password-env",
            "DG_PW",
            env=env,
        )
    cli(
        "intel",
        "add-peer",
        "lab-b",
        "--db",
        a_db,
        "--deployment",
        "lab-a",
        "--secret-env",
        "DG_PEER",
        env=env,
    )
    upstream, upstream_url = start_upstream(0.0)
    ports = {name: free_port() for name in ("a_ui", "a_gw", "a_taxii", "b_ui", "b_gw")}

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(BIN / "distillguard"), *args],
            stdout=subprocess.DEVNULL,
            stderr=(root / f"{name}.err").open("wb"),
            env=env,
        )

    def gateway(name: str, keys: Path, port: int, *state: str) -> subprocess.Popen[bytes]:
        return start(
            name,
            "serve",
            "--upstream",
            upstream_url,
            "--keys",
            str(keys),
            "--log-dir",
            str(root / f"{name}-log"),
            "--port",
            str(port),
            "--signals",
            "rules",
            *state,
        )

    procs = [
        start("a_ui", "ui", "--db", a_db, "--port", str(ports["a_ui"]), "--bans", str(root / "a-bans.jsonl")),
        gateway(
            "a_gw",
            keys_file(root / "a-keys.yaml", A_KEYS),
            ports["a_gw"],
            "--bans",
            str(root / "a-bans.jsonl"),
        ),
        start(
            "a_taxii",
            "intel",
            "serve",
            "--db",
            a_db,
            "--deployment",
            "lab-a",
            "--port",
            str(ports["a_taxii"]),
            "--publish-every",
            "0.5",
        ),
        start("b_ui", "ui", "--db", b_db, "--port", str(ports["b_ui"]), *b_state),
        gateway("b_gw", keys_file(root / "b-keys.yaml", B_KEYS), ports["b_gw"], *b_state),
    ]
    try:
        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        for proc, probe in zip(procs, ("a_ui", "a_gw", "a_taxii", "b_ui", "b_gw"), strict=True):
            path = {"a_ui": "/login", "b_ui": "/login", "a_taxii": "/taxii2/"}.get(probe, "/healthz")
            wait_http(url[probe] + path, proc)
        yield Deployments(
            url["a_ui"], url["a_gw"], url["a_taxii"], url["b_ui"], url["b_gw"], a_db, b_db, env, b_state, root
        )
    finally:
        for proc in [*procs, upstream]:
            stop(proc)
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(match=b_state[3] + "*"):
            client.delete(key)
        client.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def login(browser: Any, base: str) -> Any:
    page = browser.new_context(base_url=base).new_page()
    page.goto("/")
    page.fill("input[name=username]", "ivy")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    assert page.locator("#whoami").inner_text() == "ivy"
    return page


def chat(gateway: str, who: str, keys: dict[str, tuple[str, str, str]] = B_KEYS) -> httpx.Response:
    body = {"model": "local", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    headers = {"Authorization": f"Bearer {keys[who][0]}"}
    return httpx.post(gateway + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def pull(d: Deployments) -> str:
    return cli(
        "intel",
        "pull",
        d.a_taxii + "/distillguard/",
        "--collection",
        default_collection("lab-a"),
        "--peer",
        "lab-a",
        "--db",
        d.b_db,
        *d.b_state,
        "--user",
        "lab-b",
        "--password-env",
        "DG_PEER",
        env=d.env,
    )


def taxii_indicators(d: Deployments) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{d.a_taxii}/distillguard/collections/{default_collection('lab-a')}/objects/",
        params={"match[type]": "indicator"},
        auth=("lab-b", PEER_SECRET),
        headers={"Accept": "application/taxii+json;version=2.1"},
    )
    objects: list[dict[str, Any]] = answer.json().get("objects", [])
    return objects


def test_a_ban_at_a_holds_the_actor_s_new_account_at_b(browser: Any, deployments: Deployments) -> None:
    d = deployments
    assert chat(d.a_gateway, "d1", A_KEYS).status_code == 200
    assert chat(d.b_gateway, "good").status_code == 200

    # an investigator at A bans the actor in A's review UI
    page_a = login(browser, d.a_ui)
    page_a.locator("#queue tbody tr.case-row", has_text="3 linked accounts").locator("a").first.click()
    page_a.check("input[name=action][value=ban]")
    page_a.fill(
        "textarea[name=justification]", "Three accounts, one card, synthetic-data harvesting (DG-31)."
    )
    page_a.click("#decide-submit")
    assert page_a.locator("#case-status").inner_text() == "banned"
    case_a = page_a.url.rsplit("/", 1)[1]
    assert wait_for(lambda: chat(d.a_gateway, "d1", A_KEYS).status_code == 403, 10)

    # A's TAXII server publishes the decision; B pulls it into its watch list (Redis)
    assert wait_for(lambda: any(o["name"].startswith("payment") for o in taxii_indicators(d)))
    pulled = pull(d)
    assert "rejected: none" in pulled and "watch entries: 1 written" in pulled

    # B's gateway replicas pick the entry up; probes (fresh accounts on the same card) say when
    probes = iter(range(40))
    assert wait_for(lambda: chat(d.b_gateway, f"probe{next(probes)}").status_code == 403, 15)
    first = chat(d.b_gateway, "returning")  # this account's very first call
    assert first.status_code == 403 and first.json()["error"]["code"] == "account_held"
    assert chat(d.b_gateway, "good").status_code == 200

    # B's review UI: a case for the held account, naming peer lab-a; B's Sharing page lists A's indicator
    page_b = login(browser, d.b_ui)

    def listed() -> bool:
        page_b.goto("/?status=open")
        return "acct-b-new" in page_b.locator("#queue").inner_text()

    assert wait_for(listed, 15)
    row = page_b.locator("#queue tr.case-row", has_text="acct-b-new")
    assert "peer lab-a" in row.inner_text() and "intel" in row.inner_text()
    row.locator("a").first.click()
    assert page_b.locator("#from-peer .peer").inner_text() == "lab-a"
    assert page_b.locator("#case-status").inner_text() == "open"  # held for review, not banned
    page_b.goto("/intel")
    table = page_b.locator("table.peer-indicators[data-peer='lab-a']")
    assert "payment fingerprint" in table.inner_text() and "watching" in table.inner_text()
    assert "rejected none" in page_b.locator("#pulls").inner_text()

    # A's review UI: which of its cases were shared, and that lab-b fetched this one
    page_a.goto("/intel")
    published = page_a.locator("#published tr.published-row", has_text=f"#{case_a}")
    assert "lab-b" in published.locator(".fetched-by").inner_text()
    page_a.goto(f"/cases/{case_a}")
    assert "lab-b" in page_a.locator("#shared-state").inner_text()

    # the same decision as a bundle file: strict STIX 2.1, no raw value of the case in it
    out = d.root / "bundle.json"
    cli("intel", "export", "--db", d.a_db, "--deployment", "lab-a", "--out", str(out), env=d.env)
    text = out.read_text()
    parsed = stix2.parse(text, allow_custom=False)
    assert sum(1 for o in parsed.objects if o.type == "indicator") == 1
    for raw in (
        "pf-evil",
        "acct-d1",
        "acct-d2",
        "acct-d3",
        "198.51.100.7",
        "5f0c1e2d3a4b",
        "actor-evil",
        "Generate 20",
    ):
        assert raw not in text

    # withholding the case at A revokes it; B's next pull lifts the watch entry
    page_a.click("#withhold-submit")
    assert "Withheld from sharing" in page_a.locator("#shared-state").inner_text()
    assert wait_for(lambda: all(o.get("revoked") for o in taxii_indicators(d)))
    assert "1 lifted" in pull(d)
    page_b.goto("/intel")
    assert "revoked" in page_b.locator("table.peer-indicators[data-peer='lab-a']").inner_text()
    time.sleep(2.5)  # B's replicas re-read the list (Redis poll 2 s)
    assert chat(d.b_gateway, "later").status_code == 200  # the card alone no longer holds anyone
    for page in (page_a, page_b):
        page.context.close()
