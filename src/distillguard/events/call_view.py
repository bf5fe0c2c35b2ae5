"""A flat view of one call: the parts every detector reads, extracted once from the wire format.

The same view is built from a live request in the gateway and from a row of the Parquet store in
batch, so signals see identical input on both paths. Extraction understands the OpenAI chat,
completions and responses wire formats (string or list-of-parts content).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import pyarrow as pa

from distillguard.events.model import CallEvent


class CallView(msgspec.Struct, kw_only=True):
    event_id: str
    ts: datetime
    account_id: str
    key_id: str | None = None
    end_user: str | None = None
    client_ip: str = ""
    client_asn: int | None = None
    client_user_agent: str | None = None
    client_tls_fingerprint: str | None = None
    client_router: str | None = None
    endpoint: str = "/v1/chat/completions"
    status: int = 200
    latency_ms: float = 0.0
    model: str | None = None
    system_prompt: str = ""  # system/developer messages and `instructions`, joined
    prompt: str = ""  # the last user turn (or the completions prompt / responses input)
    n_messages: int = 0
    n_user_turns: int = 0
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    max_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    logit_bias_size: int = 0
    stream: bool = False
    response_text: str = ""
    reasoning_text: str = ""  # reasoning returned in a separate field (reasoning_content, ...)
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def content_text(content: Any) -> str:
    """Text of an OpenAI message `content`: a string, or a list of parts with `text`."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return "\n".join(parts)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return str(content["text"])
    return ""


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def request_parts(request: dict[str, Any]) -> dict[str, Any]:
    """System prompt, last user turn, turn counts and sampling parameters of a request body."""
    system: list[str] = []
    prompt = ""
    n_messages = 0
    n_user = 0
    messages = request.get("messages")
    if isinstance(messages, list):
        n_messages = len(messages)
        for message in messages:
            if not isinstance(message, dict):
                continue
            role = message.get("role")
            text = content_text(message.get("content"))
            if role in ("system", "developer"):
                system.append(text)
            elif role == "user":
                n_user += 1
                prompt = text
    elif "input" in request:  # /v1/responses (or /v1/embeddings)
        items = request.get("input")
        if isinstance(items, str):
            prompt, n_messages, n_user = items, 1, 1
        elif isinstance(items, list):
            n_messages = len(items)
            for item in items:
                if isinstance(item, str):
                    prompt, n_user = item, n_user + 1
                elif isinstance(item, dict):
                    role = item.get("role", "user")
                    text = content_text(item.get("content"))
                    if role in ("system", "developer"):
                        system.append(text)
                    elif role == "user":
                        n_user += 1
                        prompt = text
    elif "prompt" in request:  # /v1/completions
        raw = request.get("prompt")
        prompt = raw if isinstance(raw, str) else "\n".join(p for p in raw or [] if isinstance(p, str))
        n_messages, n_user = 1, 1
    instructions = request.get("instructions")
    if isinstance(instructions, str):
        system.insert(0, instructions)
    logprobs_raw = request.get("logprobs")
    logit_bias = request.get("logit_bias")
    max_tokens = request.get(
        "max_completion_tokens", request.get("max_tokens", request.get("max_output_tokens"))
    )
    return {
        "model": request.get("model") if isinstance(request.get("model"), str) else None,
        "system_prompt": "\n".join(system),
        "prompt": prompt,
        "n_messages": n_messages,
        "n_user_turns": n_user,
        "temperature": _num(request.get("temperature")),
        "top_p": _num(request.get("top_p")),
        "n": _int(request.get("n")),
        "max_tokens": _int(max_tokens),
        # chat uses a boolean, completions an integer count of alternatives
        "logprobs": bool(logprobs_raw) and logprobs_raw is not False,
        "top_logprobs": _int(request.get("top_logprobs"))
        if "top_logprobs" in request
        else (_int(logprobs_raw) if not isinstance(logprobs_raw, bool) else None),
        "logit_bias_size": len(logit_bias) if isinstance(logit_bias, dict) else 0,
        "stream": request.get("stream") is True,
    }


def response_parts(response: dict[str, Any] | None) -> dict[str, Any]:
    """Visible answer text, separately returned reasoning, finish reason and token usage."""
    text = ""
    reasoning = ""
    finish = None
    if isinstance(response, dict):
        choices = response.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            first = choices[0]
            finish = first.get("finish_reason")
            message = first.get("message")
            if isinstance(message, dict):
                text = content_text(message.get("content"))
                for key in ("reasoning_content", "reasoning"):
                    value = message.get(key)
                    if isinstance(value, str) and value:
                        reasoning = value
                        break
            elif isinstance(first.get("text"), str):
                text = first["text"]
        output = response.get("output")
        if isinstance(output, list):  # /v1/responses
            texts, thoughts = [], []
            for item in output:
                if not isinstance(item, dict):
                    continue
                if item.get("type") == "message":
                    texts.append(content_text(item.get("content")))
                elif item.get("type") == "reasoning":
                    thoughts.append(content_text(item.get("summary")) or content_text(item.get("content")))
            text = text or "\n".join(texts)
            reasoning = reasoning or "\n".join(t for t in thoughts if t)
        usage = response.get("usage")
    else:
        usage = None
    usage = usage if isinstance(usage, dict) else {}
    return {
        "response_text": text,
        "reasoning_text": reasoning,
        "finish_reason": finish if isinstance(finish, str) else None,
        "prompt_tokens": _int(usage.get("prompt_tokens", usage.get("input_tokens"))),
        "completion_tokens": _int(usage.get("completion_tokens", usage.get("output_tokens"))),
    }


def view_of(event: CallEvent) -> CallView:
    """The flat view of a canonical event."""
    client = event.client
    return CallView(
        event_id=event.event_id,
        ts=event.ts,
        account_id=event.account_id,
        key_id=event.key_id,
        end_user=event.end_user,
        client_ip=client.ip,
        client_asn=client.asn,
        client_user_agent=client.user_agent,
        client_tls_fingerprint=client.tls_fingerprint,
        client_router=client.router,
        endpoint=event.endpoint,
        status=event.status,
        latency_ms=event.latency_ms,
        **request_parts(event.request),
        **response_parts(event.response),
    )


# The Parquet store holds every CallView column plus the raw bodies, so a later stage can always
# go back to what was received.
VIEW_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("account_id", pa.string()),
        ("key_id", pa.string()),
        ("end_user", pa.string()),
        ("client_ip", pa.string()),
        ("client_asn", pa.int64()),
        ("client_user_agent", pa.string()),
        ("client_tls_fingerprint", pa.string()),
        ("client_router", pa.string()),
        ("endpoint", pa.string()),
        ("status", pa.int32()),
        ("latency_ms", pa.float64()),
        ("model", pa.string()),
        ("system_prompt", pa.string()),
        ("prompt", pa.string()),
        ("n_messages", pa.int32()),
        ("n_user_turns", pa.int32()),
        ("temperature", pa.float64()),
        ("top_p", pa.float64()),
        ("n", pa.int32()),
        ("max_tokens", pa.int64()),
        ("logprobs", pa.bool_()),
        ("top_logprobs", pa.int32()),
        ("logit_bias_size", pa.int32()),
        ("stream", pa.bool_()),
        ("response_text", pa.string()),
        ("reasoning_text", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
    ]
)
STORE_SCHEMA = VIEW_SCHEMA.append(pa.field("request_json", pa.string())).append(
    pa.field("response_json", pa.string())
)
_VIEW_FIELDS = tuple(VIEW_SCHEMA.names)


def views_of_batch(batch: pa.RecordBatch | pa.Table) -> list[CallView]:
    """CallViews of a batch read from the store (columns as in VIEW_SCHEMA)."""
    columns = {name: batch.column(name).to_pylist() for name in _VIEW_FIELDS if name in batch.schema.names}
    rows = len(batch)
    return [CallView(**{name: values[i] for name, values in columns.items()}) for i in range(rows)]
