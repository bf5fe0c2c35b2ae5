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


class StreamAssembler:
    """Rebuilds the non-streaming response object from the decoded events of a stream."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.meta: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        self.final: dict[str, Any] | None = None  # /v1/responses sends the whole object at the end
        self.error: Any = None

    def add(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            return
        if "error" in obj and obj.get("object") is None and "choices" not in obj:
            self.error = obj["error"]
            return
        if self.endpoint == "/v1/responses":
            response = obj.get("response")
            if isinstance(response, dict) and obj.get("type") in (
                "response.completed",
                "response.incomplete",
                "response.failed",
            ):
                self.final = response
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
            return self.final
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
