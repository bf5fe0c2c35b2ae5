"""The forward and relay stages: the call goes to the upstream at the path the route allow-list
built, the answer comes back (streams event by event as they arrive) with reasoning protected, and
the call is logged before the last byte leaves.

A client that goes away is noticed while the upstream works (a task waits for the server's
`http.disconnect`): the upstream request is cancelled and its connection closed, so the model
server stops generating, and the call is logged as disconnected with what had been delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from distillguard.gateway import metrics
from distillguard.gateway.calllog import CallLog
from distillguard.gateway.errors import Refusal, error_body
from distillguard.gateway.pipeline import Call, RecordCall
from distillguard.gateway.reasoning import ReasoningProtector
from distillguard.gateway.routes import RESPONSES
from distillguard.gateway.sse import EventSplitter, StreamAssembler, event_data, with_data

log = logging.getLogger("distillguard.gateway")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
CLIENT_GONE = 499  # nginx's status for a client that closed the connection before the answer
_FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


class _ClientGone(Exception):
    """The client left; `delivered` says what it had received."""


async def send_body(
    call: Call, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    assert call.send is not None
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await call.send({"type": "http.response.start", "status": status, "headers": headers})
    await call.send({"type": "http.response.body", "body": body})


class Forward:
    """Sends the call upstream and relays the answer (see the module's docstring)."""

    def __init__(
        self,
        upstream: str,
        session: Callable[[], aiohttp.ClientSession],
        upstream_auth: str | None,
        record: RecordCall,
        calllog: CallLog,
        summary_chars: int,
    ) -> None:
        self.upstream = upstream
        self.session = session
        self.record = record
        self.calllog = calllog
        self.summary_chars = summary_chars
        self._headers = {"Content-Type": "application/json"}
        if upstream_auth:
            self._headers["Authorization"] = upstream_auth  # read once at start, never logged

    async def __call__(self, call: Call) -> None:
        assert call.route is not None and call.receive is not None
        task = asyncio.current_task()
        assert task is not None
        watcher = _DisconnectWatch(call, task)
        upstream: aiohttp.ClientResponse | None = None
        stream: _Relay | None = None
        try:
            try:
                upstream = await self.session().request(
                    call.route.route.method,
                    URL(self.upstream + call.route.upstream_path, encoded=True),
                    data=call.body if call.route.route.body else None,
                    headers=self._headers,
                )
                wanted = call.view is not None and call.view.stream
                if wanted and upstream.status == 200 and upstream.content_type == "text/event-stream":
                    stream = _Relay(call, self._protector(call))
                    await stream.relay(upstream)
                else:
                    raw = await upstream.read()
            finally:
                watcher.cancel()
        except asyncio.CancelledError:
            if not call.disconnected:
                raise  # the server is shutting down: not ours to handle
            task.uncancel()
            if upstream is not None:
                upstream.close()  # the model server sees its connection go and stops generating
            metrics.UPSTREAM_ERRORS.labels("client_disconnected").inc()
            if stream is not None:
                await stream.finish(self.record, self.calllog, gone=True)
            else:
                call.status, call.failure = CLIENT_GONE, "client disconnected before the answer"
                self.record(call)
            return
        except TimeoutError:
            metrics.UPSTREAM_ERRORS.labels("timeout").inc()
            raise Refusal(
                504, "The model server did not answer in time.", "api_error", code="upstream_timeout"
            ) from None
        except aiohttp.ClientConnectorError as error:
            metrics.UPSTREAM_ERRORS.labels("connect").inc()
            log.error("upstream %s unreachable: %s", self.upstream, error.os_error)
            raise Refusal(
                502, "The model server could not be reached.", "api_error", code="upstream_unavailable"
            ) from None
        except aiohttp.ClientError as error:
            metrics.UPSTREAM_ERRORS.labels("disconnect").inc()
            log.error("upstream %s failed: %s", self.upstream, type(error).__name__)
            raise Refusal(
                502, "The model server closed the connection.", "api_error", code="upstream_error"
            ) from None
        finally:
            if upstream is not None:
                upstream.release()
        if stream is not None:
            await stream.finish(self.record, self.calllog, gone=False)
            return
        await self._whole(call, upstream.status if upstream is not None else 502, raw)

    def _protector(self, call: Call) -> ReasoningProtector | None:
        action = call.decision.reasoning
        return ReasoningProtector(action, self.summary_chars) if action != "keep" else None

    async def _whole(self, call: Call, status: int, raw: bytes) -> None:
        response: Any
        try:
            response = _decode(raw) if raw else None
        except msgspec.DecodeError:
            response = None
        if status >= 400:
            metrics.UPSTREAM_ERRORS.labels(f"http_{status // 100}xx").inc()
            if not (isinstance(response, dict) and isinstance(response.get("error"), dict)):
                # not OpenAI-shaped: the client still gets OpenAI's error format
                raise Refusal(
                    502 if status >= 500 else status,
                    f"The model server answered with HTTP {status}.",
                    "api_error",
                    code="upstream_error",
                )
        elif response is None and status == 200:
            metrics.UPSTREAM_ERRORS.labels("bad_body").inc()
            raise Refusal(
                502, "The model server sent a response that is not JSON.", "api_error", code="upstream_error"
            )
        protector = self._protector(call)
        if status == 200 and protector is not None:
            if protector.response(response):
                raw = _encode(response)
            call.decision.notes.extend(protector.notes())
        call.status, call.response = status, response
        seq = self.record(call)
        await self.calllog.committed(seq)
        await send_body(call, status, raw, b"application/json", [(b"x-request-id", call.event_id.encode())])


WATCH_AFTER_S = 0.02


class _DisconnectWatch:
    """Waits for the server to report that the client went away, then cancels the call's task
    (the forward stage turns that into a cancelled upstream request and a logged disconnect).

    The waiting task starts only once the upstream has taken `WATCH_AFTER_S`: a call answered
    sooner costs a timer, not a task (a task per call is ~10 % of the gateway's own time), and
    nothing is lost, since generation that short is done before a cancellation could save it."""

    def __init__(self, call: Call, task: asyncio.Task[Any]) -> None:
        self.call, self.task = call, task
        self.watcher: asyncio.Task[None] | None = None
        self.timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._start)

    def _start(self) -> None:
        self.watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        call = self.call
        assert call.receive is not None
        with contextlib.suppress(Exception):
            while True:
                message = await call.receive()
                if message["type"] == "http.disconnect":
                    call.disconnected = True
                    self.task.cancel()
                    return

    def cancel(self) -> None:
        self.timer.cancel()
        if self.watcher is not None:
            self.watcher.cancel()


class _Relay:
    """One stream: events go out as they arrive (reasoning protected); the final event waits
    until the call is logged."""

    def __init__(self, call: Call, protector: ReasoningProtector | None) -> None:
        self.call = call
        self.protector = protector
        self.endpoint = call.endpoint
        self.assembler = StreamAssembler(call.endpoint)  # what the client received
        self.held: list[bytes] = []  # the terminal event goes out only after the call is logged
        self.held_objects: list[Any] = []
        self.failure: str | None = None
        self.events = 0
        self.bytes = 0

    async def relay(self, upstream: aiohttp.ClientResponse) -> None:
        call = self.call
        assert call.send is not None
        await call.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-request-id", call.event_id.encode()),
                ],
            }
        )
        splitter = EventSplitter()
        try:
            async for chunk in upstream.content.iter_any():
                out: list[bytes] = []
                delivered: list[Any] = []
                for raw in splitter.feed(chunk):
                    sent = self._event(raw)
                    if sent is None:
                        continue
                    raw_out, obj, final = sent
                    if final:
                        self.held.append(raw_out)
                        self.held_objects.append(obj)
                    else:
                        out.append(raw_out)
                        delivered.append(obj)
                if out:
                    body = b"".join(out)
                    try:
                        await call.send({"type": "http.response.body", "body": body, "more_body": True})
                    except (OSError, RuntimeError):  # servers that raise instead of dropping the bytes
                        call.disconnected = True
                        raise asyncio.CancelledError from None
                    self.events += len(out)
                    self.bytes += len(body)
                    for obj in delivered:
                        self.assembler.add(obj)
            rest = splitter.rest()
            if rest.strip():
                self.held.append(rest)
        except TimeoutError:
            self.failure = "upstream timed out mid-stream"
            metrics.UPSTREAM_ERRORS.labels("timeout").inc()
        except aiohttp.ClientError as error:
            self.failure = f"upstream stream broke: {type(error).__name__}"
            metrics.UPSTREAM_ERRORS.labels("disconnect").inc()

    def _event(self, raw: bytes) -> tuple[bytes, Any, bool] | None:
        """The bytes to send for one upstream event, its decoded object, and whether it is the
        final one; None drops it."""
        data = event_data(raw)
        if data is None:
            return raw, None, False
        if data.strip() == b"[DONE]":
            return raw, None, True
        try:
            obj = _decode(data)
        except msgspec.DecodeError:
            return raw, None, False
        protector = self.protector
        if protector is not None and isinstance(obj, dict):
            kept = protector.responses_event(obj) if self.endpoint == RESPONSES else protector.chat_chunk(obj)
            if kept is None:
                return None
            if protector.changed:
                raw = with_data(raw, _encode(kept))
        final = isinstance(obj, dict) and obj.get("type") in _FINAL_EVENTS
        return raw, obj, final

    async def finish(self, record: RecordCall, calllog: CallLog, gone: bool) -> None:
        """Log the call, then send the held final event (unless the client is gone)."""
        call = self.call
        assembler = self.assembler
        if not gone:
            for obj in self.held_objects:
                assembler.add(obj)
            if self.failure is None and not self.held and assembler.error is None:
                # an OpenAI stream always ends with [DONE] (or response.completed): anything else was cut
                self.failure = "upstream stream ended without its final event"
                metrics.UPSTREAM_ERRORS.labels("disconnect").inc()
        notes = call.decision.notes
        if self.protector is not None:
            notes.extend(self.protector.notes())
        if gone:
            call.status = CLIENT_GONE
            call.failure = (
                f"client disconnected mid-stream: {self.events} events, {self.bytes} bytes delivered"
            )
        elif self.failure:
            call.status, call.failure = 200, self.failure
            log.error("call %s: %s", call.event_id, self.failure)
            self.held = [
                b"data: "
                + error_body("The model server stopped while streaming.", "api_error", code="upstream_error")
                + b"\n\n"
            ]
        else:
            call.status = 200
        if call.failure:
            notes.append(call.failure)
        call.response = assembler.result()
        seq = record(call)
        await calllog.committed(seq)
        if not gone and call.send is not None:
            # a client that left after the call was logged has nothing more to receive
            with contextlib.suppress(OSError, RuntimeError):
                await call.send(
                    {"type": "http.response.body", "body": b"".join(self.held), "more_body": False}
                )
