"""Reader for LiteLLM proxy logs as JSON lines: either its `StandardLoggingPayload` (what a custom
callback or a JSON logger receives as `standard_logging_object`) or rows of its `LiteLLM_SpendLogs`
table exported as JSON. Each line is recognised by its fields (`id` + `startTime` for the payload,
`request_id` for a spend-log row).

Mapping (names as in litellm `types/utils.py` and `schema.prisma`):
- account: the key's organisation, else its team, else its user
  (`metadata.user_api_key_org_id` / `_team_id` / `_user_id`; spend rows: `organization_id`,
  `team_id`, `user`), else `--account`; a line with none is rejected.
- key_id: `metadata.user_api_key_hash` / spend `api_key` (LiteLLM stores the hashed key; a value
  that is a raw `sk-` key is replaced by its SHA-256 so the secret is never kept).
- end_user: `end_user` (or `metadata.user_api_key_end_user_id`); client IP:
  `requester_ip_address`; user agent: a logged `user-agent` header (`proxy_server_request`,
  `metadata.requester_metadata`). Token counts fill `response.usage` when the body has none.
- ts / latency_ms: `startTime` / `endTime - startTime` (epoch seconds or ISO times, naive = UTC).
- request: `proxy_server_request` when it is the logged body, else rebuilt from `model`,
  `messages` and `model_parameters`; everything else on the line is kept, credentials removed,
  under `request["_litellm"]` so nothing the proxy recorded is lost.
- response: `response` (a string is wrapped as one assistant message); status 200 for
  `success`, else `error_information.error_code` when numeric, else 500.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from distillguard.events.credentials import may_hold_secret, strip_event_credentials
from distillguard.events.model import CallEvent, Client
from distillguard.events.readers.base import (
    ReaderOptions,
    Reject,
    decoded_lines,
    parse_ts,
)

ENDPOINT_OF_CALL_TYPE = {
    "completion": "/v1/chat/completions",
    "acompletion": "/v1/chat/completions",
    "text_completion": "/v1/completions",
    "atext_completion": "/v1/completions",
    "embedding": "/v1/embeddings",
    "aembedding": "/v1/embeddings",
    "responses": "/v1/responses",
    "aresponses": "/v1/responses",
    "image_generation": "/v1/images/generations",
    "aimage_generation": "/v1/images/generations",
    "moderation": "/v1/moderations",
    "amoderation": "/v1/moderations",
}

# Fields mapped onto the canonical event; the rest of the line is kept under request["_litellm"].
_MAPPED = frozenset(
    {"id", "request_id", "startTime", "endTime", "messages", "response", "model_parameters", "end_user"}
)

_line_decoder = msgspec.json.Decoder(dict[str, Any])


class LineError(ValueError):
    """A line that decodes as JSON but cannot become a call; the message names the field."""


def _text(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise LineError(f"{field}: expected a string, got {type(value).__name__}")


def _key_id(value: str | None) -> str | None:
    if value is not None and value.startswith("sk-"):
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return value


def _status(row: dict[str, Any]) -> int:
    status = row.get("status")
    if status in (None, "success"):
        return 200
    info = row.get("error_information")
    code = info.get("error_code") if isinstance(info, dict) else None
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    if isinstance(code, str) and code.isdigit():
        return int(code)
    return 500


def _user_agent(*holders: Any) -> str | None:
    """The `user-agent` header from the first of `holders` (dicts with a `headers` map) that has one."""
    for holder in holders:
        headers = holder.get("headers") if isinstance(holder, dict) else None
        if isinstance(headers, dict):
            for key, value in headers.items():
                if isinstance(key, str) and key.lower() == "user-agent" and isinstance(value, str):
                    return value
    return None


def _request_body(row: dict[str, Any]) -> dict[str, Any]:
    logged = row.get("proxy_server_request")
    if isinstance(logged, dict):
        inner = logged.get("body")
        body: dict[str, Any] = inner if isinstance(inner, dict) else logged
        if "messages" in body or "prompt" in body or "input" in body:
            return {k: v for k, v in body.items() if k != "headers"}
    request: dict[str, Any] = {}
    if isinstance(row.get("model"), str):
        request["model"] = row["model"]
    messages = row.get("messages")
    call_type = str(row.get("call_type") or "")
    if isinstance(messages, list):
        request["messages"] = messages
    elif isinstance(messages, str | dict):
        request["input" if "embedding" in call_type or "responses" in call_type else "prompt"] = messages
    params = row.get("model_parameters")
    if isinstance(params, dict):
        for key, value in params.items():
            request.setdefault(key, value)
    return request


def _response_body(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value or None
    if isinstance(value, str) and value:
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": value}}]}
    if isinstance(value, list) and value:  # embeddings and some call types log a list
        return {"data": value}
    return None


def event_of_row(row: dict[str, Any], options: ReaderOptions) -> CallEvent:
    """The canonical call of one LiteLLM log row (payload or spend-log row)."""
    metadata = row.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise LineError(f"$.metadata: expected an object, got {type(metadata).__name__}")
    spend_row = "request_id" in row and "id" not in row
    event_id = _text(
        row.get("request_id") if spend_row else row.get("id"), "$.request_id" if spend_row else "$.id"
    )
    if event_id is None:
        raise LineError("$.id: missing (the call id)")
    account = (
        _text(
            metadata.get("user_api_key_org_id") or row.get("organization_id"),
            "$.metadata.user_api_key_org_id",
        )
        or _text(
            metadata.get("user_api_key_team_id") or row.get("team_id"), "$.metadata.user_api_key_team_id"
        )
        or _text(metadata.get("user_api_key_user_id") or row.get("user"), "$.metadata.user_api_key_user_id")
        or options.account
    )
    if not account:
        raise LineError(
            "$.metadata.user_api_key_org_id/team_id/user_id: no account on the line (or pass --account)"
        )
    start = parse_ts(row.get("startTime"), "$.startTime")
    end = parse_ts(row["endTime"], "$.endTime") if row.get("endTime") not in (None, "") else start
    key = _key_id(
        _text(metadata.get("user_api_key_hash") or row.get("api_key"), "$.metadata.user_api_key_hash")
    )
    end_user = _text(row.get("end_user") or metadata.get("user_api_key_end_user_id"), "$.end_user")
    ip = _text(
        row.get("requester_ip_address") or metadata.get("requester_ip_address"), "$.requester_ip_address"
    )
    call_type = _text(row.get("call_type"), "$.call_type") or ""
    route = metadata.get("user_api_key_request_route")
    endpoint = (
        route
        if isinstance(route, str) and route.startswith("/")
        else ENDPOINT_OF_CALL_TYPE.get(call_type, f"litellm:{call_type or 'unknown'}")
    )
    # Read before credentials are stripped: the headers maps hold both.
    agent = _user_agent(row.get("proxy_server_request"), metadata.get("requester_metadata"), metadata)
    request = _request_body(row)
    rest = {k: v for k, v in row.items() if k not in _MAPPED}
    logged = rest.get("proxy_server_request")
    if isinstance(logged, dict) and isinstance(logged.get("headers"), dict):
        rest["proxy_server_request"] = {"headers": logged["headers"]}  # the body is `request` already
    request["_litellm"] = rest
    response = _response_body(row.get("response"))
    if response is not None:
        tokens = {k: row[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens") if k in row}
        if tokens and not isinstance(response.get("usage"), dict):
            response["usage"] = tokens
    return CallEvent(
        event_id=event_id,
        ts=start,
        account_id=account,
        key_id=key,
        end_user=end_user,
        client=Client(ip=ip or "", user_agent=agent),
        endpoint=endpoint,
        request=request,
        response=response,
        status=_status(row),
        latency_ms=max(0.0, (end - start).total_seconds() * 1000.0),
    )


class LiteLLMReader:
    name = "litellm"
    description = "LiteLLM proxy StandardLoggingPayload or LiteLLM_SpendLogs rows as JSON lines"

    def read(self, paths: Sequence[Path], options: ReaderOptions) -> Iterator[CallEvent | Reject]:
        for path in paths:
            file = str(path)
            for item in decoded_lines(path, _line_decoder.decode, options.max_line_bytes):
                if isinstance(item, Reject):
                    yield item
                    continue
                number, line, row = item
                # A payload logged by a JSON logger may be wrapped: {"standard_logging_object": {...}}
                inner = row.get("standard_logging_object")
                if isinstance(inner, dict):
                    row = inner
                try:
                    event = event_of_row(row, options)
                except ValueError as error:  # LineError, bad times and CallEvent checks
                    yield Reject(file=file, line=number, reason=str(error))
                    continue
                if may_hold_secret(line):  # the event holds nothing that was not on the line
                    strip_event_credentials(event)
                yield event
