"""The gateway's request path as stages over one per-request record (`Call`).

Each stage is a small object built once at start-up that reads and annotates the record, or
raises a `Refusal` that ends the call with an OpenAI error (logged like every other call). The
gateway stacks them as

    identify client -> authenticate -> route allow-list -> read body -> decode body
    -> validate parameters -> ban list -> tier limits -> inline signals -> policy
    -> forward -> relay/strip -> log

and the LiteLLM guardrail stacks the transport-free ones (validate parameters onwards) over the
same record, so both decide with the same code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from distillguard.enforcement.engine import Caller, Deciding, Decision, LiveEngine
from distillguard.enforcement.parameters import CheckedRequest, RequestError, check_request
from distillguard.enforcement.policy import Requests
from distillguard.events.call_view import CallView, request_parts, response_parts
from distillguard.events.credentials import may_hold_secret, strip_credentials
from distillguard.events.model import Client
from distillguard.gateway.calllog import CallLog, LoggedCall
from distillguard.gateway.errors import Refusal
from distillguard.gateway.forwarded import Network, client_address
from distillguard.gateway.keys import KeyTable
from distillguard.gateway.request_body import decode_body
from distillguard.gateway.routes import RouteMatch, RouteTable

if TYPE_CHECKING:
    from distillguard.gateway.account_monitor import AccountMonitor

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("distillguard.gateway")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
UNMATCHED = "unmatched"  # the endpoint logged for a path that is not on the allow-list


class Call:
    """One call on its way through the stages: what arrived, what each stage found, what left."""

    __slots__ = (
        "body",
        "caller",
        "checked",
        "client",
        "deciding",
        "deciding_since",
        "decision",
        "delivered",
        "disconnected",
        "endpoint",
        "event_id",
        "failure",
        "headers",
        "notes",
        "receive",
        "request",
        "response",
        "route",
        "scope",
        "send",
        "started",
        "status",
        "ts",
        "view",
    )

    def __init__(
        self,
        event_id: str,
        ts: datetime,
        *,
        scope: Scope | None = None,
        receive: Receive | None = None,
        send: Send | None = None,
        started: float | None = None,
    ) -> None:
        self.event_id, self.ts = event_id, ts
        self.started = time.perf_counter() if started is None else started
        self.scope, self.receive, self.send = scope, receive, send
        self.headers: dict[bytes, bytes] = dict(scope["headers"]) if scope is not None else {}
        self.client = Client(ip="")
        self.caller: Caller | None = None
        self.route: RouteMatch | None = None
        self.endpoint = UNMATCHED
        self.body = b""
        self.request: dict[str, Any] = {}
        self.checked: CheckedRequest | None = None
        self.view: CallView | None = None
        self.deciding: Deciding | None = None
        self.deciding_since = 0.0
        self.decision = Decision()
        self.notes: list[str] = []  # what stages before the decision found; joins its notes
        self.status = 0
        self.response: Any = None
        self.failure: str | None = None
        self.disconnected = False
        self.delivered = ""  # what reached the client of a call it left early

    @property
    def decided(self) -> bool:
        return self.decision.status != 200


class Stage(Protocol):
    async def __call__(self, call: Call) -> None: ...


class CallMetrics(Protocol):
    """Where stages report timings and outcomes (the gateway's Prometheus metrics); optional, so
    that the LiteLLM guardrail needs no metrics library of its own."""

    def decision_time(self, seconds: float) -> None: ...
    def call(self, endpoint: str, status: int, decision: Decision, seconds: float) -> None: ...


# ---- transport stages (the gateway's own) --------------------------------------------------------
class IdentifyClient:
    """The client's address (the TCP peer, or X-Forwarded-For behind trusted proxies), user agent,
    TLS fingerprint and ASN from the edge's headers."""

    def __init__(
        self,
        *,
        trust_forwarded_for: bool = False,
        trusted_proxies: Sequence[Network] = (),
        tls_fingerprint_header: str | None = None,
        asn_header: str | None = None,
    ) -> None:
        self.trust_forwarded_for = trust_forwarded_for
        self.trusted_proxies = tuple(trusted_proxies)
        self.fingerprint_header = tls_fingerprint_header.lower().encode() if tls_fingerprint_header else None
        self.asn_header = asn_header.lower().encode() if asn_header else None

    async def __call__(self, call: Call) -> None:
        assert call.scope is not None
        headers = call.headers
        peer = call.scope.get("client")
        ip = peer[0] if peer else ""
        if self.trust_forwarded_for:
            values = [v.decode("latin-1") for k, v in call.scope["headers"] if k == b"x-forwarded-for"]
            if values:
                ip = client_address(ip, values, self.trusted_proxies)
        fingerprint = None
        if self.fingerprint_header:
            raw = headers.get(self.fingerprint_header)
            fingerprint = raw.decode("latin-1")[:256] if raw else None
        asn = None
        if self.asn_header:
            digits = headers.get(self.asn_header, b"").decode("latin-1").strip().upper().removeprefix("AS")
            asn = int(digits) if digits.isdigit() and len(digits) < 11 else None
        agent = headers.get(b"user-agent")
        call.client = Client(
            ip=ip,
            asn=asn,
            user_agent=agent.decode("latin-1")[:512] if agent else None,
            tls_fingerprint=fingerprint,
        )


class Authenticate:
    """The caller's API key (Bearer, or Azure's `api-key`) to its account, tier and actor."""

    def __init__(self, keys: KeyTable) -> None:
        self.keys = keys

    async def __call__(self, call: Call) -> None:
        headers = call.headers
        raw = headers.get(b"authorization") or b""
        token = ""
        if raw[:7].lower() == b"bearer ":
            token = raw[7:].strip().decode("latin-1")
        elif b"api-key" in headers:
            token = headers[b"api-key"].decode("latin-1").strip()
        if not token:
            raise Refusal(
                401,
                "You didn't provide an API key. Pass it in the Authorization header (Bearer <key>).",
                code="missing_api_key",
            )
        caller = self.keys.caller(token)
        if caller is None:
            raise Refusal(401, "Incorrect API key provided.", code="invalid_api_key")
        call.caller = caller


class MatchRoute:
    """The route allow-list (`routes.RouteTable`): the upstream path is built from validated
    parts, the caller's query string is dropped but for the route's allowed parameters."""

    def __init__(self, table: RouteTable) -> None:
        self.table = table

    async def __call__(self, call: Call) -> None:
        assert call.scope is not None
        scope = call.scope
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        try:
            call.route = self.table.match(scope["method"], raw_path, scope.get("query_string", b""))
        except Refusal:
            shown = [raw_path[:200].decode("ascii", "backslashreplace")]
            call.notes.append(
                "path not served: "
                + (shown[0] if not strip_credentials(shown) else "(withheld: a credential)")
            )
            raise
        call.endpoint = call.route.route.endpoint
        if call.route.dropped_query:
            names = [name[:40] for name in call.route.dropped_query[:10]]
            strip_credentials(names)
            call.notes.append("query parameters not forwarded: " + ", ".join(names))


class ReadBody:
    """The request body of a route that takes one: JSON only, at most `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    async def __call__(self, call: Call) -> None:
        assert call.route is not None and call.receive is not None
        if not call.route.route.body:
            return
        headers = call.headers
        if not headers.get(b"content-type", b"").lower().startswith(b"application/json"):
            raise Refusal(415, "Content-Type must be application/json.", code="unsupported_media_type")
        limit = self.max_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refusal(413, f"Request body larger than {limit} bytes.", code="body_too_large")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await call.receive()
            if message["type"] == "http.disconnect":
                call.disconnected = True
                raise Refusal(499, "Client closed the request.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Refusal(413, f"Request body larger than {limit} bytes.", code="body_too_large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                call.body = b"".join(chunks)
                return


class DecodeBody:
    """The body decoded once: UTF-8, one JSON object, no repeated key, within depth and size."""

    def __init__(self, rules: Requests) -> None:
        self.rules = rules

    async def __call__(self, call: Call) -> None:
        assert call.route is not None
        if call.route.route.body:
            call.request = decode_body(
                call.body, max_depth=self.rules.max_depth, max_values=self.rules.max_values
            )


# ---- stages shared with the LiteLLM guardrail ----------------------------------------------------
class ValidateRequest:
    """Typed parameters, unknown ones per the policy, what the call asks of tier limits; then the
    call view every signal reads, built once."""

    def __init__(self, rules: Requests) -> None:
        self.rules = rules

    async def __call__(self, call: Call) -> None:
        assert call.caller is not None
        try:
            call.checked = check_request(call.request, call.endpoint, self.rules)
            parts = request_parts(call.request)
        except RequestError as error:
            raise Refusal(400, error.message, param=error.param, code=error.code) from None
        except (TypeError, ValueError, AttributeError) as error:
            raise Refusal(400, f"The request body does not follow the API schema: {error}.") from None
        if call.checked.unknown:
            call.notes.append(
                "unknown parameters passed through: " + ", ".join(sorted(call.checked.unknown)[:20])
            )
        client, caller = call.client, call.caller
        call.view = CallView(
            event_id=call.event_id,
            ts=call.ts,
            account_id=caller.account_id,
            key_id=caller.key_id,
            client_ip=client.ip,
            client_user_agent=client.user_agent,
            client_tls_fingerprint=client.tls_fingerprint,
            client_asn=client.asn,
            endpoint=call.endpoint,
            **parts,
        )


def refusal_of(decision: Decision) -> Refusal:
    return Refusal(
        decision.status,
        decision.message or "Refused by policy.",
        decision.error_type or "permission_error",
        decision.param,
        decision.error_code,
    )


class _DecisionStage:
    """A stage of the engine's decision. Once one stage has decided the call, the later ones
    leave it alone; an enforced refusal ends the call here."""

    def __init__(self, engine: LiveEngine, metrics: CallMetrics | None = None) -> None:
        self.engine = engine
        self.metrics = metrics

    def _deciding(self, call: Call) -> Deciding:
        if call.deciding is None:
            assert call.view is not None and call.caller is not None
            call.deciding_since = time.perf_counter()
            asks = call.checked.asks if call.checked else None
            call.deciding = self.engine.start(call.view, call.caller, asks)
            call.decision = call.deciding.decision
        return call.deciding

    def _decided(self, call: Call) -> None:
        """The decision is made: time it, and end the call here if it is an enforced refusal."""
        if self.metrics is not None:
            self.metrics.decision_time(time.perf_counter() - call.deciding_since)
        if call.decision.refuses:
            raise refusal_of(call.decision)


class BanList(_DecisionStage):
    """The ban list (account, actor, held indicators) and the shared state's health, on every
    route: a banned account gets 403 on GET /v1/models as on a chat completion."""

    async def __call__(self, call: Call) -> None:
        if await self.engine.check_listed(self._deciding(call)):
            self._decided(call)


class TierLimits(_DecisionStage):
    """The tier's table of extraction-relevant parameters, then its rate limit."""

    async def __call__(self, call: Call) -> None:
        if call.decided:
            return
        if await self.engine.check_tier(self._deciding(call)):
            self._decided(call)


class InlineSignals(_DecisionStage):
    """The inline signals on the call view, and the rules their scores fire."""

    async def __call__(self, call: Call) -> None:
        if call.decided:
            return
        self.engine.run_signals(self._deciding(call))


class ApplyPolicy(_DecisionStage):
    """The policy's action (allow, flag, throttle, block, ban) from the rules that fired."""

    async def __call__(self, call: Call) -> None:
        if call.decided:
            return
        await self.engine.apply_policy(self._deciding(call))
        self._decided(call)


async def run(stages: Sequence[Stage], call: Call) -> None:
    for stage in stages:
        await stage(call)


# ---- the log ------------------------------------------------------------------------------------
class RecordCall:
    """Writes the call's record (credentials removed) to the durable log, runs the output signals,
    feeds the account monitor and the metrics. Returns the record's sequence number: the caller
    waits for `CallLog.committed(seq)` before the last byte of the answer goes out."""

    def __init__(
        self,
        engine: LiveEngine,
        calllog: CallLog | None,
        monitor: AccountMonitor | None = None,
        access_log: bool = False,
        metrics: CallMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.calllog = calllog
        self.monitor = monitor
        self.access_log = access_log
        self.metrics = metrics

    def __call__(self, call: Call) -> int:
        latency = time.perf_counter() - call.started
        decision, caller, status = call.decision, call.caller, call.status
        if call.notes:
            decision.notes[:0] = call.notes
        request = call.request
        logged_request = request
        if request and may_hold_secret(_encode(request)):
            logged_request = _decode(_encode(request))
            if strip_credentials(logged_request):
                decision.notes.append("credentials removed from the logged request")
        response = call.response if isinstance(call.response, dict) else None
        if caller is not None:
            self.engine.record(caller, decision)
        logged = LoggedCall(
            event_id=call.event_id,
            ts=call.ts,
            account_id=caller.account_id if caller else "unauthenticated",
            key_id=caller.key_id if caller else None,
            end_user=_end_user(request),
            client=call.client,
            endpoint=call.endpoint,
            request=logged_request,
            response=response,
            status=status,
            latency_ms=round(latency * 1000, 3),
            decision=decision,
        )
        if self.engine.output_signals and status == 200 and response is not None:
            view = CallView(
                event_id=call.event_id,
                ts=call.ts,
                account_id=logged.account_id,
                endpoint=call.endpoint,
                **response_parts(response),
            )
            self.engine.analyze_output(view, decision)
        seq = self.calllog.append(logged) if self.calllog is not None else 0
        if self.monitor is not None and caller is not None and status == 200:
            self.monitor.observe(logged, caller, decision)
        if self.metrics is not None:
            self.metrics.call(call.endpoint, status, decision, latency)
        if self.access_log or decision.action != "allow" or call.failure:
            log.info(
                "call",
                extra={
                    "event_id": call.event_id,
                    "account_id": logged.account_id,
                    "endpoint": call.endpoint,
                    "status": status,
                    "action": decision.action,
                    "enforced": decision.enforced,
                    "rules": [m.rule for m in decision.matches],
                    "latency_ms": logged.latency_ms,
                    "error": call.failure,
                },
            )
        return seq


def _end_user(request: dict[str, Any]) -> str | None:
    for key in ("safety_identifier", "user"):
        value = request.get(key)
        if isinstance(value, str) and value:
            return value
    return None
