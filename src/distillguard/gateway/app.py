"""The inline gateway as a plain ASGI application: a pipeline of stages over one record per call
(`pipeline.Call`), composed once at start-up. Local routes (/healthz, /metrics, /openapi.json)
answer directly; every other request goes through the whole pipeline and is logged, whatever
becomes of it.

Stateless per request: all per-call state lives in the `Call`, shared state lives in the engine's
state backend and the call log.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec

from distillguard.enforcement.engine import LiveEngine, load_signals
from distillguard.enforcement.policy import Policy, default_policy, load_policy
from distillguard.enforcement.state import open_state
from distillguard.gateway import metrics
from distillguard.gateway.account_monitor import AccountMonitor
from distillguard.gateway.calllog import CallLog
from distillguard.gateway.errors import Refusal, error_body
from distillguard.gateway.forward import Forward, send_body
from distillguard.gateway.forwarded import parse_networks
from distillguard.gateway.keys import KeyTable, load_keys
from distillguard.gateway.openapi import openapi_document
from distillguard.gateway.pipeline import (
    ApplyPolicy,
    Authenticate,
    BanList,
    Call,
    DecodeBody,
    IdentifyClient,
    InlineSignals,
    MatchRoute,
    ReadBody,
    Receive,
    RecordCall,
    Scope,
    Send,
    Stage,
    TierLimits,
    ValidateRequest,
)
from distillguard.gateway.routes import RouteTable
from distillguard.signals.base import Signal

log = logging.getLogger("distillguard.gateway")

__all__ = ["Gateway", "GatewayConfig", "app_from_env", "error_body"]


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
    # the operator's own proxies (CIDR blocks): X-Forwarded-For entries they wrote are skipped
    trusted_proxies: list[str] = []
    tls_fingerprint_header: str | None = None
    asn_header: str | None = None  # where the edge passes the client's autonomous system number
    access_log: bool = False


_encode = msgspec.json.Encoder().encode
_LOCAL = frozenset({"/healthz", "/metrics", "/openapi.json"})


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
        upstream_key = os.environ.get(config.upstream_key_env, "")  # read once; never logged or echoed
        self._session: aiohttp.ClientSession | None = None
        self._started = False
        measured = metrics.GatewayMetrics()
        self.record = RecordCall(self.engine, self.calllog, self.monitor, config.access_log, measured)
        # the request path, stacked once: see `pipeline` for what each stage does
        self.stages: tuple[Stage, ...] = (
            IdentifyClient(
                trust_forwarded_for=config.trust_forwarded_for,
                trusted_proxies=parse_networks(config.trusted_proxies),
                tls_fingerprint_header=config.tls_fingerprint_header,
                asn_header=config.asn_header,
            ),
            Authenticate(self.keys),
            MatchRoute(RouteTable()),
            ReadBody(config.max_body_bytes),
            DecodeBody(policy.requests),
            ValidateRequest(policy.requests),
            BanList(self.engine, measured),
            TierLimits(self.engine, measured),
            InlineSignals(self.engine, measured),
            ApplyPolicy(self.engine, measured),
            Forward(
                self.upstream,
                self._client_session,
                f"Bearer {upstream_key}" if upstream_key else None,
                self.record,
                self.calllog,
                policy.reasoning.summary_chars,
            ),
        )
        self._openapi = _encode(openapi_document())

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the gateway has not started (lifespan startup)")
        return self._session

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
        self.engine.warm_up()
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
        if scope["path"] in _LOCAL:
            await self._local(scope, send)
            return
        call = Call("gw-" + uuid.uuid4().hex, datetime.now(UTC), scope=scope, receive=receive, send=send)
        try:
            for stage in self.stages:
                await stage(call)
        except Refusal as refusal:
            await self._refuse(call, refusal)
        except Exception:  # a bug: the caller gets a 500 in OpenAI's format, and the call is logged
            log.exception("call %s failed", call.event_id)
            await self._refuse(
                call, Refusal(500, "The gateway failed on this request.", "api_error", code="internal_error")
            )

    async def _refuse(self, call: Call, refusal: Refusal) -> None:
        body = refusal.body()
        call.status, call.failure = refusal.status, refusal.message
        call.response = msgspec.json.decode(body)
        self.record(call)
        if call.disconnected:
            return
        headers = [(b"x-request-id", call.event_id.encode()), *refusal.headers]
        if refusal.status == 429 and call.decision.retry_after_s:
            # the OpenAI SDKs wait this long before a retry
            headers.append((b"retry-after", str(max(1, math.ceil(call.decision.retry_after_s))).encode()))
        await send_body(call, refusal.status, body, b"application/json", headers)

    async def _local(self, scope: Scope, send: Send) -> None:
        path = scope["path"]
        call = Call("", datetime.now(UTC), scope=scope, send=send, started=time.perf_counter())
        if scope["method"] not in ("GET", "HEAD"):
            body = error_body(f"Method {scope['method']} not allowed on {path}.", "invalid_request_error")
            await send_body(call, 405, body, b"application/json", [(b"allow", b"GET")])
        elif path == "/healthz":
            healthy = self._started and self.state.healthy
            report: dict[str, Any] = {
                "status": "ok" if healthy else "degraded",
                "state": self.state.name,
                "bans": msgspec.to_builtins(self.state.ban_list_report()),
            }
            await send_body(call, 200 if healthy else 503, _encode(report), b"application/json")
        elif path == "/metrics":
            body, content_type = metrics.render()
            await send_body(call, 200, body, content_type.encode())
        else:
            await send_body(call, 200, self._openapi, b"application/json")


def app_from_env() -> Gateway:
    """Factory for worker processes: the configuration travels in DISTILLGUARD_GATEWAY_CONFIG."""
    raw = os.environ.get("DISTILLGUARD_GATEWAY_CONFIG")
    if not raw:
        raise RuntimeError(
            "DISTILLGUARD_GATEWAY_CONFIG is not set; start the gateway with `distillguard serve`"
        )
    return Gateway(msgspec.json.decode(raw, type=GatewayConfig))
