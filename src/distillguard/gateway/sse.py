"""Server-sent events as OpenAI streams them: split a byte stream into events as it arrives, and
reassemble the streamed chunks into the final response object the call log records.

The gateway forwards each event as soon as it is complete; nothing waits for the whole response.
"""

from __future__ import annotations

import re
from typing import Any

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class EventSplitter:
    """Bytes in, complete raw events (with their blank-line terminator) out."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._buffer + chunk
        events: list[bytes] = []
        start = 0
        for match in _BOUNDARY.finditer(data):
            events.append(data[start : match.end()])
            start = match.end()
        self._buffer = data[start:]
        return events

    def rest(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


def event_data(raw: bytes) -> bytes | None:
    """The `data:` payload of one raw event (lines joined by newlines), or None when it has none."""
    lines = [line for line in raw.splitlines() if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[6:] if line.startswith(b"data: ") else line[5:] for line in lines)


def with_data(raw: bytes, data: bytes) -> bytes:
    """The raw event with its `data:` replaced by `data`, its other lines (`event:`, `id:`) kept.

    >>> with_data(b"event: x\\ndata: {}\\n\\n", b'{"a":1}')
    b'event: x\\ndata: {"a":1}\\n\\n'
    """
    lines = [line for line in raw.splitlines() if line and not line.startswith(b"data:")]
    return b"\n".join([*lines, b"data: " + data]) + b"\n\n"


class StreamAssembler:
    """Rebuilds the non-streaming response object from the decoded events of a stream."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.meta: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        self.final: dict[str, Any] | None = None  # /v1/responses sends the whole object at the end
        self.output_text: list[str] = []  # /v1/responses text deltas, for a stream cut short
        self.error: Any = None

    def add(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            return
        if "error" in obj and obj.get("object") is None and "choices" not in obj:
            self.error = obj["error"]
            return
        if self.endpoint == "/v1/responses":
            response = obj.get("response")
            kind = obj.get("type")
            if isinstance(response, dict) and kind in (
                "response.created",
                "response.completed",
                "response.incomplete",
                "response.failed",
            ):
                if kind == "response.created":
                    self.meta = {k: v for k, v in response.items() if k in ("id", "model", "created_at")}
                else:
                    self.final = response
            elif kind == "response.output_text.delta" and isinstance(obj.get("delta"), str):
                self.output_text.append(obj["delta"])
            return
        for key in ("id", "model", "created", "system_fingerprint", "service_tier"):
            if key in obj and key not in self.meta:
                self.meta[key] = obj[key]
        if obj.get("usage"):
            self.usage = obj["usage"]
        choices = obj.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0) if isinstance(choice.get("index"), int) else 0
            slot = self.choices.setdefault(index, {"text": [], "reasoning": [], "tool_calls": {}})
            if choice.get("finish_reason") is not None:
                slot["finish_reason"] = choice["finish_reason"]
            if choice.get("logprobs") is not None:
                slot.setdefault("logprobs", []).append(choice["logprobs"])
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("role"), str):
                    slot["role"] = delta["role"]
                if isinstance(delta.get("content"), str):
                    slot["text"].append(delta["content"])
                for field in ("reasoning_content", "reasoning"):
                    if isinstance(delta.get(field), str):
                        slot["reasoning"].append(delta[field])
                        slot["reasoning_field"] = field
                for call in delta.get("tool_calls") or []:
                    if not isinstance(call, dict):
                        continue
                    tool = slot["tool_calls"].setdefault(
                        call.get("index", 0), {"type": "function", "function": {"name": "", "arguments": ""}}
                    )
                    if call.get("id"):
                        tool["id"] = call["id"]
                    function = call.get("function") or {}
                    tool["function"]["name"] += function.get("name") or ""
                    tool["function"]["arguments"] += function.get("arguments") or ""
            elif isinstance(choice.get("text"), str):
                slot["text"].append(choice["text"])

    def result(self) -> dict[str, Any] | None:
        if self.endpoint == "/v1/responses":
            if self.final is not None or not (self.meta or self.output_text):
                return self.final
            # cut short: what the deltas delivered
            part = {"type": "output_text", "text": "".join(self.output_text)}
            item = {"type": "message", "role": "assistant", "content": [part]}
            return {**self.meta, "object": "response", "status": "incomplete", "output": [item]}
        if not self.choices and not self.meta:
            return None
        chat = self.endpoint == "/v1/chat/completions"
        choices = []
        for index in sorted(self.choices):
            slot = self.choices[index]
            text = "".join(slot["text"])
            entry: dict[str, Any] = {"index": index, "finish_reason": slot.get("finish_reason")}
            if chat:
                message: dict[str, Any] = {"role": slot.get("role", "assistant"), "content": text}
                if slot["reasoning"]:
                    message[slot["reasoning_field"]] = "".join(slot["reasoning"])
                if slot["tool_calls"]:
                    message["tool_calls"] = [slot["tool_calls"][k] for k in sorted(slot["tool_calls"])]
                entry["message"] = message
            else:
                entry["text"] = text
            choices.append(entry)
        body: dict[str, Any] = {**self.meta, "object": "chat.completion" if chat else "text_completion"}
        body["choices"] = choices
        if self.usage is not None:
            body["usage"] = self.usage
        return body
