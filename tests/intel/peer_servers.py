"""Servers the pull tests talk to: our own `distillguard intel serve` as a real process, and a
hostile 'peer' (a small Starlette app on a loopback port, in a thread) that answers whatever a
test asks of it: oversized or endless bodies, bodies that are not JSON, envelopes that loop."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))

from tests.gateway.gateway_processes import BIN, free_port, stop, wait_http

TAXII = "application/taxii+json;version=2.1"
COLLECTION = "9a1f4c2e-3b5d-4e6f-8a7b-0c1d2e3f4a5b"

Behaviour = Callable[[Request], Response]


def envelope(
    objects: list[Any], more: bool = False, next_: str | None = None, added_last: str | None = None
) -> Response:
    body: dict[str, Any] = {"more": more, "objects": objects}
    if next_:
        body["next"] = next_
    headers = {"X-TAXII-Date-Added-Last": added_last} if added_last else {}
    return Response(json.dumps(body), media_type=TAXII, headers=headers)


class HostilePeer:
    """A TAXII-looking server whose objects endpoint runs `self.behaviour`."""

    def __init__(self) -> None:
        self.behaviour: Behaviour = lambda request: envelope([])
        self.requests: list[str] = []

        async def collection(request: Request) -> Response:
            info = {"id": COLLECTION, "title": "x", "can_read": True, "can_write": False, "media_types": []}
            return Response(json.dumps(info), media_type=TAXII)

        async def objects(request: Request) -> Response:
            self.requests.append(str(request.url.query))
            return self.behaviour(request)

        self.app = Starlette(
            routes=[
                Route(f"/root/collections/{COLLECTION}/", collection),
                Route(f"/root/collections/{COLLECTION}/objects/", objects),
            ]
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/root/"

    @contextmanager
    def running(self) -> Iterator[HostilePeer]:
        server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("hostile peer did not start")
            time.sleep(0.05)
        try:
            yield self
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def endless(chunk: bytes, times: int) -> Response:
    """A body sent in chunks with no Content-Length (the size is known only by reading it)."""

    async def body() -> Any:
        for _ in range(times):
            yield chunk

    return StreamingResponse(body(), media_type=TAXII)


@contextmanager
def intel_server(db: str, deployment: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """`distillguard intel serve` as a real process on a free port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "distillguard"),
            "intel",
            "serve",
            "--db",
            db,
            "--deployment",
            deployment,
            "--port",
            str(port),
            "--publish-every",
            "0.5",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=env,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/taxii2/", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
