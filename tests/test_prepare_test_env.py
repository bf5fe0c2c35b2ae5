"""scripts/prepare-test-env.sh, the machine's side of `make test` and `.ci/run`: silent when every
piece is there, and naming each missing piece with the command that provides it otherwise. Run
with --check, which installs and starts nothing, against pieces the test points it at."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare-test-env.sh"


@pytest.fixture
def two_listening_ports() -> Iterator[tuple[int, int]]:
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    try:
        yield servers[0].getsockname()[1], servers[1].getsockname()[1]
    finally:
        for server in servers:
            server.close()


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as server:
        return int(server.getsockname()[1])  # closed again when the test uses it


def _check(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--check"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_silent_when_every_piece_is_there(two_listening_ports: tuple[int, int]) -> None:
    redis_port, pg_port = two_listening_ports
    run = _check(
        DISTILLGUARD_CHROMIUM="/bin/sh",
        DISTILLGUARD_JAVA="sh",
        DISTILLGUARD_REDIS_PORT=str(redis_port),
        DISTILLGUARD_PG_PORT=str(pg_port),
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_names_each_missing_piece_and_how_to_provide_it(tmp_path: Path) -> None:
    run = _check(
        DISTILLGUARD_CHROMIUM=str(tmp_path / "no-chromium"),
        DISTILLGUARD_JAVA="no-such-java",
        DISTILLGUARD_REDIS_PORT=str(_closed_port()),
        DISTILLGUARD_PG_PORT=str(_closed_port()),
    )
    assert run.returncode == 1
    assert (
        f"Chromium at {tmp_path / 'no-chromium'}" in run.stderr
        and "apt-get install -y chromium" in run.stderr
    )
    assert "Java (no-such-java, for Spark)" in run.stderr and "openjdk-17-jre-headless" in run.stderr
    assert "Redis on 127.0.0.1:" in run.stderr and "redis-server --daemonize yes" in run.stderr
    assert "PostgreSQL on 127.0.0.1:" in run.stderr and "pg_ctlcluster" in run.stderr


def test_unknown_argument_is_refused() -> None:
    run = subprocess.run(
        ["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 2 and "usage:" in run.stderr
