"""Fixtures for the gateway tests: the local model server and `distillguard serve` as real processes."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.gateway.gateway_processes import (
    BIN,
    CALLERS,
    RunningGateway,
    free_port,
    start_upstream,
    stop,
    wait_http,
)


@pytest.fixture(scope="session")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.yaml"
    lines = ["keys:"]
    for name, (key, account, tier, actor) in CALLERS.items():
        lines += [
            f"  - sha256: {hashlib.sha256(key.encode()).hexdigest()}",
            f"    key_id: key-{name}",
            f"    account_id: {account}",
            f"    tier: {tier}",
        ]
        if actor:
            lines.append(f"    actor: {actor}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def upstream() -> Iterator[str]:
    proc, url = start_upstream(0.0)
    yield url
    stop(proc)


@pytest.fixture(scope="session")
def paced_upstream() -> Iterator[str]:
    """Streams at 200 tokens/s: slow enough to see chunks arrive one by one."""
    proc, url = start_upstream(200.0)
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def start_gateway(
    tmp_path_factory: pytest.TempPathFactory, keys_file: Path
) -> Iterator[Callable[..., RunningGateway]]:
    """Starts `distillguard serve` processes; all of them stop when the test module ends."""
    started: list[RunningGateway] = []
    tmp_path = tmp_path_factory.mktemp("gateway")

    def start(
        upstream_url: str, *extra: str, log_dir: Path | None = None, env: dict[str, str] | None = None
    ) -> RunningGateway:
        port = free_port()
        log_dir = log_dir or tmp_path / f"log-{port}"
        stderr = tmp_path / f"gateway-{port}.err"
        args = [
            str(BIN / "distillguard"),
            "serve",
            "--upstream",
            upstream_url,
            "--keys",
            str(keys_file),
            "--log-dir",
            str(log_dir),
            "--port",
            str(port),
            "--signals",
            "rules",
            *extra,
        ]
        proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=stderr.open("wb"), env={**os.environ, **(env or {})}
        )
        gateway = RunningGateway(f"http://127.0.0.1:{port}", log_dir, proc, stderr, args)
        started.append(gateway)
        wait_http(gateway.url + "/healthz", proc)
        return gateway

    yield start
    for gateway in started:
        stop(gateway.proc)
