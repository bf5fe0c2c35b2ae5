"""The gateway's own OpenAPI document (served at /openapi.json), built from the route allow-list
and the parameter table, so that it says exactly what the gateway accepts (with the packaged
policy: unknown parameters refused) and the fuzz tests generate from what is enforced."""

from __future__ import annotations

from typing import Any

from distillguard.enforcement.parameters import CHAT, JSON_SCHEMA, known_parameters
from distillguard.gateway.routes import ROUTES, Route

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {"type": "string"},
    },
}
_ERRORS = (
    ("400", "Malformed request: bad JSON, a repeated key, too deep, a wrongly typed or unknown parameter"),
    ("401", "Missing or wrong API key"),
    ("403", "Refused by policy (blocked, banned or a parameter the tier may not use)"),
    ("404", "Not a route the gateway serves"),
    ("405", "Wrong method"),
    ("413", "Body too large"),
    ("415", "Body is not JSON"),
    ("429", "Throttled"),
    ("502", "Model server unreachable or broken"),
    ("504", "Model server timed out"),
)


def _body_schema(endpoint: str) -> dict[str, Any]:
    table = known_parameters(endpoint)
    properties = {name: dict(JSON_SCHEMA[p.check]) for name, p in table.items()}
    if endpoint == CHAT:
        properties["messages"] = {"type": "array", "items": _MESSAGE, "minItems": 1}
    return {
        "type": "object",
        "required": sorted(name for name, p in table.items() if p.required),
        "properties": properties,
        "additionalProperties": False,
    }


def _responses(streaming: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if streaming:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
    errors = {"application/json": {"schema": _ERROR}}
    out: dict[str, Any] = {"200": {"description": "The model's answer", "content": ok}}
    for code, why in _ERRORS:
        out[code] = {"description": why, "content": errors}
    return out


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": f"{route.method} {route.endpoint}"}
    parameters = [
        {"name": segment[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
        for segment in route.segments
        if segment.startswith("{")
    ]
    parameters += [
        {"name": name, "in": "query", "schema": {"type": "string"}} for name in sorted(route.query)
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _body_schema(route.endpoint)}},
        }
    operation["responses"] = _responses(streaming=route.body and route.endpoint in (CHAT, *_STREAMED))
    return operation


_STREAMED = ("/v1/completions", "/v1/responses")


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in ROUTES:
        paths.setdefault(route.template, {})[route.method.lower()] = _operation(route)
    paths["/healthz"] = {
        "get": {
            "summary": "Health (and the ban list's skipped entries)",
            "security": [],
            "responses": {"200": {"description": "up"}, "503": {"description": "degraded"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "DistillGuard gateway", "version": "2"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
