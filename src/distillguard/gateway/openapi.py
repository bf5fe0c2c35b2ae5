"""The gateway's own OpenAPI document (served at /openapi.json): the OpenAI-compatible routes as
the gateway accepts them, lenient where the API is (extra fields pass through)."""

from __future__ import annotations

from typing import Any

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
_COMMON = {
    "model": {"type": "string"},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "n": {"type": "integer", "minimum": 1, "maximum": 8},
    "max_tokens": {"type": "integer", "minimum": 1},
    "stream": {"type": "boolean"},
    "logprobs": {"type": "boolean"},
    "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
    "logit_bias": {"type": "object", "additionalProperties": {"type": "number"}},
    "user": {"type": "string"},
}


def _body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": required,
                    "properties": {**_COMMON, **properties},
                    "additionalProperties": True,
                }
            }
        },
    }


def _responses(streaming: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if streaming:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
    errors = {"application/json": {"schema": _ERROR}}
    out: dict[str, Any] = {"200": {"description": "The model's answer", "content": ok}}
    for code, why in (
        ("400", "Malformed request"),
        ("401", "Missing or wrong API key"),
        ("403", "Refused by policy (blocked, banned or a parameter the tier may not use)"),
        ("405", "Wrong method"),
        ("413", "Body too large"),
        ("415", "Body is not JSON"),
        ("429", "Throttled"),
        ("502", "Model server unreachable or broken"),
        ("504", "Model server timed out"),
    ):
        out[code] = {"description": why, "content": errors}
    return out


def _post(
    summary: str, required: list[str], properties: dict[str, Any], streaming: bool = True
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": _body(required, properties),
            "responses": _responses(streaming),
        }
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "DistillGuard gateway", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/v1/chat/completions": _post(
            "Chat completion",
            ["model", "messages"],
            {"messages": {"type": "array", "items": _MESSAGE, "minItems": 1}},
        ),
        "/v1/completions": _post("Text completion", ["model", "prompt"], {"prompt": {"type": "string"}}),
        "/v1/responses": _post("Response", ["model", "input"], {"input": {"type": "string"}}),
        "/v1/embeddings": _post(
            "Embedding", ["model", "input"], {"input": {"type": "string"}}, streaming=False
        ),
        "/v1/models": {"get": {"summary": "Models", "responses": _responses(False)}},
        "/healthz": {
            "get": {
                "summary": "Health",
                "security": [],
                "responses": {"200": {"description": "up"}, "503": {"description": "degraded"}},
            }
        },
    },
}
