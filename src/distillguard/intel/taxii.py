"""`distillguard intel serve`: a TAXII 2.1 server over our published collection, read-only for peers.

Built on the review UI's stack (Starlette, argon2id, the case store's database) rather than on
`medallion` (see docs/intel.md for why). Every route needs a peer's credentials (HTTP Basic: the
peer's name and secret, checked against an argon2id hash); a peer sees only the collections it was
given; nothing can be written (POST and DELETE are 403). Responses use TAXII's media type
(`application/taxii+json;version=2.1`) and its error message body; `added_after`, `limit`/`next`
pagination (a stateless cursor, so any worker can serve the next page), `match[id|type|version|
spec_version]` and the `X-TAXII-Date-Added-First/Last` headers are supported.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from distillguard.intel.stix import STIX_MEDIA_TYPE
from distillguard.intel.store import COLLECTION_ID, IntelStore, parse_taxii_time, taxii_time

log = logging.getLogger("distillguard.intel.taxii")

TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_MATCH_VALUES = 100
LOCKOUT_FAILURES = 5
LOCKOUT_S = 60.0
AUTH_CACHE_S = 60.0  # a verified secret is not re-hashed (argon2id, ~50 ms) on every page
MAX_TRACKED = 10_000
_OBJECT_ID = re.compile(
    r"^[a-z][a-z0-9-]{0,60}--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
_TYPE = re.compile(r"^[a-z][a-z0-9-]{0,60}$")
_ROOT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
FILTERS = {
    "added_after",
    "limit",
    "next",
    "match[id]",
    "match[type]",
    "match[version]",
    "match[spec_version]",
}


class TaxiiError(Exception):
    """An error a client gets as TAXII's error message body with its HTTP status."""

    def __init__(self, status: int, title: str, description: str = "", headers: dict[str, str] | None = None):
        super().__init__(title)
        self.status, self.title, self.description, self.headers = status, title, description, headers or {}


def taxii_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type=TAXII_MEDIA_TYPE,
        headers=headers,
    )


def error_response(error: TaxiiError) -> Response:
    body = {"title": error.title, "http_status": str(error.status)}
    if error.description:
        body["description"] = error.description
    return taxii_response(body, error.status, error.headers)


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"no-store"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass(frozen=True)
class Collection:
    collection_id: str
    title: str
    description: str

    def resource(self) -> dict[str, Any]:
        return {
            "id": self.collection_id,
            "title": self.title,
            "description": self.description,
            "can_read": True,
            "can_write": False,
            "media_types": [STIX_MEDIA_TYPE],
        }


Handler = Callable[[Request, str, list[str]], Awaitable[Response]]


class TaxiiServer:
    """The routes, bound to the intel store and the collections it serves."""

    def __init__(
        self,
        store: IntelStore,
        collections: list[Collection],
        *,
        title: str,
        api_root: str = "distillguard",
        publish: Callable[[], Any] | None = None,
        publish_s: float = 10.0,
    ) -> None:
        if not _ROOT.match(api_root):
            raise ValueError("api root: 1-40 characters of a-z 0-9 _ -")
        for collection in collections:
            if not COLLECTION_ID.match(collection.collection_id):
                raise ValueError(f"collection id {collection.collection_id!r}: expected a lower-case UUID")
        self.store = store
        self.collections = {c.collection_id: c for c in collections}
        self.title = title
        self.root = api_root
        self.publish = publish
        self.publish_s = publish_s
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}
        self._verified: dict[str, tuple[str, list[str], float]] = {}
        self._cache_key = secrets.token_bytes(
            32
        )  # verified-secret cache keys are useless outside this process

    # ---- plumbing ----------------------------------------------------------------------------
    async def _peer(self, request: Request) -> tuple[str, list[str]]:
        header = request.headers.get("authorization", "")
        challenge = {"WWW-Authenticate": 'Basic realm="DistillGuard TAXII", charset="UTF-8"'}
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise TaxiiError(
                401, "Authentication required", "send the peer name and secret (HTTP Basic)", challenge
            )
        try:
            name, sep, secret = (
                base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            raise TaxiiError(
                401, "Authentication required", "malformed Basic credentials", challenge
            ) from None
        if not sep or not name or len(name) > 40 or len(secret) > 1024:
            raise TaxiiError(401, "Authentication required", "malformed Basic credentials", challenge)
        client = request.client.host if request.client else "?"
        attempt = (name, client)
        count, until = self._failures.get(attempt, (0, 0.0))
        if until > time.time():
            raise TaxiiError(
                429, "Too many failed attempts", "wait a minute", {"Retry-After": str(int(LOCKOUT_S))}
            )
        token = hashlib.blake2b(f"{name}\x00{secret}".encode(), key=self._cache_key).hexdigest()
        cached = self._verified.get(token)
        if cached is not None and cached[2] > time.monotonic():
            return cached[0], cached[1]
        allowed = await run_in_threadpool(self.store.authenticate, name, secret)
        if allowed is None:
            count += 1
            if len(self._failures) >= MAX_TRACKED:
                self._failures.clear()
            self._failures[attempt] = (
                (0, time.time() + LOCKOUT_S) if count >= LOCKOUT_FAILURES else (count, 0.0)
            )
            log.info("failed TAXII authentication from %s", client)  # never the name: it may be a secret
            raise TaxiiError(401, "Authentication failed", "unknown peer or wrong secret", challenge)
        self._failures.pop(attempt, None)
        if len(self._verified) >= MAX_TRACKED:
            self._verified.clear()
        self._verified[token] = (name, allowed, time.monotonic() + AUTH_CACHE_S)
        return name, allowed

    @staticmethod
    def _accepts(request: Request) -> None:
        accept = request.headers.get("accept")
        if not accept:
            return
        for item in accept.split(","):
            parts = [p.strip().lower() for p in item.split(";")]
            media, params = parts[0], dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            version = params.get("version")
            if media in ("*/*", "application/*") or (
                media == "application/taxii+json" and version in (None, "2.1")
            ):
                return
        raise TaxiiError(406, "Not Acceptable", f"this server answers {TAXII_MEDIA_TYPE} only")

    def route(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                peer, allowed = await self._peer(request)
                self._accepts(request)
                if request.method not in ("GET", "HEAD"):
                    raise TaxiiError(403, "Forbidden", "this server is read-only for peers")
                return await handler(request, peer, allowed)
            except TaxiiError as error:
                return error_response(error)

        return endpoint

    def _collection(self, request: Request, allowed: list[str]) -> Collection:
        self._root(request)
        collection_id = request.path_params["collection_id"]
        collection = self.collections.get(collection_id)
        if collection is None or collection_id not in allowed:
            # a collection this peer may not read is indistinguishable from one that does not exist
            raise TaxiiError(
                404, "Collection not found", f"no collection {collection_id[:60]!r} for this peer"
            )
        return collection

    def _root(self, request: Request) -> None:
        if request.path_params["api_root"] != self.root:
            raise TaxiiError(404, "API root not found", f"this server's API root is /{self.root}/")

    # ---- resources ---------------------------------------------------------------------------
    async def discovery(self, request: Request, peer: str, allowed: list[str]) -> Response:
        root = str(request.base_url).rstrip("/") + f"/{self.root}/"
        return taxii_response(
            {
                "title": self.title,
                "description": "Distillation actors' indicators as keyed hashes (STIX 2.1), read-only for peers.",
                "default": root,
                "api_roots": [root],
            }
        )

    async def api_root(self, request: Request, peer: str, allowed: list[str]) -> Response:
        self._root(request)
        return taxii_response(
            {
                "title": self.title,
                "description": "Read-only: peers fetch; nothing is accepted.",
                "versions": [TAXII_MEDIA_TYPE],
                "max_content_length": 0,
            }
        )

    async def collections_(self, request: Request, peer: str, allowed: list[str]) -> Response:
        self._root(request)
        visible = [c.resource() for cid, c in sorted(self.collections.items()) if cid in allowed]
        return taxii_response({"collections": visible} if visible else {})

    async def collection(self, request: Request, peer: str, allowed: list[str]) -> Response:
        return taxii_response(self._collection(request, allowed).resource())

    async def objects(self, request: Request, peer: str, allowed: list[str]) -> Response:
        collection = self._collection(request, allowed)
        return await self._page(request, peer, collection, manifest=False)

    async def manifest(self, request: Request, peer: str, allowed: list[str]) -> Response:
        collection = self._collection(request, allowed)
        return await self._page(request, peer, collection, manifest=True)

    async def object_(self, request: Request, peer: str, allowed: list[str]) -> Response:
        collection = self._collection(request, allowed)
        object_id = _object_id(request.path_params["object_id"])
        return await self._page(request, peer, collection, manifest=False, object_id=object_id)

    async def versions(self, request: Request, peer: str, allowed: list[str]) -> Response:
        collection = self._collection(request, allowed)
        object_id = _object_id(request.path_params["object_id"])
        query = _query(request, allowed_filters={"added_after", "limit", "next", "match[spec_version]"})
        rows = await run_in_threadpool(
            lambda: self.store.objects(
                collection.collection_id,
                added_after=query.added_after,
                after=query.after,
                ids=[object_id],
                versions="all",
                limit=query.limit,
            )
        )
        if not rows and query.after is None and query.added_after is None:
            raise TaxiiError(404, "Object not found", f"no object {object_id} in this collection")
        more = len(rows) > query.limit
        rows = rows[: query.limit] if query.spec_ok else []
        body: dict[str, Any] = {"more": more}
        if more:
            body["next"] = _cursor(rows[-1])
        if rows:
            body["versions"] = [taxii_time(_aware(r.version)) for r in rows]
        return taxii_response(body, headers=_added_headers(rows))

    async def status(self, request: Request, peer: str, allowed: list[str]) -> Response:
        self._root(request)
        raise TaxiiError(
            404, "Status not found", "this server accepts no writes, so it has no status resources"
        )

    async def _page(
        self,
        request: Request,
        peer: str,
        collection: Collection,
        *,
        manifest: bool,
        object_id: str | None = None,
    ) -> Response:
        query = _query(request, allowed_filters=FILTERS - {"match[id]"} if object_id else FILTERS)
        ids = [object_id] if object_id else query.ids
        rows = await run_in_threadpool(
            lambda: self.store.objects(
                collection.collection_id,
                added_after=query.added_after,
                after=query.after,
                ids=ids,
                types=query.types,
                versions=query.versions,
                limit=query.limit,
            )
        )
        if object_id and not rows and query.after is None and query.added_after is None:
            raise TaxiiError(404, "Object not found", f"no object {object_id} in this collection")
        more = len(rows) > query.limit
        rows = rows[: query.limit] if query.spec_ok else []
        body: dict[str, Any] = {"more": more}
        if more:
            body["next"] = _cursor(rows[-1])
        if rows:
            if manifest:
                body["objects"] = [
                    {
                        "id": r.object_id,
                        "date_added": taxii_time(_aware(r.date_added)),
                        "version": taxii_time(_aware(r.version)),
                        "media_type": STIX_MEDIA_TYPE,
                    }
                    for r in rows
                ]
            else:
                body["objects"] = [json.loads(r.body) for r in rows]
                await run_in_threadpool(
                    self.store.delivered, peer, [r.case_id for r in rows if r.case_id is not None]
                )
        return taxii_response(body, headers=_added_headers(rows))

    # ---- the application ---------------------------------------------------------------------
    def asgi(self) -> Starlette:
        r = self.route
        base = "/{api_root}/collections/{collection_id}"
        routes = [
            Route("/taxii2/", r(self.discovery), methods=["GET", "HEAD", "POST", "PUT", "DELETE"]),
            Route("/{api_root}/", r(self.api_root), methods=["GET", "HEAD", "POST", "PUT", "DELETE"]),
            Route(
                "/{api_root}/collections/", r(self.collections_), methods=["GET", "HEAD", "POST", "DELETE"]
            ),
            Route(base + "/", r(self.collection), methods=["GET", "HEAD", "POST", "DELETE"]),
            Route(base + "/objects/", r(self.objects), methods=["GET", "HEAD", "POST", "DELETE"]),
            Route(base + "/manifest/", r(self.manifest), methods=["GET", "HEAD", "POST", "DELETE"]),
            Route(base + "/objects/{object_id}/", r(self.object_), methods=["GET", "HEAD", "POST", "DELETE"]),
            Route(
                base + "/objects/{object_id}/versions/",
                r(self.versions),
                methods=["GET", "HEAD", "POST", "DELETE"],
            ),
            Route(
                "/{api_root}/status/{status_id}/", r(self.status), methods=["GET", "HEAD", "POST", "DELETE"]
            ),
        ]

        async def not_found(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 500
            title = {404: "Not Found", 405: "Method Not Allowed"}.get(status, "Error")
            return error_response(TaxiiError(status, title, "TAXII 2.1 resources end with a slash"))

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            task = asyncio.create_task(self._publish_loop()) if self.publish is not None else None
            try:
                yield
            finally:
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

        return Starlette(
            routes=routes,
            middleware=[Middleware(_SecurityHeaders)],
            exception_handlers={HTTPException: not_found},
            lifespan=lifespan,
        )

    async def _publish_loop(self) -> None:
        publish = self.publish
        while publish is not None:
            try:
                await run_in_threadpool(publish)
            except Exception:  # a failed publish must not stop the next one; the log says why
                log.exception("publishing decided cases to the collection failed")
            await asyncio.sleep(self.publish_s)


@dataclass
class Query:
    added_after: datetime | None
    after: tuple[datetime, int] | None
    limit: int
    ids: list[str]
    types: list[str]
    versions: str | list[datetime]
    spec_ok: bool  # match[spec_version] admits 2.1 (else the answer is empty)


def _query(request: Request, allowed_filters: set[str]) -> Query:
    params = request.query_params
    for name in params:
        if name not in allowed_filters:
            raise TaxiiError(
                400,
                "Unsupported parameter",
                f"{name[:60]!r}: supported are {', '.join(sorted(allowed_filters))}",
            )
        if len(params.getlist(name)) > 1:
            raise TaxiiError(400, "Repeated parameter", f"{name}: give it once (values are comma-separated)")
    limit = DEFAULT_LIMIT
    if "limit" in params:
        try:
            limit = int(params["limit"])
        except ValueError:
            raise TaxiiError(400, "Bad limit", "limit: expected a positive integer") from None
        if limit < 1:
            raise TaxiiError(400, "Bad limit", "limit: expected a positive integer")
        limit = min(limit, MAX_LIMIT)
    added_after = None
    if "added_after" in params:
        try:
            added_after = parse_taxii_time(params["added_after"])
        except ValueError as error:
            raise TaxiiError(400, "Bad added_after", f"added_after: {error}") from None
    after = _read_cursor(params["next"]) if "next" in params else None
    ids = _list(params.get("match[id]"), "match[id]", _OBJECT_ID)
    types = _list(params.get("match[type]"), "match[type]", _TYPE)
    versions: str | list[datetime] = "last"
    raw = params.get("match[version]")
    if raw is not None:
        if raw in ("last", "first", "all"):
            versions = raw
        else:
            try:
                versions = [parse_taxii_time(v) for v in raw.split(",")[:MAX_MATCH_VALUES]]
            except ValueError as error:
                raise TaxiiError(
                    400, "Bad match[version]", f"last, first, all or timestamps: {error}"
                ) from None
    spec = params.get("match[spec_version]")
    spec_ok = spec is None or "2.1" in spec.split(",")
    return Query(added_after, after, limit, ids, types, versions, spec_ok)


def _list(raw: str | None, name: str, shape: re.Pattern[str]) -> list[str]:
    if raw is None:
        return []
    values = [v.strip() for v in raw.split(",")]
    if len(values) > MAX_MATCH_VALUES or not all(shape.match(v) for v in values):
        raise TaxiiError(400, f"Bad {name}", f"{name}: at most {MAX_MATCH_VALUES} comma-separated STIX names")
    return values


def _object_id(raw: str) -> str:
    if not _OBJECT_ID.match(raw):
        raise TaxiiError(404, "Object not found", "not a STIX identifier")
    return raw


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _cursor(row: Any) -> str:
    raw = json.dumps([taxii_time(_aware(row.date_added)), int(row.seq)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_cursor(token: str) -> tuple[datetime, int]:
    try:
        stamp, seq = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return parse_taxii_time(str(stamp)), int(seq)
    except (ValueError, TypeError, binascii.Error):
        raise TaxiiError(400, "Bad next", "next: not a cursor this server gave out") from None


def _added_headers(rows: list[Any]) -> dict[str, str]:
    if not rows:
        return {}
    added = sorted(_aware(r.date_added) for r in rows)
    return {
        "X-TAXII-Date-Added-First": taxii_time(added[0]),
        "X-TAXII-Date-Added-Last": taxii_time(added[-1]),
    }
