"""Helpers for the gateway tests: start the local model server and `distillguard serve` as real
processes on free loopback ports, stop them by process id, read the call log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# name -> (api key, account, tier, actor)
CALLERS = {
    "free": ("sk-free-0123456789", "acct-free", "free", "actor-free"),
    "free2": ("sk-free2-0123456789", "acct-free2", "free", "actor-free"),  # same actor as "free"
    "enterprise": ("sk-ent-0123456789", "acct-ent", "enterprise", None),
    "sanctioned": ("sk-sanct-0123456789", "acct-sanctioned", "enterprise", None),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)  # any answer: the server is up (healthz may say degraded)
            return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def start_upstream(
    token_rate: float = 0.0, record: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """The local model server; with `record`, it appends every request it receives to that file."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distillguard.gateway.local_upstream",
            "--port",
            str(port),
            "--token-rate",
            str(token_rate),
            *(["--record", str(record)] if record else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/v1/models", proc)
    return proc, url


@dataclass
class RunningGateway:
    url: str
    log_dir: Path
    proc: subprocess.Popen[bytes]
    stderr: Path
    args: list[str] = field(default_factory=list)

    def key(self, name: str) -> str:
        return CALLERS[name][0]


def recorded(path: Path) -> list[dict]:
    """What a recording upstream received (and the ends of its streams)."""
    import json

    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def logged_calls(log_dir: Path) -> list[dict]:
    """Every record in a gateway's log: live segments, archived segments (not the Parquet copy)."""
    import gzip
    import json

    records = []
    for path in sorted(log_dir.glob("calls-*.jsonl")):
        records += [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    for path in sorted((log_dir / "archive").glob("*.jsonl.gz")) if (log_dir / "archive").is_dir() else []:
        records += [
            json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip()
        ]
    return records
