"""The inline gateway as a plain ASGI application: authenticate, decide, forward to the upstream
(streams chunk by chunk), protect reasoning, log the call durably, answer in OpenAI's wire format.

Composed once at start-up (`Gateway(config)`), stateless per request: all per-call state lives in
local variables, shared state lives in the engine's state backend and the call log.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec

from distillguard.enforcement.engine import Caller, Decision, LiveEngine, load_signals
from distillguard.enforcement.policy import Policy, default_policy, load_policy
from distillguard.enforcement.state import open_state
from distillguard.events.call_view import CallView, request_parts, response_parts
from distillguard.events.credentials import may_hold_secret, strip_credentials
from distillguard.events.model import Client
from distillguard.gateway import metrics
from distillguard.gateway.account_monitor import AccountMonitor
from distillguard.gateway.calllog import CallLog, LoggedCall
from distillguard.gateway.keys import KeyTable, load_keys
from distillguard.gateway.openapi import OPENAPI
from distillguard.gateway.reasoning import StreamProtector, protect_response
from distillguard.gateway.sse import EventSplitter, StreamAssembler, event_data
from distillguard.signals.base import Signal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("distillguard.gateway")

POST_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings"})
# Parameters of the OpenAI API the gateway knows; anything else is passed through and noted.
_KNOWN = """
model messages prompt input instructions temperature top_p n stream stream_options stop max_tokens
max_completion_tokens max_output_tokens presence_penalty frequency_penalty logit_bias logprobs
top_logprobs user safety_identifier prompt_cache_key seed tools tool_choice parallel_tool_calls
response_format reasoning_effort reasoning metadata store service_tier modalities audio prediction
web_search_options echo best_of suffix encoding_format dimensions previous_response_id include
text truncation background conversation verbosity
"""
KNOWN_PARAMS = frozenset(_KNOWN.split())


class GatewayConfig(msgspec.Struct, kw_only=True):
    """Everything `distillguard serve` needs; JSON-serialisable so worker processes get the same."""

    upstream: str
    keys_file: str
    log_dir: str
    policy_file: str | None = None
    state_url: str | None = None
    state_prefix: str = "dg:"
    bans_file: str | None = None
    log_sync: str = "write"
    shadow: bool = False
    signals: str = "inline"  # inline: the registry's inline set; rules: the same, pattern tables only
    upstream_key_env: str = "DISTILLGUARD_UPSTREAM_API_KEY"
    max_body_bytes: int = 4 * 1024 * 1024
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 300.0
    trust_forwarded_for: bool = False
    tls_fingerprint_header: str | None = None
    asn_header: str | None = None  # where the edge passes the client's autonomous system number
    access_log: bool = False


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> bytes:
    return _encode({"error": {"message": message, "type": type_, "param": param, "code": code}})


class _Refusal(Exception):
    def __init__(
        self, status: int, message: str, type_: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.type_, self.param, self.code = status, message, type_, param, code


class Gateway:
    """The ASGI application. `lifespan` opens the upstream pool, the state and the call log."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        policy: Policy | None = None,
        signals: list[Signal] | None = None,
        keys: KeyTable | None = None,
    ) -> None:
        self.config = config
        self.upstream = config.upstream.rstrip("/")
        if self.upstream.endswith("/v1"):
            self.upstream = self.upstream[:-3]
        self.keys = keys if keys is not None else load_keys(config.keys_file)
        if policy is None:
            policy = load_policy(config.policy_file) if config.policy_file else default_policy()
        if config.shadow:
            policy = msgspec.structs.replace(policy, mode="shadow")
        self.policy = policy
        self.signals = signals if signals is not None else load_signals(config.signals)
        self.state = open_state(config.state_url, config.bans_file, config.state_prefix)
        self.engine = LiveEngine(policy, self.state, self.signals)
        self.calllog = CallLog(config.log_dir, sync=config.log_sync)
        self.monitor: AccountMonitor | None = None
        if policy.accounts.enabled:
            self.monitor = AccountMonitor(self.engine, policy.accounts)
        # Read once at start; never logged, never echoed.
        upstream_key = os.environ.get(config.upstream_key_env, "")
        self._upstream_auth = f"Bearer {upstream_key}" if upstream_key else None
        self._session: aiohttp.ClientSession | None = None
        self._endpoint_metrics: dict[tuple[str, int], Any] = {}
        self._started = False

    # ---- lifecycle -------------------------------------------------------------------------
    async def startup(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=self.config.connect_timeout_s, sock_read=self.config.read_timeout_s
            ),
            skip_auto_headers=("User-Agent",),
            auto_decompress=False,
        )
        await self.state.start()
        self.calllog.open()
        if self.monitor is not None:
            await self.monitor.start()
        # Everything built so far (signal tables, models, policy) lives as long as the process:
        # moving it out of the collector's reach keeps full collections short, i.e. the p99 low.
        gc.collect()
        gc.freeze()
        self._started = True
        log.info(
            "gateway up: upstream %s, %d keys, %d inline signals, policy mode %s, state %s, log %s",
            self.upstream,
            len(self.keys),
            len(self.signals),
            self.policy.mode,
            self.state.name,
            self.calllog.segment,
        )

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self.monitor is not None:
            await self.monitor.close()
        await self.state.close()
        await self.calllog.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as error:
                    log.exception("gateway start failed")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- ASGI entry ------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path in POST_ROUTES:
            if method != "POST":
                await self._send_error(
                    send, 405, f"Method {method} not allowed on {path}.", "invalid_request_error"
                )
                return
            await self._proxy(scope, receive, send, path)
        elif path == "/v1/models" or path.startswith("/v1/models/"):
            if method != "GET":
                await self._send_error(
                    send, 405, f"Method {method} not allowed on {path}.", "invalid_request_error"
                )
                return
            await self._proxy(scope, receive, send, path)
        elif path == "/healthz":
            healthy = self._started and self.state.healthy
            body = _encode({"status": "ok" if healthy else "degraded", "state": self.state.name})
            await self._send_body(send, 200 if healthy else 503, body, b"application/json")
        elif path == "/metrics":
            body, content_type = metrics.render()
            await self._send_body(send, 200, body, content_type.encode())
        elif path == "/openapi.json":
            await self._send_body(send, 200, _encode(OPENAPI), b"application/json")
        else:
            await self._send_error(
                send, 404, f"Unknown path {path}.", "invalid_request_error", code="unknown_url"
            )

    # ---- plumbing --------------------------------------------------------------------------
    @staticmethod
    async def _send_body(
        send: Send,
        status: int,
        body: bytes,
        content_type: bytes,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _send_error(
        self,
        send: Send,
        status: int,
        message: str,
        type_: str,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        await self._send_body(send, status, error_body(message, type_, param, code), b"application/json")

    async def _read_body(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        limit = self.config.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _Refusal(413, f"Request body larger than {limit} bytes.", "invalid_request_error")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refusal(499, "Client closed the request.", "invalid_request_error")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Refusal(413, f"Request body larger than {limit} bytes.", "invalid_request_error")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _client(self, scope: Scope, headers: dict[bytes, bytes]) -> Client:
        peer = scope.get("client")
        ip = peer[0] if peer else ""
        if self.config.trust_forwarded_for and b"x-forwarded-for" in headers:
            ip = headers[b"x-forwarded-for"].decode("latin-1").split(",")[0].strip()
        fingerprint = None
        if self.config.tls_fingerprint_header:
            raw = headers.get(self.config.tls_fingerprint_header.lower().encode())
            fingerprint = raw.decode("latin-1") if raw else None
        asn = None
        if self.config.asn_header:
            raw = headers.get(self.config.asn_header.lower().encode(), b"")
            digits = raw.decode("latin-1").strip().upper().removeprefix("AS")
            asn = int(digits) if digits.isdigit() and len(digits) < 11 else None
        agent = headers.get(b"user-agent")
        return Client(
            ip=ip,
            asn=asn,
            user_agent=agent.decode("latin-1") if agent else None,
            tls_fingerprint=fingerprint,
        )

    def _authenticate(self, headers: dict[bytes, bytes]) -> Caller:
        raw = headers.get(b"authorization") or b""
        token = ""
        if raw[:7].lower() == b"bearer ":
            token = raw[7:].strip().decode("latin-1")
        elif b"api-key" in headers:
            token = headers[b"api-key"].decode("latin-1").strip()
        if not token:
            raise _Refusal(
                401,
                "You didn't provide an API key. Pass it in the Authorization header (Bearer <key>).",
                "invalid_request_error",
                code="missing_api_key",
            )
        caller = self.keys.caller(token)
        if caller is None:
            raise _Refusal(
                401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key"
            )
        return caller

    # ---- one call --------------------------------------------------------------------------
    async def _proxy(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        started = time.perf_counter()
        ts = datetime.now(UTC)
        event_id = "gw-" + uuid.uuid4().hex
        headers = dict(scope["headers"])
        client = self._client(scope, headers)
        caller: Caller | None = None
        request: dict[str, Any] = {}
        decision = Decision()
        try:
            caller = self._authenticate(headers)
            if scope["method"] == "POST":
                content_type = headers.get(b"content-type", b"")
                if not content_type.lower().startswith(b"application/json"):
                    raise _Refusal(
                        415,
                        "Content-Type must be application/json.",
                        "invalid_request_error",
                        code="unsupported_media_type",
                    )
                body = await self._read_body(receive, headers)
                try:
                    if not body.isascii():
                        body.decode("utf-8")  # msgspec does not check every string's UTF-8
                    decoded = _decode(body)
                except UnicodeDecodeError as error:
                    raise _Refusal(
                        400,
                        f"The request body is not valid UTF-8 (byte {error.start}).",
                        "invalid_request_error",
                    ) from None
                except msgspec.DecodeError as error:
                    raise _Refusal(
                        400,
                        f"We could not parse the JSON body of your request: {error}.",
                        "invalid_request_error",
                    ) from None
                if not isinstance(decoded, dict):
                    raise _Refusal(400, "The request body must be a JSON object.", "invalid_request_error")
                request = decoded
            else:
                body = b""
            try:
                parts = request_parts(request)
            except (TypeError, ValueError, AttributeError) as error:
                raise _Refusal(
                    400, f"The request body does not follow the API schema: {error}.", "invalid_request_error"
                ) from None
            view = CallView(
                event_id=event_id,
                ts=ts,
                account_id=caller.account_id,
                key_id=caller.key_id,
                client_ip=client.ip,
                client_user_agent=client.user_agent,
                client_tls_fingerprint=client.tls_fingerprint,
                client_asn=client.asn,
                endpoint=path,
                **parts,
            )
            unknown = [key for key in request if key not in KNOWN_PARAMS]
            deciding = time.perf_counter()
            decision = await self.engine.decide(view, caller) if scope["method"] == "POST" else Decision()
            metrics.OVERHEAD.observe(time.perf_counter() - deciding)
            if unknown:
                decision.notes.append("unknown parameters passed through: " + ", ".join(sorted(unknown)[:20]))
            if decision.refuses:
                raise _Refusal(
                    decision.status,
                    decision.message or "Refused by policy.",
                    decision.error_type or "permission_error",
                    decision.param,
                    decision.error_code,
                )
            if scope["method"] == "GET":
                await self._forward(
                    send, path, b"", False, caller, client, request, decision, started, ts, event_id, "GET"
                )
            else:
                stream = request.get("stream") is True
                await self._forward(
                    send, path, body, stream, caller, client, request, decision, started, ts, event_id, "POST"
                )
        except _Refusal as refusal:
            status = refusal.status
            body_out = error_body(refusal.message, refusal.type_, refusal.param, refusal.code)
            self._record(
                event_id,
                ts,
                caller,
                client,
                path,
                request,
                _decode(body_out),
                status,
                started,
                decision,
                refusal.message,
            )
            if status != 499:
                reply_headers = [(b"x-request-id", event_id.encode())]
                if status == 429 and decision.retry_after_s:
                    # the OpenAI SDKs wait this long before a retry
                    wait = str(max(1, math.ceil(decision.retry_after_s))).encode()
                    reply_headers.append((b"retry-after", wait))
                await self._send_body(send, status, body_out, b"application/json", reply_headers)

    def _headers_upstream(self) -> dict[str, str]:
        out = {"Content-Type": "application/json"}
        if self._upstream_auth:
            out["Authorization"] = self._upstream_auth
        return out

    async def _forward(
        self,
        send: Send,
        path: str,
        body: bytes,
        stream: bool,
        caller: Caller,
        client: Client,
        request: dict[str, Any],
        decision: Decision,
        started: float,
        ts: datetime,
        event_id: str,
        method: str,
    ) -> None:
        assert self._session is not None
        url = self.upstream + path
        try:
            async with self._session.request(
                method, url, data=body or None, headers=self._headers_upstream()
            ) as upstream:
                is_stream = stream and upstream.status == 200 and upstream.content_type == "text/event-stream"
                if is_stream:
                    await self._relay_stream(
                        send, upstream, path, caller, client, request, decision, started, ts, event_id
                    )
                    return
                raw = await upstream.read()
                status = upstream.status
        except TimeoutError:
            metrics.UPSTREAM_ERRORS.labels("timeout").inc()
            raise _Refusal(
                504, "The model server did not answer in time.", "api_error", code="upstream_timeout"
            ) from None
        except aiohttp.ClientConnectorError as error:
            metrics.UPSTREAM_ERRORS.labels("connect").inc()
            log.error("upstream %s unreachable: %s", self.upstream, error.os_error)
            raise _Refusal(
                502, "The model server could not be reached.", "api_error", code="upstream_unavailable"
            ) from None
        except aiohttp.ClientError as error:
            metrics.UPSTREAM_ERRORS.labels("disconnect").inc()
            log.error("upstream %s failed: %s", self.upstream, type(error).__name__)
            raise _Refusal(
                502, "The model server closed the connection.", "api_error", code="upstream_error"
            ) from None
        response: Any
        try:
            response = _decode(raw) if raw else None
        except msgspec.DecodeError:
            response = None
        if status >= 400:
            metrics.UPSTREAM_ERRORS.labels(f"http_{status // 100}xx").inc()
            if not (isinstance(response, dict) and isinstance(response.get("error"), dict)):
                # not OpenAI-shaped: the client still gets OpenAI's error format
                raise _Refusal(
                    502 if status >= 500 else status,
                    f"The model server answered with HTTP {status}.",
                    "api_error",
                    code="upstream_error",
                )
        elif response is None and status == 200:
            metrics.UPSTREAM_ERRORS.labels("bad_body").inc()
            raise _Refusal(
                502, "The model server sent a response that is not JSON.", "api_error", code="upstream_error"
            )
        if status == 200 and decision.reasoning != "keep":
            hidden = protect_response(response, decision.reasoning, self.policy.reasoning.summary_chars)
            if hidden:
                decision.notes.append(f"reasoning {decision.reasoning}: {hidden} characters withheld")
                raw = _encode(response)
        seq = self._record(event_id, ts, caller, client, path, request, response, status, started, decision)
        await self.calllog.committed(seq)
        await self._send_body(send, status, raw, b"application/json", [(b"x-request-id", event_id.encode())])

    async def _relay_stream(
        self,
        send: Send,
        upstream: aiohttp.ClientResponse,
        path: str,
        caller: Caller,
        client: Client,
        request: dict[str, Any],
        decision: Decision,
        started: float,
        ts: datetime,
        event_id: str,
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-request-id", event_id.encode()),
                ],
            }
        )
        splitter = EventSplitter()
        assembler = StreamAssembler(path)
        protector = (
            StreamProtector(decision.reasoning, self.policy.reasoning.summary_chars)
            if decision.reasoning != "keep"
            else None
        )
        held: list[bytes] = []  # the terminal event goes out only after the call is logged
        failure: str | None = None
        client_gone = False
        try:
            async for chunk in upstream.content.iter_any():
                out: list[bytes] = []
                for raw in splitter.feed(chunk):
                    data = event_data(raw)
                    if data is None:
                        out.append(raw)
                        continue
                    if data.strip() == b"[DONE]":
                        held.append(raw)
                        continue
                    try:
                        obj = _decode(data)
                    except msgspec.DecodeError:
                        out.append(raw)
                        continue
                    if protector is not None and isinstance(obj, dict):
                        kept = (
                            protector.responses_event(obj)
                            if path == "/v1/responses"
                            else protector.chat_chunk(obj)
                        )
                        if kept is None:
                            assembler.add(obj)
                            continue
                        raw = b"data: " + _encode(kept) + b"\n\n"
                    assembler.add(obj)
                    if isinstance(obj, dict) and obj.get("type") in (
                        "response.completed",
                        "response.incomplete",
                    ):
                        held.append(raw)
                    else:
                        out.append(raw)
                if out and not client_gone:
                    try:
                        await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                    except OSError:
                        client_gone = True
                        break
            rest = splitter.rest()
            if rest.strip():
                held.append(rest)
        except TimeoutError:
            failure = "upstream timed out mid-stream"
            metrics.UPSTREAM_ERRORS.labels("timeout").inc()
        except aiohttp.ClientError as error:
            failure = f"upstream stream broke: {type(error).__name__}"
            metrics.UPSTREAM_ERRORS.labels("disconnect").inc()
        if failure is None and not held and not client_gone and assembler.error is None:
            # an OpenAI stream always ends with [DONE] (or response.completed): anything else was cut
            failure = "upstream stream ended without its final event"
            metrics.UPSTREAM_ERRORS.labels("disconnect").inc()
        if protector is not None and protector.hidden_chars:
            decision.notes.append(
                f"reasoning {decision.reasoning}: {protector.hidden_chars} characters withheld"
            )
        if failure:
            decision.notes.append(failure)
            log.error("call %s: %s", event_id, failure)
            held = [
                b"data: "
                + error_body("The model server stopped while streaming.", "api_error", code="upstream_error")
                + b"\n\n"
            ]
        if client_gone:
            decision.notes.append("client disconnected mid-stream")
        response = assembler.result()
        seq = self._record(
            event_id, ts, caller, client, path, request, response, 200, started, decision, failure
        )
        await self.calllog.committed(seq)
        if not client_gone:
            # a client that left after the call was logged has nothing more to receive
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"".join(held), "more_body": False})

    def _record(
        self,
        event_id: str,
        ts: datetime,
        caller: Caller | None,
        client: Client,
        path: str,
        request: dict[str, Any],
        response: Any,
        status: int,
        started: float,
        decision: Decision,
        failure: str | None = None,
    ) -> int:
        latency = time.perf_counter() - started
        logged_request = request
        if request and may_hold_secret(_encode(request)):
            logged_request = _decode(_encode(request))
            if strip_credentials(logged_request):
                decision.notes.append("credentials removed from the logged request")
        if caller is not None:
            self.engine.record(caller, decision)
        call = LoggedCall(
            event_id=event_id,
            ts=ts,
            account_id=caller.account_id if caller else "unauthenticated",
            key_id=caller.key_id if caller else None,
            end_user=_end_user(request),
            client=client,
            endpoint=path,
            request=logged_request,
            response=response if isinstance(response, dict) else None,
            status=status,
            latency_ms=round(latency * 1000, 3),
            decision=decision,
        )
        if self.engine.output_signals and status == 200 and isinstance(response, dict):
            view = CallView(
                event_id=event_id,
                ts=ts,
                account_id=call.account_id,
                endpoint=path,
                **response_parts(response),
            )
            self.engine.analyze_output(view, decision)
        seq = self.calllog.append(call)
        if self.monitor is not None and caller is not None and status == 200:
            self.monitor.observe(call, caller, decision)
        key = (path, status)
        counter = self._endpoint_metrics.get(key)
        if counter is None:
            counter = self._endpoint_metrics[key] = metrics.CALLS.labels(path, str(status))
        counter.inc()
        metrics.DECISIONS.labels(decision.action, str(decision.enforced).lower()).inc()
        metrics.LATENCY.labels(path).observe(latency)
        if self.config.access_log or decision.action != "allow" or failure:
            log.info(
                "call",
                extra={
                    "event_id": event_id,
                    "account_id": call.account_id,
                    "endpoint": path,
                    "status": status,
                    "action": decision.action,
                    "enforced": decision.enforced,
                    "rules": [m.rule for m in decision.matches],
                    "latency_ms": call.latency_ms,
                    "error": failure,
                },
            )
        return seq


def _end_user(request: dict[str, Any]) -> str | None:
    for key in ("safety_identifier", "user"):
        value = request.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def app_from_env() -> Gateway:
    """Factory for worker processes: the configuration travels in DISTILLGUARD_GATEWAY_CONFIG."""
    raw = os.environ.get("DISTILLGUARD_GATEWAY_CONFIG")
    if not raw:
        raise RuntimeError(
            "DISTILLGUARD_GATEWAY_CONFIG is not set; start the gateway with `distillguard serve`"
        )
    return Gateway(msgspec.json.decode(raw, type=GatewayConfig))
