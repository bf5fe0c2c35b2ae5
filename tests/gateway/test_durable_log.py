"""The call log's promise: after `kill -9` of the gateway under load, every call whose response the
client received in full is in the log, and a restart rolls the dead process's segment into the
Parquet store."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pyarrow.parquet as pq
import pytest

from distillguard.events.call_view import STORE_SCHEMA
from tests.gateway.gateway_processes import logged_calls

pytestmark = pytest.mark.slow  # real gateway processes; each module well under 2 minutes

BODY = {"model": "frontier-1", "messages": [{"role": "user", "content": "What does my gas meter measure?"}]}


def hammer(url: str, key: str, stream: bool, received: list[str], stop: threading.Event) -> None:
    """Send calls until stopped; remember the id of every response received completely."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=5) as http:
        while not stop.is_set():
            try:
                if stream:
                    with http.stream(
                        "POST", url + "/v1/chat/completions", json={**BODY, "stream": True}, headers=headers
                    ) as response:
                        body = b"".join(response.iter_bytes())
                        if response.status_code == 200 and body.rstrip().endswith(b"data: [DONE]"):
                            received.append(response.headers["x-request-id"])
                else:
                    response = http.post(url + "/v1/chat/completions", json=BODY, headers=headers)
                    if response.status_code == 200 and response.json()["choices"]:
                        received.append(response.headers["x-request-id"])
            except (httpx.HTTPError, ValueError):
                if stop.is_set():
                    return
                time.sleep(0.01)  # the gateway is gone: nothing more can be received in full


@pytest.mark.parametrize("sync", ["write", "fsync"])
def test_kill_9_under_load_loses_no_delivered_call(start_gateway, upstream: str, sync: str) -> None:
    gateway = start_gateway(upstream, "--log-sync", sync)
    received: list[str] = []
    stop = threading.Event()
    workers = [
        threading.Thread(
            target=hammer, args=(gateway.url, gateway.key("enterprise"), i % 2 == 1, received, stop)
        )
        for i in range(6)
    ]
    for worker in workers:
        worker.start()
    time.sleep(1.5)
    os.kill(gateway.proc.pid, signal.SIGKILL)
    gateway.proc.wait()
    stop.set()
    for worker in workers:
        worker.join()
    assert len(received) > 50, "the load did not get going"
    logged = {call["event_id"] for call in logged_calls(gateway.log_dir)}
    missing = set(received) - logged
    assert not missing, f"{len(missing)} of {len(received)} delivered calls are missing from the log"
    assert list(gateway.log_dir.glob("calls-*.jsonl")), "the killed gateway's segment should still be there"

    # a restart rolls the orphaned segment into the Parquet store, nothing lost on the way
    restarted = start_gateway(upstream, log_dir=gateway.log_dir)
    deadline = time.monotonic() + 20
    stored: set[str] = set()
    while time.monotonic() < deadline and not set(received) <= stored:
        stored = set()
        for part in (gateway.log_dir / "store").glob("*.parquet"):
            table = pq.read_table(part)
            assert table.schema.equals(STORE_SCHEMA)
            stored |= set(table.column("event_id").to_pylist())
        time.sleep(0.2)
    assert set(received) <= stored
    assert restarted.proc.poll() is None
