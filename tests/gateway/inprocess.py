"""The gateway application driven in-process (ASGI calls, no HTTP server in front) with the local
model server on loopback in the same event loop: fast enough for thousands of requests a second,
for the fuzz suite and the stage tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import uvicorn

from distillguard.enforcement.policy import Policy
from distillguard.gateway.app import Gateway, GatewayConfig
from distillguard.gateway.local_upstream import LocalUpstream
from tests.gateway.gateway_processes import free_port


class Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class InProcessGateway:
    """`request` sends one ASGI request and returns the whole response."""

    def __init__(self, log_dir: Path, keys_file: Path, policy: Policy | None = None, **config: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="in-process-gateway", daemon=True)
        self._thread.start()
        port = free_port()
        upstream = uvicorn.Config(
            LocalUpstream(failures=False), host="127.0.0.1", port=port, lifespan="off", log_level="warning"
        )
        self._upstream = uvicorn.Server(upstream)
        self._upstream_task = self.run(self._serve())
        self.app = Gateway(
            GatewayConfig(
                upstream=f"http://127.0.0.1:{port}",
                keys_file=str(keys_file),
                log_dir=str(log_dir),
                signals="rules",
                **config,
            ),
            policy=policy,
        )
        self.run(self.app.startup())

    async def _serve(self) -> None:
        self.loop.create_task(self._upstream.serve())
        while not self._upstream.started:
            await asyncio.sleep(0.01)

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def request(
        self,
        method: str,
        raw_path: bytes,
        *,
        query: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        client: tuple[str, int] = ("203.0.113.9", 50000),
    ) -> Response:
        return self.run(self._request(method, raw_path, query, headers or [], body, client))

    async def _request(
        self,
        method: str,
        raw_path: bytes,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        client: tuple[str, int],
    ) -> Response:
        response = Response()
        done = asyncio.Event()
        sent_body = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()  # as a server does: the client is there until the response is complete
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response.status = message["status"]
                response.headers = dict(message.get("headers", []))
            elif message["type"] == "http.response.body":
                response.chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            # what uvicorn hands an application: the path percent-decoded, and the raw bytes
            "path": unquote_to_bytes(raw_path).decode("utf-8", "surrogateescape"),
            "raw_path": raw_path,
            "query_string": query,
            "headers": [(k.lower(), v) for k, v in headers],
            "client": client,
            "server": ("127.0.0.1", 8080),
            "scheme": "http",
        }
        await self.app(scope, receive, send)
        done.set()
        return response

    def close(self) -> None:
        self.run(self.app.shutdown())
        self._upstream.should_exit = True
        self.run(asyncio.sleep(0.2))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
