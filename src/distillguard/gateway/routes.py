"""The routes the gateway forwards, as an allow-list: each names its method, its path template, the
endpoint it is logged as, and the query parameters that may travel upstream.

The caller's path string never reaches the upstream. A request path is matched segment by segment
against a template; a path parameter is percent-decoded exactly once and refused if it could
change what the upstream path means (`/`, `\\`, `..`, `?`, `#`, `%`, control characters); the
upstream path is rebuilt from the template with the parameter re-encoded. Query parameters not on
the route's list are dropped (and named in the call's notes), never forwarded.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode

from distillguard.gateway.errors import Refusal

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
RESPONSES = "/v1/responses"
EMBEDDINGS = "/v1/embeddings"
MODELS = "/v1/models"

# RFC 3986 `pchar` minus `%`: what a parameter may keep unencoded in the upstream path
_PATH_SAFE = "-._~!$&'()*+,;=:@"
_FORBIDDEN_IN_PARAMETER = ("/", "\\", "?", "#", "%", "..")
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")
MAX_PARAMETER_CHARS = 256
MAX_QUERY_BYTES = 2048


@dataclass(frozen=True)
class Route:
    """One forwarded route. `template` segments in braces are path parameters."""

    method: str
    template: str
    endpoint: str  # what the call log records (the template, so that logs group by route)
    body: bool = False  # a JSON request body is read, validated and forwarded
    query: frozenset[str] = frozenset()  # query parameters forwarded upstream
    segments: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.template.strip("/").split("/")))


ROUTES: tuple[Route, ...] = (
    Route("POST", CHAT, CHAT, body=True),
    Route("POST", COMPLETIONS, COMPLETIONS, body=True),
    Route("POST", RESPONSES, RESPONSES, body=True),
    Route("POST", EMBEDDINGS, EMBEDDINGS, body=True),
    Route("GET", MODELS, MODELS),
    Route("GET", MODELS + "/{model}", MODELS + "/{model}"),
)


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    params: dict[str, str]
    upstream_path: str  # path and allowed query, already encoded: append to the upstream base URL
    dropped_query: tuple[str, ...] = ()  # names of query parameters that were not forwarded


def _decode_parameter(raw: str, name: str) -> str:
    """A path parameter decoded once and checked; a Refusal (400) names what is wrong."""
    try:
        value = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(
            400, f"Path parameter '{name}' is not valid UTF-8.", param=name, code="invalid_path"
        ) from None
    problem = None
    if not value:
        problem = "is empty"
    elif len(value) > MAX_PARAMETER_CHARS:
        problem = f"is longer than {MAX_PARAMETER_CHARS} characters"
    elif value in (".", "..") or any(bad in value for bad in _FORBIDDEN_IN_PARAMETER):
        problem = "contains a character sequence that is not allowed ('/', '\\\\', '..', '?', '#' or '%')"
    elif any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        problem = "contains a control character"
    if problem:
        raise Refusal(400, f"Path parameter '{name}' {problem}.", param=name, code="invalid_path")
    return value


class RouteTable:
    """Matches a request to its route; unknown paths 404, known paths with another method 405."""

    def __init__(self, routes: tuple[Route, ...] = ROUTES) -> None:
        self.routes = routes
        self._by_length: dict[int, list[Route]] = {}
        for route in routes:
            self._by_length.setdefault(len(route.segments), []).append(route)
        # routes without parameters, asked without a query: the answer never changes
        self._fixed = {
            (route.method, route.template.encode()): RouteMatch(route, {}, route.template)
            for route in routes
            if "{" not in route.template
        }

    def match(self, method: str, raw_path: bytes, query_string: bytes = b"") -> RouteMatch:
        if not query_string:
            fixed = self._fixed.get((method, raw_path))
            if fixed is not None:
                return fixed
        path, _, extra_query = raw_path.partition(b"?")  # some servers leave the query in raw_path
        if not query_string and extra_query:
            query_string = extra_query
        try:
            text = path.decode("ascii")
        except UnicodeDecodeError:
            raise Refusal(400, "The request path is not ASCII.", code="invalid_path") from None
        if not text.startswith("/") or _UNPRINTABLE.search(text):
            raise Refusal(400, "The request path is malformed.", code="invalid_path")
        parts = text[1:].split("/")
        methods: list[str] = []
        for route in self._by_length.get(len(parts), ()):
            params = self._params(route, parts)
            if params is None:
                continue
            if route.method != method:
                methods.append(route.method)
                continue
            upstream = "/" + "/".join(
                quote(params[segment[1:-1]], safe=_PATH_SAFE) if segment[0] == "{" else segment
                for segment in route.segments
            )
            forwarded, dropped = _query(route, query_string)
            if forwarded:
                upstream += "?" + forwarded
            return RouteMatch(route, params, upstream, dropped)
        if methods:
            allowed = ", ".join(sorted(set(methods)))
            raise Refusal(
                405,
                f"Method {method} is not allowed on this path; allowed: {allowed}.",
                code="method_not_allowed",
                headers=[(b"allow", allowed.encode())],
            )
        raise Refusal(404, "Unknown path.", code="unknown_url")

    @staticmethod
    def _params(route: Route, parts: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        pending: list[tuple[str, str]] = []
        for segment, raw in zip(route.segments, parts, strict=True):
            if segment[0] == "{":
                pending.append((segment[1:-1], raw))
            elif raw != segment:
                return None
        # parameters are checked only once the literal segments match: a refusal names this route
        for name, raw in pending:
            params[name] = _decode_parameter(raw, name)
        return params


def _query(route: Route, query_string: bytes) -> tuple[str, tuple[str, ...]]:
    """The allowed part of the caller's query, re-encoded, and the names of the dropped rest."""
    if not query_string:
        return "", ()
    if len(query_string) > MAX_QUERY_BYTES:
        raise Refusal(400, f"The query string is longer than {MAX_QUERY_BYTES} bytes.", code="invalid_query")
    try:
        pairs = parse_qsl(
            query_string.decode("ascii"), keep_blank_values=True, max_num_fields=50, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise Refusal(400, "The query string is malformed.", code="invalid_query") from None
    kept: list[tuple[str, str]] = []
    dropped: list[str] = []
    for name, value in pairs:
        if name in route.query and not any(unicodedata.category(ch) == "Cc" for ch in value):
            kept.append((name, value))
        else:
            dropped.append(name)
    return urlencode(kept), tuple(dropped)
