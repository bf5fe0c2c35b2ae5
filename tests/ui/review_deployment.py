"""The review-UI tests' deployment: a scan output folder, a case store, users, the real gateway
(with its local model server), the real `distillguard ui`, and Debian's Chromium via Playwright."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))

from tests.gateway.gateway_processes import BIN, free_port, start_upstream, stop, wait_http

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORDS = {"ivy": "ivy-investigates-1", "vic": "vic-only-views-1", "ada": "ada-administers-1"}
ROLES = {"ivy": "investigator", "vic": "viewer", "ada": "admin"}

# name -> (api key, account, payment fingerprint)
KEYS = {
    "d1": ("sk-d1-00000000000001", "acct-d1", "pf-evil"),
    "d2": ("sk-d2-00000000000002", "acct-d2", "pf-evil"),
    "d3": ("sk-d3-00000000000003", "acct-d3", "pf-other"),
    "fresh": ("sk-fresh-000000000004", "acct-fresh", "pf-evil"),  # a new account, same card
    "good": ("sk-good-0000000000005", "acct-good", "pf-good"),
    "xss": ("sk-xss-00000000000006", "acct-xss", "pf-xss"),
}


def run_cli(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(BIN / "distillguard"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert done.returncode == 0, f"distillguard {' '.join(args)}: {done.stderr}"
    return done.stdout


def write_scan(folder: Path) -> Path:
    """A scan output folder as `distillguard scan` writes it: one three-account actor sharing a
    payment fingerprint and a template, one lone suspicious account, one benign account."""
    folder.mkdir(parents=True, exist_ok=True)
    reason = {
        "signal": "generation_request",
        "score": 0.97,
        "detail": "synthetic-data requests on 91% of calls",
    }
    verdicts = [
        {
            "account_id": a,
            "risk": r,
            "verdict": v,
            "cluster_id": c,
            "first_flagged_at": "2026-11-02T10:00:00Z",
            "calls_to_flag": 12,
            "reasons": [reason],
        }
        for a, r, v, c in [
            ("acct-d1", 0.97, "distiller", "actor-evil"),
            ("acct-d2", 0.95, "distiller", "actor-evil"),
            ("acct-d3", 0.62, "suspicious", "actor-evil"),
            ("acct-lone", 0.7, "suspicious", None),
            ("acct-good", 0.02, "benign", None),
        ]
    ]
    (folder / "accounts_out.jsonl").write_text("".join(json.dumps(v) + "\n" for v in verdicts))
    cluster = {
        "cluster_id": "actor-evil",
        "accounts": ["acct-d1", "acct-d2", "acct-d3"],
        "size": 3,
        "risk": 0.98,
        "verdict": "distiller",
        "reasons": [reason],
        "known_actors": [],
        "indicators": {"payment": ["pf-evil"], "template": ["5f0c1e2d3a4b"], "ip": ["198.51.100.7"]},
        "n_edges": 2,
        "edges": [
            {
                "a": "acct-d1",
                "b": "acct-d2",
                "kind": "payment",
                "weight": 1.0,
                "evidence": "same payment fingerprint pf-evil",
            },
            {
                "a": "acct-d2",
                "b": "acct-d3",
                "kind": "template",
                "weight": 0.6,
                "evidence": "same rare template",
            },
        ],
    }
    (folder / "clusters.jsonl").write_text(json.dumps(cluster) + "\n")
    evidence = [
        {
            "account_id": a,
            "calls": 300,
            "daily": {"2026-11-01": 100, "2026-11-02": 200},
            "hours": [12] * 24,
            "signal_rates": {"generation_request": 0.91, "template": 0.99},
            "examples": [
                {
                    "event_id": f"ev-{a}-1",
                    "ts": "2026-11-02T10:00:00+00:00",
                    "endpoint": "/v1/chat/completions",
                    "system": "",
                    "prompt": f"Generate 20 diverse training examples about topic {a}",
                    "user_agent": "python-httpx/0.27",
                    "end_user": "",
                }
            ],
        }
        for a in ("acct-d1", "acct-d2", "acct-d3", "acct-lone")
    ]
    (folder / "evidence.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evidence))
    return folder


def write_keys(path: Path) -> Path:
    lines = ["keys:"]
    for name, (key, account, payment) in KEYS.items():
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
class Deployment:
    gateway: str
    ui: str
    db: str
    log_dir: Path
    bans: Path


@pytest.fixture(scope="module", params=["bans-file", "redis"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Everything of a deployment, started as the README says: the gateway and the UI share the
    enforcement list, either the watched ban-list file (one machine) or Redis (replicas; a fresh
    key prefix per run); the case store is a SQLite file."""
    root = tmp_path_factory.mktemp("review")
    state: list[str] = []
    if request.param == "redis":
        state = ["--state", "redis://127.0.0.1:6379/0", "--state-prefix", f"dg-test-{uuid.uuid4().hex}:"]
    db = str(root / "cases.db")
    bans, log_dir = root / "bans.jsonl", root / "gateway-log"
    run_cli("cases", "import", "--db", db, "--scan", str(write_scan(root / "scan")))
    for user, password in PASSWORDS.items():
        run_cli(
            "cases",
            "add-user",
            user,
            "--role",
            ROLES[user],
            "--db",
            db,
            "--password-env",
            "DG_TEST_PW",
            env={"DG_TEST_PW": password},
        )
    upstream, upstream_url = start_upstream(0.0)
    gw_port, ui_port = free_port(), free_port()
    gateway = subprocess.Popen(
        [
            str(BIN / "distillguard"),
            "serve",
            "--upstream",
            upstream_url,
            "--keys",
            str(write_keys(root / "keys.yaml")),
            "--log-dir",
            str(log_dir),
            "--port",
            str(gw_port),
            "--signals",
            "rules",
            "--bans",
            str(bans),
            *state,
        ],
        stdout=subprocess.DEVNULL,
        stderr=(root / "gateway.err").open("wb"),
    )
    ui = subprocess.Popen(
        [
            str(BIN / "distillguard"),
            "ui",
            "--db",
            db,
            "--port",
            str(ui_port),
            "--bans",
            str(bans),
            "--feedback-labels",
            str(root / "reviewed_labels.jsonl"),
            *state,
        ],
        stdout=subprocess.DEVNULL,
        stderr=(root / "ui.err").open("wb"),
    )
    try:
        wait_http(f"http://127.0.0.1:{gw_port}/healthz", gateway)
        wait_http(f"http://127.0.0.1:{ui_port}/login", ui)
        yield Deployment(f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{ui_port}", db, log_dir, bans)
    finally:
        for proc in (ui, gateway, upstream):
            stop(proc)
        if state:
            import redis

            client = redis.Redis.from_url(state[1])
            for key in client.scan_iter(match=state[3] + "*"):
                client.delete(key)
            client.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
