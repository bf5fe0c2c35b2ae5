"""`distillguard ui`: the investigators' web interface over the case store.

Starlette (a small ASGI toolkit: routing, signed-cookie sessions, form parsing, a test client) and
Jinja2 with autoescaping on every template: everything shown from a call (prompts, user agents,
end-user ids, account ids) is attacker-controlled and is rendered as text. The pages carry no
script at all, and the Content-Security-Policy forbids any, so a payload that slipped through
would still not run.

Every route requires a logged-in user; deciding requires the investigator or admin role;
state-changing requests (forms and the JSON API) must carry the session's CSRF token, and the
session cookie is SameSite=Strict. Decisions are delivered to the gateways' enforcement list
first, then recorded with the justification in the append-only audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import msgspec
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from distillguard.cases.evidence import sync_holds
from distillguard.cases.store import DECISIONS, MIN_JUSTIFICATION, ROLES, STATUSES, CaseStore, CaseStoreError
from distillguard.enforcement.decisions import deliver, plan, write_feedback
from distillguard.enforcement.state import EnforcementState, StateUnavailable
from distillguard.intel.store import IntelStore
from distillguard.intel.views import case_sharing, overview
from distillguard.report.svg import bars, graph, hbars

log = logging.getLogger("distillguard.ui")

CAN_DECIDE = ("investigator", "admin")
SESSION_MAX_AGE_S = 8 * 3600
LOCKOUT_FAILURES = 5
LOCKOUT_S = 60.0
MAX_TRACKED_FAILURES = 10_000

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
    ) -> None:
        self.store = store
        self.state = state
        self.feedback_labels = feedback_labels
        self.sync_s = sync_s
        self.env = _environment()
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}
        self._revoked: set[str] = set()  # session ids logged out (sessions expire after 8 h anyway)
        self._sync_lock = asyncio.Lock()
        self.intel = IntelStore.open(store)  # sharing: what peers sent, what we shared, withheld cases

    # ---- plumbing ----------------------------------------------------------------------------
    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("user", request.session.get("user"))
        context.setdefault("role", request.session.get("role"))
        context["csrf"] = request.session.get("csrf", "")
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status)

    @staticmethod
    def _api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def authenticated(self, roles: tuple[str, ...] = ROLES) -> Callable[[Handler], Handler]:
        """Login required (and one of `roles`); CSRF token required on every non-GET request."""

        def wrap(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                user = request.session.get("user")
                current = await run_in_threadpool(self.store.session_key, user) if user else None
                if (
                    current is None
                    or not hmac.compare_digest(current[1], str(request.session.get("key", "")))
                    or request.session.get("sid") in self._revoked
                    or time.time() - float(request.session.get("since", 0)) > SESSION_MAX_AGE_S
                ):
                    # never logged in, logged out, expired, or the user's password or role changed
                    request.session.clear()
                    if self._api(request):
                        return JSONResponse({"error": "authentication required"}, status_code=401)
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
                if request.method != "GET" and not await self._csrf_ok(request):
                    return self._forbidden(request, "missing or wrong CSRF token; reload the page and retry")
                role = current[0]
                request.session["role"] = role
                if role not in roles:
                    return self._forbidden(request, f"your role ({role}) may not do this")
                return await handler(request)

            return endpoint

        return wrap

    @classmethod
    async def _csrf_ok(cls, request: Request) -> bool:
        expected = request.session.get("csrf", "")
        presented = request.headers.get("x-csrf-token", "")
        if (
            not presented
            and not cls._api(request)  # the JSON API takes the token in its header only
            and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            )
        ):
            presented = str((await request.form()).get("csrf_token", ""))
        return bool(expected) and hmac.compare_digest(str(expected), presented)

    def _forbidden(self, request: Request, message: str) -> Response:
        if self._api(request):
            return JSONResponse({"error": message}, status_code=403)
        return self.render(request, "error.html", status=403, message=message)

    # ---- login -------------------------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        if not request.session.get("csrf"):
            request.session["csrf"] = secrets.token_urlsafe(32)
        return self.render(
            request, "login.html", next=_safe_next(request.query_params.get("next")), error=None
        )

    async def login(self, request: Request) -> Response:
        form = await request.form()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        target = _safe_next(str(form.get("next", "/")))
        if not await self._csrf_ok(request):
            return self.render(
                request, "login.html", status=403, next=target, error="Session expired; try again."
            )
        # keyed by user name and address: a stranger guessing cannot lock a user out elsewhere
        client = request.client.host if request.client else "?"
        attempt = (username, client)
        count, until = self._failures.get(attempt, (0, 0.0))
        if until > time.time():
            return self.render(
                request, "login.html", status=429, next=target, error="Too many attempts; wait a minute."
            )
        role = await run_in_threadpool(self.store.authenticate, username, password)
        if role is None:
            count += 1
            if len(self._failures) >= MAX_TRACKED_FAILURES:
                self._failures.clear()
            self._failures[attempt] = (
                (0, time.time() + LOCKOUT_S) if count >= LOCKOUT_FAILURES else (count, 0.0)
            )
            # the user name is not logged: people type their password into it by mistake
            log.info("failed login from %s", client)
            return self.render(
                request, "login.html", status=401, next=target, error="Wrong user name or password."
            )
        self._failures.pop(attempt, None)
        key = await run_in_threadpool(self.store.session_key, username)
        request.session.clear()  # a fresh session at login: no fixation
        request.session.update(
            user=username,
            role=role,
            key=key[1] if key else "",
            sid=secrets.token_urlsafe(16),
            since=time.time(),
            csrf=secrets.token_urlsafe(32),
        )
        await run_in_threadpool(self.store.note, username, "login", {})
        return RedirectResponse(target, status_code=303)

    async def logout(self, request: Request) -> Response:
        # the cookie is signed, not stored: a copy of it must stop working too
        self._revoked.add(str(request.session.get("sid")))
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

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
            can_decide=request.session.get("role") in CAN_DECIDE,
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
            await run_in_threadpool(self.store.set_withhold, case_id, str(request.session["user"]), withhold)
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
                str(request.session["user"]),
                body["withhold"],
            )
        except CaseStoreError as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        return JSONResponse(result)

    async def audit_page(self, request: Request) -> Response:
        entries = await run_in_threadpool(self.store.audit, None, 1000)
        return self.render(request, "audit.html", entries=entries)

    # ---- decisions ---------------------------------------------------------------------------
    async def _decide(
        self, request: Request, case_id: int, action: str, justification: str
    ) -> dict[str, Any]:
        if action not in DECISIONS:
            raise CaseStoreError(f"action: must be one of {', '.join(DECISIONS)}")
        if len(justification.strip()) < MIN_JUSTIFICATION:
            raise CaseStoreError(f"justification: at least {MIN_JUSTIFICATION} characters are required")
        user = str(request.session["user"])
        case = await run_in_threadpool(self.store.case, case_id)
        if case["status"] == "merged":
            raise CaseStoreError(f"case {case_id} was merged into case {case['linked_case_id']}")
        reason = f"case {case_id}: {action} by {user}: {justification.strip()[:200]}"
        decided = plan(case, action, self.state.entries(), reason)
        await deliver(self.state, decided)
        detail = decided.summary()
        if action == "clear" and self.feedback_labels is not None:
            detail["feedback_labels"] = await run_in_threadpool(write_feedback, self.feedback_labels, case)
        return await run_in_threadpool(self.store.decide, case_id, user, action, justification, detail)

    async def decide_form(self, request: Request) -> Response:
        case_id = request.path_params["case_id"]
        form = await request.form()
        try:
            await self._decide(
                request, case_id, str(form.get("action", "")), str(form.get("justification", ""))
            )
        except CaseStoreError as error:
            return RedirectResponse(f"/cases/{case_id}?error={quote(str(error))}", status_code=303)
        except StateUnavailable as error:
            return self.render(
                request, "error.html", status=503, message=f"enforcement not delivered: {error}"
            )
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
        except StateUnavailable as error:
            return JSONResponse({"error": f"enforcement not delivered: {error}"}, status_code=503)
        return JSONResponse(result)

    async def api_audit(self, request: Request) -> Response:
        return JSONResponse(msgspec.to_builtins(await run_in_threadpool(self.store.audit, None, 1000)))

    # ---- the application ---------------------------------------------------------------------
    def asgi(self, secret_key: str, *, https_only: bool = False) -> Starlette:
        auth, decide = self.authenticated(), self.authenticated(CAN_DECIDE)

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            await self.state.start()
            task = asyncio.create_task(self._sync_loop())
            try:
                yield
            finally:
                task.cancel()
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
        middleware = [
            Middleware(_SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=secret_key,
                session_cookie="dg_session",
                max_age=SESSION_MAX_AGE_S,
                same_site="strict",
                https_only=https_only,
            ),
        ]
        return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_s)
            try:
                await self._sync()
            except Exception:  # a failed sync must not stop the next one; the log says why
                log.exception("syncing recidivism holds into cases failed")


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
