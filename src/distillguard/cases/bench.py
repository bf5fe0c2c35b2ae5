"""`distillguard bench review`: how long a reviewer's decision takes to reach the gateway.

A real deployment on loopback (local model server, `distillguard serve`, `distillguard ui`, a case
store holding one three-account actor): log in, ban the actor through the UI's JSON API, and time
until the gateway refuses the actor's account; then call from a fresh account with the actor's
payment fingerprint and time until the UI lists the hold's linked case. Both transports side by
side in one run: the watched ban-list file (one machine) and Redis (replicas).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click
import httpx

from distillguard.gateway.bench import Server, _free_port

PASSWORD = "bench-review-password"
ACTOR = ("bench-a1", "bench-a2", "bench-a3")
KEYS = {account: f"sk-bench-review-{i:016d}" for i, account in enumerate((*ACTOR, "bench-fresh"))}


def _write_deployment(root: Path) -> tuple[Path, Path]:
    """A scan output folder with one banned-to-be actor, and the gateway's keys file."""
    scan = root / "scan"
    scan.mkdir(parents=True)
    reason = {"signal": "generation_request", "score": 0.97, "detail": "synthetic-data requests"}
    verdicts = [
        {
            "account_id": a,
            "risk": 0.97,
            "verdict": "distiller",
            "cluster_id": "bench-actor",
            "first_flagged_at": None,
            "calls_to_flag": 5,
            "reasons": [reason],
        }
        for a in ACTOR
    ]
    (scan / "accounts_out.jsonl").write_text("".join(json.dumps(v) + "\n" for v in verdicts))
    cluster = {
        "cluster_id": "bench-actor",
        "accounts": list(ACTOR),
        "risk": 0.98,
        "verdict": "distiller",
        "reasons": [reason],
        "indicators": {"payment": ["pf-bench"]},
        "edges": [],
    }
    (scan / "clusters.jsonl").write_text(json.dumps(cluster) + "\n")
    lines = ["keys:"]
    for account, key in KEYS.items():
        lines += [
            f"  - sha256: {hashlib.sha256(key.encode()).hexdigest()}",
            f"    account_id: {account}",
            "    payment_fingerprint: pf-bench",
        ]
    keys = root / "keys.yaml"
    keys.write_text("\n".join(lines) + "\n")
    return scan, keys


def _cli(*args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "distillguard"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if done.returncode != 0:
        raise click.ClickException(f"distillguard {args[0]} {args[1]}: {done.stderr.strip()}")


def _once(root: Path, transport: str, redis_url: str) -> tuple[float, float]:
    scan, keys = _write_deployment(root)
    db, bans = str(root / "cases.db"), root / "bans.jsonl"
    _cli("cases", "import", "--db", db, "--scan", str(scan))
    _cli(
        "cases",
        "add-user",
        "bench",
        "--role",
        "investigator",
        "--db",
        db,
        "--password-env",
        "DG_BENCH_PW",
        env={"DG_BENCH_PW": PASSWORD},
    )
    state = (
        ["--state", redis_url, "--state-prefix", f"dgbench-{uuid.uuid4().hex[:8]}:"]
        if transport == "redis"
        else []
    )
    binary = str(Path(sys.executable).parent / "distillguard")
    port = _free_port()
    servers = [
        Server(
            "upstream",
            [sys.executable, "-m", "distillguard.gateway.local_upstream", "--port", str(port)],
            f"http://127.0.0.1:{port}",
        )
    ]
    try:
        servers[0].wait("/v1/models", 30)
        port = _free_port()
        gateway = Server(
            "gateway",
            [
                binary,
                "serve",
                "--upstream",
                servers[0].url,
                "--keys",
                str(keys),
                "--log-dir",
                str(root / "log"),
                "--port",
                str(port),
                "--signals",
                "rules",
                "--bans",
                str(bans),
                "--workers",
                "2" if state else "1",
                *state,
            ],
            f"http://127.0.0.1:{port}",
            log=root / "gateway.log",
        )
        servers.append(gateway)
        port = _free_port()
        ui = Server(
            "ui",
            [binary, "ui", "--db", db, "--port", str(port), "--bans", str(bans), *state],
            f"http://127.0.0.1:{port}",
            log=root / "ui.log",
        )
        servers.append(ui)
        gateway.wait("/healthz", 60)
        ui.wait("/login", 60)

        def call(account: str) -> int:
            body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
            headers = {"Authorization": "Bearer " + KEYS[account]}
            return httpx.post(
                gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=10
            ).status_code

        with httpx.Client(base_url=ui.url, timeout=10) as client:
            token = _token(client.get("/login").text)
            client.post(
                "/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token, "next": "/"}
            )
            token = _token(client.get("/").text)
            case_id = client.get("/api/cases").json()[0]["case_id"]
            if call(ACTOR[0]) != 200:
                raise click.ClickException("the actor's account was refused before the decision")
            started = time.perf_counter()
            answer = client.post(
                f"/api/cases/{case_id}/decision",
                headers={"X-CSRF-Token": token},
                json={"action": "ban", "justification": "bench review: delivery latency"},
            )
            if answer.status_code != 200:
                raise click.ClickException(f"decision refused: {answer.text}")
            banned = _until(lambda: call(ACTOR[0]) == 403, started)
            if call("bench-fresh") != 403:
                raise click.ClickException("the fresh account with the actor's card was not held")
            held = time.perf_counter()
            linked = _until(lambda: "bench-fresh" in json.dumps(client.get("/api/cases").json()), held)
        return banned, linked
    finally:
        for server in reversed(servers):
            server.stop()
        if state:
            import redis

            keyspace = redis.Redis.from_url(redis_url)
            for key in keyspace.scan_iter(match=state[3] + "*"):
                keyspace.delete(key)
            keyspace.close()


def _token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if found is None:
        raise click.ClickException("no CSRF token on the UI's page")
    return found.group(1)


def _until(done: Any, started: float, timeout: float = 30.0) -> float:
    while not done():
        if time.perf_counter() - started > timeout:
            raise click.ClickException(f"not delivered within {timeout:.0f} s")
        time.sleep(0.01)
    return time.perf_counter() - started


@click.command("review")
@click.option("--runs", default=5, show_default=True, help="Decisions timed per transport.")
@click.option("--redis", "redis_url", default="redis://127.0.0.1:6379/0", show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/bench/review"),
    show_default=True,
)
def bench_review(runs: int, redis_url: str, out: Path) -> None:
    """Review decision → gateway enforcement latency, bans file next to Redis."""
    if out.exists():
        shutil.rmtree(out)
    rows = []
    for transport in ("bans-file", "redis"):
        times = [_once(out / f"{transport}-{i}", transport, redis_url) for i in range(runs)]
        banned, linked = [t[0] * 1000 for t in times], [t[1] * 1000 for t in times]
        rows.append(
            (transport, statistics.median(banned), max(banned), statistics.median(linked), max(linked))
        )
    click.echo(
        f"\n| transport ({runs} runs) | ban → gateway refuses, median | max | hold → linked case listed, median | max |"
    )
    click.echo("|---|---|---|---|---|")
    for transport, b50, bmax, l50, lmax in rows:
        click.echo(f"| {transport} | {b50:.0f} ms | {bmax:.0f} ms | {l50:.0f} ms | {lmax:.0f} ms |")
