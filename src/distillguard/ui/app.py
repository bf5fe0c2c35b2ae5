"""`distillguard ui`: the investigators' web interface over the case store.

Starlette (a small ASGI toolkit: routing, form parsing, a test client) and Jinja2 with autoescaping
on every template: everything shown from a call (prompts, user agents, end-user ids, account ids) is
attacker-controlled and is rendered as text. The pages carry no script at all, and the
Content-Security-Policy forbids any, so a payload that slipped through would still not run.

Sessions live in the case store: the cookie carries only a random token, so logging out (or a
password or role change) ends a session for good, across restarts and for every copy of the cookie;
sessions end after `idle_s` without a request and `absolute_s` after login whatever happens. Failed
logins lock the user name (whatever the address) and the address (whatever the user name) with
exponential backoff, counted in the store. Every route requires a logged-in user; deciding requires
the investigator or admin role; state-changing requests (forms and the JSON API) must carry the
session's CSRF token (the login form a token bound to a pre-login cookie), and cookies are
SameSite=Strict. A decision, its audit entry and its enforcement are committed together; the
enforcement is then delivered from the store's outbox, retried until it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode

import jinja2
import msgspec
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from distillguard.cases.evidence import sync_holds
from distillguard.cases.store import (
    DECISIONS,
    MIN_JUSTIFICATION,
    ROLES,
    STATUSES,
    CaseStore,
    CaseStoreError,
    LoginLimits,
    Session,
)
from distillguard.enforcement.decisions import Delivery, deliver_outbox, operations, plan, with_pending
from distillguard.enforcement.state import EnforcementState
from distillguard.intel.store import IntelStore
from distillguard.intel.views import case_sharing, overview
from distillguard.report.svg import bars, graph, hbars

log = logging.getLogger("distillguard.ui")

CAN_DECIDE = ("investigator", "admin")
SESSION_MAX_AGE_S = 8 * 3600  # absolute: a stolen session dies within a working day whatever it does
SESSION_IDLE_S = 30 * 60  # idle: an unattended browser is logged out

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", _CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("distillguard.ui", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = lambda value: (
        value.strftime("%Y-%m-%d %H:%M UTC") if isinstance(value, datetime) else "–"
    )
    env.filters["pct"] = lambda value: f"{value:.0%}" if isinstance(value, int | float) else "–"
    return env


Handler = Callable[[Request], Awaitable[Response]]


class ReviewApp:
    """The routes, bound to one case store and one enforcement state."""

    def __init__(
        self,
        store: CaseStore,
        state: EnforcementState,
        *,
        feedback_labels: Path | None = None,
        sync_s: float = 2.0,
        deliver_s: float = 2.0,
        idle_s: float = SESSION_IDLE_S,
        absolute_s: float = SESSION_MAX_AGE_S,
        limits: LoginLimits | None = None,
    ) -> None:
        self.store = store
        self.state = state
        self.feedback_labels = feedback_labels
        self.sync_s = sync_s
        self.deliver_s = deliver_s
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self.limits = limits or LoginLimits()
        self.env = _environment()
        self.delivery = Delivery(0, 0)  # the last delivery attempt, shown on case pages
        self._secret = b""
        self._cookie = "dg_session"
        self._https_only = False
        self._sync_lock = asyncio.Lock()
        self._deliver_lock = asyncio.Lock()  # one deliverer per process: the outbox keeps order
        self._decide_lock = asyncio.Lock()  # a plan is made against the list the last one left
        self.intel = IntelStore.open(store)  # sharing: what peers sent, what we shared, withheld cases

    # ---- plumbing ----------------------------------------------------------------------------
    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        session: Session | None = getattr(request.state, "session", None)
        context.setdefault("user", session.username if session else None)
        context.setdefault("role", session.role if session else None)
        context.setdefault("csrf", session.csrf if session else "")
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status)

    @staticmethod
    def _api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def _set_cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self._https_only,
            httponly=True,
            samesite="strict",
        )

    def _end_cookie(self, response: Response) -> Response:
        response.delete_cookie(
            self._cookie, path="/", secure=self._https_only, httponly=True, samesite="strict"
        )
        return response

    def authenticated(self, roles: tuple[str, ...] = ROLES) -> Callable[[Handler], Handler]:
        """Login required (and one of `roles`); CSRF token required on every non-GET request."""

        def wrap(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                token = request.cookies.get(self._cookie, "")
                session = (
                    await run_in_threadpool(self.store.session, token, idle_s=self.idle_s) if token else None
                )
                if session is None:
                    # never logged in, logged out, idle or too old, or the password or role changed
                    if self._api(request):
                        answer: Response = JSONResponse({"error": "authentication required"}, status_code=401)
                    else:
                        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                        answer = RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
                    return self._end_cookie(answer) if token else answer
                request.state.session = session
                if request.method != "GET" and not await self._csrf_ok(request, session.csrf):
                    return self._forbidden(request, "missing or wrong CSRF token; reload the page and retry")
                if session.role not in roles:
                    return self._forbidden(request, f"your role ({session.role}) may not do this")
                return await handler(request)

            return endpoint

        return wrap

    @classmethod
    async def _csrf_ok(cls, request: Request, expected: str) -> bool:
        presented = request.headers.get("x-csrf-token", "")
        if (
            not presented
            and not cls._api(request)  # the JSON API takes the token in its header only
            and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            )
        ):
            presented = str((await request.form()).get("csrf_token", ""))
        return bool(expected) and hmac.compare_digest(expected.encode(), presented.encode())

    def _forbidden(self, request: Request, message: str) -> Response:
        if self._api(request):
            return JSONResponse({"error": message}, status_code=403)
        return self.render(request, "error.html", status=403, message=message)

    # ---- login -------------------------------------------------------------------------------
    # Before login there is no session to hold a CSRF token: the login form's token is an HMAC of a
    # random pre-login cookie under the app's secret ("signed double submit"), so a page elsewhere
    # can neither read nor plant a matching pair and log the victim into the attacker's account.
    def _login_token(self, nonce: str) -> str:
        return hmac.new(self._secret, b"login\n" + nonce.encode(), hashlib.sha256).hexdigest()

    async def login_form(self, request: Request) -> Response:
        return self._fresh_login_form(request, 200, _safe_next(request.query_params.get("next")), None)

    def _fresh_login_form(self, request: Request, status: int, target: str, error: str | None) -> Response:
        """The login form, with a pre-login cookie if the browser has none yet."""
        nonce = request.cookies.get("dg_login", "")
        fresh = not (16 <= len(nonce) <= 100)
        if fresh:
            nonce = secrets.token_urlsafe(32)
        response = self.render(
            request, "login.html", status=status, next=target, error=error, csrf=self._login_token(nonce)
        )
        if fresh:
            self._set_cookie(response, "dg_login", nonce, max_age=3600)
        return response

    def _login_page(self, request: Request, status: int, target: str, error: str) -> Response:
        nonce = request.cookies.get("dg_login", "")
        return self.render(
            request, "login.html", status=status, next=target, error=error, csrf=self._login_token(nonce)
        )

    async def login(self, request: Request) -> Response:
        form = await request.form()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        target = _safe_next(str(form.get("next", "/")))
        nonce = request.cookies.get("dg_login", "")
        if not (16 <= len(nonce) <= 100) or not hmac.compare_digest(
            self._login_token(nonce).encode(), str(form.get("csrf_token", "")).encode()
        ):
            return self._fresh_login_form(request, 403, target, "The login form expired; try again.")
        client = request.client.host if request.client else "unknown"
        wait_s = await run_in_threadpool(self.store.login_locked, username, client, self.limits)
        if wait_s > 0:
            return self._locked(request, target, wait_s)
        role = await run_in_threadpool(self.store.authenticate, username, password)
        if role is None:
            locked_s = await run_in_threadpool(self.store.login_failed, username, client, self.limits)
            # the user name is not logged: people type their password into it by mistake
            log.info("failed login from %s", client)
            if locked_s > 0:
                log.warning("logins locked for %.0f s after repeated failures (from %s)", locked_s, client)
            return self._login_page(request, 401, target, "Wrong user name or password.")
        await run_in_threadpool(self.store.login_succeeded, username)
        token, _session = await run_in_threadpool(
            lambda: self.store.open_session(username, lifetime_s=self.absolute_s, address=client)
        )
        await run_in_threadpool(self.store.note, username, "login", {"address": client})
        response = RedirectResponse(target, status_code=303)
        # a new token at every login: a token planted before it (fixation) opens nothing
        self._set_cookie(response, self._cookie, token, max_age=int(self.absolute_s))
        response.delete_cookie(
            "dg_login", path="/", secure=self._https_only, httponly=True, samesite="strict"
        )
        return response

    def _locked(self, request: Request, target: str, wait_s: float) -> Response:
        minutes = max(1, math.ceil(wait_s / 60))
        response = self._login_page(
            request,
            429,
            target,
            f"Too many failed logins; try again in {minutes} minute{'s' if minutes > 1 else ''}.",
        )
        response.headers["retry-after"] = str(math.ceil(wait_s))
        return response

    async def logout(self, request: Request) -> Response:
        # revoked in the store: the cookie, and any copy of it, stops working, restart or not
        user = await run_in_threadpool(self.store.revoke_session, request.cookies.get(self._cookie, ""))
        if user is not None:
            await run_in_threadpool(self.store.note, user, "logout", {})
        return self._end_cookie(RedirectResponse("/login", status_code=303))

    # ---- pages -------------------------------------------------------------------------------
    def _filters(self, request: Request) -> dict[str, Any]:
        params = request.query_params
        status = params.get("status", "open")
        if status not in (*STATUSES, "all"):
            raise CaseStoreError(f"status: unknown value {status!r}")
        verdict = params.get("verdict") or None
        try:
            min_risk = float(params.get("min_risk") or 0)
        except ValueError:
            raise CaseStoreError("min_risk: must be a number") from None
        return {
            "status": None if status == "all" else status,
            "verdict": verdict,
            "min_risk": min_risk,
            "account": params.get("account") or None,
        }

    async def _sync(self) -> None:
        async with self._sync_lock:  # the page and the loop must not open a hold's case twice
            await run_in_threadpool(sync_holds, self.store, self.state.entries())

    async def queue(self, request: Request) -> Response:
        await self._sync()
        try:
            filters = self._filters(request)
        except CaseStoreError as error:
            return self.render(request, "error.html", status=400, message=str(error))
        rows = await run_in_threadpool(lambda: self.store.queue(**filters))
        return self.render(request, "queue.html", cases=rows, filters=request.query_params, statuses=STATUSES)

    async def case_page(self, request: Request) -> Response:
        case_id = request.path_params["case_id"]
        try:
            case = await run_in_threadpool(self.store.case, case_id)
        except CaseStoreError as error:
            return self.render(request, "error.html", status=404, message=str(error))
        return self.render(
            request,
            "case.html",
            case=case,
            charts=_charts(case),
            decisions=list(DECISIONS),
            can_decide=request.state.session.role in CAN_DECIDE,
            pending=await run_in_threadpool(self.store.pending_count, case_id),
            delivery_error=self.delivery.error,
            min_justification=MIN_JUSTIFICATION,
            error=request.query_params.get("error"),
            sharing=await run_in_threadpool(case_sharing, self.intel, case),
        )

    async def intel_page(self, request: Request) -> Response:
        return self.render(request, "intel.html", intel=await run_in_threadpool(overview, self.intel))

    async def sharing_form(self, request: Request) -> Response:
        case_id = request.path_params["case_id"]
        withhold = str((await request.form()).get("withhold", "")) == "1"
        try:
            await run_in_threadpool(
                self.store.set_withhold, case_id, request.state.session.username, withhold
            )
        except CaseStoreError as error:
            return RedirectResponse(f"/cases/{case_id}?error={quote(str(error))}", status_code=303)
        return RedirectResponse(f"/cases/{case_id}", status_code=303)

    async def api_sharing(self, request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse({"error": "Content-Type must be application/json"}, status_code=415)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body: not valid JSON"}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("withhold"), bool):
            return JSONResponse({"error": "withhold: expected true or false"}, status_code=400)
        try:
            result = await run_in_threadpool(
                self.store.set_withhold,
                request.path_params["case_id"],
                request.state.session.username,
                body["withhold"],
            )
        except CaseStoreError as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        return JSONResponse(result)

    async def audit_page(self, request: Request) -> Response:
        entries = await run_in_threadpool(self.store.audit, None, 1000)
        return self.render(request, "audit.html", entries=entries)

    # ---- decisions ---------------------------------------------------------------------------
    async def deliver(self) -> Delivery:
        """Send what the outbox holds to the enforcement list (after each decision, every
        `deliver_s`, and at start for whatever a stopped process left)."""
        async with self._deliver_lock:
            self.delivery = await deliver_outbox(self.store, self.state)
            return self.delivery

    async def _decide(
        self, request: Request, case_id: int, action: str, justification: str
    ) -> dict[str, Any]:
        if action not in DECISIONS:
            raise CaseStoreError(f"action: must be one of {', '.join(DECISIONS)}")
        if len(justification.strip()) < MIN_JUSTIFICATION:
            raise CaseStoreError(f"justification: at least {MIN_JUSTIFICATION} characters are required")
        user = request.state.session.username
        async with self._decide_lock:
            case = await run_in_threadpool(self.store.case, case_id)
            if case["status"] == "merged":
                raise CaseStoreError(f"case {case_id} was merged into case {case['linked_case_id']}")
            await self.deliver()  # earlier decisions first; what is still undelivered counts anyway
            pending = await run_in_threadpool(self.store.pending_enforcement, 100_000)
            current = with_pending(self.state.entries(), (p.operation for p in pending))
            reason = f"case {case_id}: {action} by {user}: {justification.strip()[:200]}"
            decided = plan(case, action, current, reason)
            feedback = (self.feedback_labels, case) if action == "clear" and self.feedback_labels else None
            detail = decided.summary()
            if feedback is not None:
                detail["feedback_accounts"] = len(case["accounts"])
            result = await run_in_threadpool(
                lambda: self.store.decide(
                    case_id,
                    user,
                    action,
                    justification,
                    detail,
                    enforcement=operations(decided, feedback=feedback),
                )
            )
        delivery = await self.deliver()
        left = await run_in_threadpool(self.store.pending_count, case_id)
        result["pending"] = left
        result["delivery"] = "pending" if left else "delivered"
        if left:
            result["delivery_error"] = delivery.error
        return result

    async def decide_form(self, request: Request) -> Response:
        case_id = request.path_params["case_id"]
        form = await request.form()
        try:
            await self._decide(
                request, case_id, str(form.get("action", "")), str(form.get("justification", ""))
            )
        except CaseStoreError as error:
            return RedirectResponse(f"/cases/{case_id}?error={quote(str(error))}", status_code=303)
        return RedirectResponse(f"/cases/{case_id}", status_code=303)

    async def api_cases(self, request: Request) -> Response:
        await self._sync()
        try:
            filters = self._filters(request)
        except CaseStoreError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        rows = await run_in_threadpool(lambda: self.store.queue(**filters))
        return JSONResponse(msgspec.to_builtins(rows))

    async def api_case(self, request: Request) -> Response:
        try:
            case = await run_in_threadpool(self.store.case, request.path_params["case_id"])
        except CaseStoreError as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        return JSONResponse(msgspec.to_builtins(case))

    async def api_decide(self, request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse({"error": "Content-Type must be application/json"}, status_code=415)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body: not valid JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body: expected an object"}, status_code=400)
        try:
            result = await self._decide(
                request,
                request.path_params["case_id"],
                str(body.get("action", "")),
                str(body.get("justification", "")),
            )
        except CaseStoreError as error:
            return JSONResponse(
                {"error": str(error)}, status_code=400 if "no case" not in str(error) else 404
            )
        # recorded either way; 202 while its enforcement waits in the outbox for the list to be back
        return JSONResponse(result, status_code=202 if result["pending"] else 200)

    async def api_audit(self, request: Request) -> Response:
        return JSONResponse(msgspec.to_builtins(await run_in_threadpool(self.store.audit, None, 1000)))

    # ---- the application ---------------------------------------------------------------------
    def asgi(
        self, secret_key: str, *, https_only: bool = False, forwarded_allow_ips: str | None = None
    ) -> ASGIApp:
        """The ASGI app. `secret_key` signs the login form's token (sessions need no key: they are
        in the store). `forwarded_allow_ips`: the proxies whose X-Forwarded-For names the client
        (uvicorn's ProxyHeadersMiddleware takes the right-most address not among them, the one the
        last trusted proxy saw); without it the connecting address is the client, as lockout by
        address needs when nothing trusted sits in front."""
        self._secret = secret_key.encode()
        self._https_only = https_only
        # `__Host-`: the browser accepts the cookie only from this host over HTTPS, path /
        self._cookie = "__Host-dg_session" if https_only else "dg_session"
        auth, decide = self.authenticated(), self.authenticated(CAN_DECIDE)

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            await self.state.start()
            tasks = [asyncio.create_task(self._sync_loop()), asyncio.create_task(self._deliver_loop())]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await self.state.close()

        routes = [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", auth(self.logout), methods=["POST"]),
            Route("/", auth(self.queue), methods=["GET"]),
            Route("/cases/{case_id:int}", auth(self.case_page), methods=["GET"]),
            Route("/cases/{case_id:int}/decision", decide(self.decide_form), methods=["POST"]),
            Route("/audit", auth(self.audit_page), methods=["GET"]),
            Route("/intel", auth(self.intel_page), methods=["GET"]),
            Route("/cases/{case_id:int}/sharing", decide(self.sharing_form), methods=["POST"]),
            Route("/api/cases/{case_id:int}/sharing", decide(self.api_sharing), methods=["POST"]),
            Route("/api/cases", auth(self.api_cases), methods=["GET"]),
            Route("/api/cases/{case_id:int}", auth(self.api_case), methods=["GET"]),
            Route("/api/cases/{case_id:int}/decision", decide(self.api_decide), methods=["POST"]),
            Route("/api/audit", auth(self.api_audit), methods=["GET"]),
        ]
        app: ASGIApp = Starlette(routes=routes, middleware=[Middleware(_SecurityHeaders)], lifespan=lifespan)
        if forwarded_allow_ips:
            from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

            # uvicorn types its ASGI callables more narrowly than Starlette; the protocol is the same
            proxied = ProxyHeadersMiddleware(app, trusted_hosts=forwarded_allow_ips)  # type: ignore[arg-type]
            app = cast(ASGIApp, proxied)
        return app

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_s)
            try:
                await self._sync()
            except Exception:  # a failed sync must not stop the next one; the log says why
                log.exception("syncing recidivism holds into cases failed")

    async def _deliver_loop(self) -> None:
        failures = 0
        while True:
            try:
                failures = failures + 1 if (await self.deliver()).error else 0
            except Exception:  # the store itself unreachable: report, retry on the next round
                log.exception("delivering enforcement from the outbox failed")
                failures += 1
            # while the list stays unreachable, back off (up to a minute) rather than hammer it;
            # a new decision still tries at once
            await asyncio.sleep(min(60.0, self.deliver_s * 2 ** min(failures, 6)))


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no `//evil`): an open redirect otherwise."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _charts(case: dict[str, Any]) -> dict[str, str]:
    """Activity per day and hour over the case's accounts, per-signal rates, the link graph."""
    daily: dict[str, int] = {}
    hours = [0] * 24
    rates: dict[str, float] = {}
    calls = 0
    for account in case["accounts"]:
        for day, n in (account["daily"] or {}).items():
            daily[day] = daily.get(day, 0) + int(n)
        for i, n in enumerate((account["hours"] or [])[:24]):
            hours[i] += int(n)
        weight = max(int(account["calls"] or 0), 1)
        calls += weight
        for name, rate in (account["signal_rates"] or {}).items():
            rates[name] = rates.get(name, 0.0) + float(rate) * weight
    days = sorted(daily)
    nodes = [(a["account_id"], a["verdict"]) for a in case["accounts"][:60]]
    edges = [(e["a"], e["b"], e["kind"]) for e in case["edges"] or [] if "a" in e and "b" in e]
    return {
        "daily": bars([daily[d] for d in days], width=520, title=f"calls per day ({days[0]} to {days[-1]})")
        if days
        else "<p>No daily activity recorded.</p>",
        "hours": bars([float(h) for h in hours], width=520, title="calls by hour of day (UTC)"),
        "signals": hbars(
            sorted(((k, v / calls) for k, v in rates.items()), key=lambda kv: -kv[1])[:12],
            width=520,
            title="share of calls on which each signal fired",
        ),
        "graph": graph(nodes, edges),
    }
