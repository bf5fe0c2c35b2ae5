"""Reader for OpenTelemetry GenAI spans exported as JSON: OTLP/JSON export requests
(`resourceSpans → scopeSpans → spans`, attributes as typed `{key, value: {stringValue|intValue|...}}`,
one request per line as the collector's file exporter writes them) or one flat span per line
(attributes as a plain object, times as `startTimeUnixNano` or ISO `start_time`).

A span is one call when it carries `gen_ai.operation.name` of an inference operation. Its request
is rebuilt in OpenAI chat format from the `gen_ai.request.*` attributes and the content attributes
that content-capturing exporters record: `gen_ai.system_instructions`, `gen_ai.input.messages`,
`gen_ai.output.messages` (structured or JSON strings) or the older indexed `gen_ai.prompt.N.*` /
`gen_ai.completion.N.*`. Spans may not name the account: it is read from the attribute
`ReaderOptions.account_attribute` (span first, then resource), else `--account`. Other spans
(HTTP, agent and tool spans) are reported as rejects with their operation, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
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

ENDPOINT_OF_OPERATION = {
    "chat": "/v1/chat/completions",
    "generate_content": "/v1/chat/completions",  # request rebuilt in chat format
    "text_completion": "/v1/completions",
    "embeddings": "/v1/embeddings",
}

_REQUEST_PARAMS = {
    "gen_ai.request.temperature": "temperature",
    "gen_ai.request.top_p": "top_p",
    "gen_ai.request.max_tokens": "max_tokens",
    "gen_ai.request.choice.count": "n",
    "gen_ai.request.seed": "seed",
    "gen_ai.request.stop_sequences": "stop",
    "gen_ai.request.frequency_penalty": "frequency_penalty",
    "gen_ai.request.presence_penalty": "presence_penalty",
}

_line_decoder = msgspec.json.Decoder(dict[str, Any])


class SpanError(ValueError):
    """A span that cannot become a call; the message names the attribute or field."""


def any_value(value: Any) -> Any:
    """The plain value of an OTLP/JSON `AnyValue` ({"stringValue": ...}, {"intValue": "3"}, ...)."""
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:  # int64 is a JSON string in OTLP/JSON
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [any_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return attributes_of((value["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def attributes_of(raw: Any) -> dict[str, Any]:
    """Attributes as a plain dict, from the OTLP list of {key, value} or an already plain object."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, list):
        raise SpanError(f"attributes: expected a list or object, got {type(raw).__name__}")
    out: dict[str, Any] = {}
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise SpanError("attributes: an entry has no string 'key'")
        out[item["key"]] = any_value(item.get("value"))
    return out


def _structured(value: Any, name: str) -> Any:
    """Content attributes may be recorded structured or as a JSON string."""
    if isinstance(value, str):
        try:
            return msgspec.json.decode(value)
        except msgspec.DecodeError as error:
            raise SpanError(f"{name}: not valid JSON") from error
    return value


def _parts_text(parts: Any, kinds: tuple[str, ...] = ("text",)) -> str:
    if not isinstance(parts, list):
        return ""
    texts = []
    for part in parts:
        if isinstance(part, dict) and part.get("type", "text") in kinds:
            content = part.get("content")
            if isinstance(content, str):
                texts.append(content)
    return "\n".join(texts)


def _messages(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = _structured(attrs.get("gen_ai.system_instructions"), "gen_ai.system_instructions")
    if system:
        text = system if isinstance(system, str) else _parts_text(system)
        messages.append({"role": "system", "content": text})
    inputs = _structured(attrs.get("gen_ai.input.messages"), "gen_ai.input.messages")
    if isinstance(inputs, list):
        for message in inputs:
            if isinstance(message, dict):
                content = message.get("content")
                text = content if isinstance(content, str) else _parts_text(message.get("parts"))
                messages.append({"role": message.get("role", "user"), "content": text})
    elif inputs is not None:
        raise SpanError("gen_ai.input.messages: expected a list of messages")
    else:
        index = 0
        while f"gen_ai.prompt.{index}.content" in attrs or f"gen_ai.prompt.{index}.role" in attrs:
            messages.append(
                {
                    "role": attrs.get(f"gen_ai.prompt.{index}.role", "user"),
                    "content": attrs.get(f"gen_ai.prompt.{index}.content", ""),
                }
            )
            index += 1
    return messages


def _choices(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    finish = attrs.get("gen_ai.response.finish_reasons")
    finishes = finish if isinstance(finish, list) else [finish] if isinstance(finish, str) else []
    choices: list[dict[str, Any]] = []
    outputs = _structured(attrs.get("gen_ai.output.messages"), "gen_ai.output.messages")
    if isinstance(outputs, list):
        for index, message in enumerate(outputs):
            if not isinstance(message, dict):
                continue
            parts = message.get("parts")
            content = message.get("content")
            body: dict[str, Any] = {
                "role": message.get("role", "assistant"),
                "content": content if isinstance(content, str) else _parts_text(parts),
            }
            reasoning = _parts_text(parts, ("reasoning", "thinking"))
            if reasoning:
                body["reasoning_content"] = reasoning
            choices.append({"index": index, "message": body, "finish_reason": message.get("finish_reason")})
    elif outputs is not None:
        raise SpanError("gen_ai.output.messages: expected a list of messages")
    else:
        index = 0
        while f"gen_ai.completion.{index}.content" in attrs:
            choices.append(
                {
                    "index": index,
                    "message": {
                        "role": attrs.get(f"gen_ai.completion.{index}.role", "assistant"),
                        "content": attrs[f"gen_ai.completion.{index}.content"],
                    },
                    "finish_reason": attrs.get(f"gen_ai.completion.{index}.finish_reason"),
                }
            )
            index += 1
    for index, choice in enumerate(choices):
        if choice.get("finish_reason") is None and index < len(finishes):
            choice["finish_reason"] = finishes[index]
    return choices


def _time(span: dict[str, Any], nano_key: str, iso_key: str) -> datetime:
    nanos = span.get(nano_key, span.get(nano_key.replace("UnixNano", "_time_unix_nano")))
    if nanos is not None:
        try:
            return datetime.fromtimestamp(int(nanos) / 1e9, tz=UTC)
        except (TypeError, ValueError) as error:
            raise SpanError(f"{nano_key}: expected integer nanoseconds") from error
    return parse_ts(span.get(iso_key), f"{nano_key} (or {iso_key})")


def event_of_span(span: dict[str, Any], resource: dict[str, Any], options: ReaderOptions) -> CallEvent:
    """The canonical call of one GenAI inference span."""
    attrs = attributes_of(span.get("attributes"))
    operation = attrs.get("gen_ai.operation.name")
    if operation is None:
        raise SpanError("gen_ai.operation.name: missing (not a GenAI span)")
    if operation not in ENDPOINT_OF_OPERATION:
        raise SpanError(f"gen_ai.operation.name: {str(operation)[:40]!r} is not a model inference operation")
    raw_context = span.get("context")
    context: dict[str, Any] = raw_context if isinstance(raw_context, dict) else {}
    trace_id = span.get("traceId") or span.get("trace_id") or context.get("trace_id")
    span_id = span.get("spanId") or span.get("span_id") or context.get("span_id")
    if not isinstance(span_id, str) or not span_id:
        raise SpanError("spanId: missing")
    account = (
        attrs.get(options.account_attribute) or resource.get(options.account_attribute) or options.account
    )
    if not isinstance(account, str) or not account:
        raise SpanError(
            f"{options.account_attribute}: no account on the span or resource (or pass --account)"
        )
    start = _time(span, "startTimeUnixNano", "start_time")
    end = _time(span, "endTimeUnixNano", "end_time")
    request: dict[str, Any] = {}
    if isinstance(attrs.get("gen_ai.request.model"), str):
        request["model"] = attrs["gen_ai.request.model"]
    if operation == "embeddings":
        request["input"] = [m["content"] for m in _messages(attrs)]
    else:
        request["messages"] = _messages(attrs)
    for attr, key in _REQUEST_PARAMS.items():
        if attrs.get(attr) is not None:
            request[key] = attrs[attr]
    choices = _choices(attrs)
    usage = {
        "prompt_tokens": attrs.get("gen_ai.usage.input_tokens"),
        "completion_tokens": attrs.get("gen_ai.usage.output_tokens"),
    }
    response: dict[str, Any] | None = None
    if choices or any(v is not None for v in usage.values()):
        response = {
            "id": attrs.get("gen_ai.response.id"),
            "model": attrs.get("gen_ai.response.model"),
            "choices": choices,
            "usage": {k: v for k, v in usage.items() if v is not None},
        }
    status_code = attrs.get("http.response.status_code")
    raw_status = span.get("status")
    span_status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
    failed = span_status.get("code") in (2, "STATUS_CODE_ERROR", "ERROR") or "error.type" in attrs
    status = int(status_code) if isinstance(status_code, int) else (500 if failed else 200)
    end_user = attrs.get("enduser.id") or attrs.get("user.id")
    user_agent = attrs.get("user_agent.original")
    return CallEvent(
        event_id=f"{trace_id}:{span_id}" if trace_id else span_id,
        ts=start,
        account_id=account,
        end_user=end_user if isinstance(end_user, str) else None,
        client=Client(
            ip=str(attrs.get("client.address") or ""),
            user_agent=user_agent if isinstance(user_agent, str) else None,
        ),
        endpoint=ENDPOINT_OF_OPERATION[operation],
        request=request,
        response=response,
        status=status,
        latency_ms=max(0.0, (end - start).total_seconds() * 1000.0),
    )


def _spans_of(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(path of the span in the document, span, resource attributes) for each span of one line."""
    if "resourceSpans" not in document and "resource_spans" not in document:
        resource = document.get("resource")
        resource_attrs = attributes_of(resource.get("attributes")) if isinstance(resource, dict) else {}
        yield "$", document, resource_attrs
        return
    for r, resource_spans in enumerate(document.get("resourceSpans") or document.get("resource_spans") or []):
        resource = resource_spans.get("resource") or {}
        resource_attrs = attributes_of(resource.get("attributes"))
        for s, scope_spans in enumerate(
            resource_spans.get("scopeSpans") or resource_spans.get("scope_spans") or []
        ):
            for i, span in enumerate(scope_spans.get("spans") or []):
                yield f"$.resourceSpans[{r}].scopeSpans[{s}].spans[{i}]", span, resource_attrs


class OtelGenAIReader:
    name = "otel-genai"
    description = "OpenTelemetry GenAI spans as OTLP/JSON export lines or one flat span per line"

    def read(self, paths: Sequence[Path], options: ReaderOptions) -> Iterator[CallEvent | Reject]:
        for path in paths:
            file = str(path)
            for item in decoded_lines(path, _line_decoder.decode, options.max_line_bytes):
                if isinstance(item, Reject):
                    yield item
                    continue
                number, line, document = item
                secret_hint = may_hold_secret(line)  # the spans hold nothing that was not on the line
                try:
                    spans = list(_spans_of(document))
                except (ValueError, AttributeError, TypeError) as error:
                    yield Reject(file=file, line=number, reason=f"not an OTLP/JSON span document: {error}")
                    continue
                for where, span, resource in spans:
                    try:
                        if not isinstance(span, dict):
                            raise SpanError("expected a span object")
                        event = event_of_span(span, resource, options)
                    except (ValueError, TypeError) as error:
                        yield Reject(file=file, line=number, reason=f"{where}: {error}")
                        continue
                    if secret_hint:
                        strip_event_credentials(event)
                    yield event
