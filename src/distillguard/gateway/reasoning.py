"""Reasoning protection: remove or shorten the model's reasoning (`reasoning_content`, `reasoning`,
`<think>` blocks, /v1/responses reasoning items) in whole responses and in streamed deltas.

A reasoning trace is what a distiller wants most and what an ordinary caller needs least. `summary`
keeps the first and last sentence (an extract, no model on the request path), so a caller still
sees that the model reasoned and where it ended up.
"""

from __future__ import annotations

import re
from typing import Any

THINK_OPEN = ("<think>", "<thinking>", "<|begin_of_thought|>")
THINK_CLOSE = ("</think>", "</thinking>", "<|end_of_thought|>")
_THINK_BLOCK = re.compile(
    r"(?:<think>|<thinking>|<\|begin_of_thought\|>)(.*?)(?:</think>|</thinking>|<\|end_of_thought\|>|\Z)",
    re.S,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
REASONING_FIELDS = ("reasoning_content", "reasoning")
SUMMARY_NOTE = "[reasoning summarised by the provider]"


def summarise(text: str, limit: int) -> str:
    """First and last sentence of a reasoning trace, at most `limit` characters.

    >>> summarise("First I add. Then I check. So the answer is 4.", 200)
    'First I add. … So the answer is 4. [reasoning summarised by the provider]'
    """
    sentences = [s for s in _SENTENCE.split(text.strip()) if s]
    if not sentences:
        return ""
    extract = sentences[0] if len(sentences) == 1 else f"{sentences[0]} … {sentences[-1]}"
    if len(extract) > limit:
        extract = extract[: max(0, limit - 1)].rstrip() + "…"
    return f"{extract} {SUMMARY_NOTE}"


def _protect_text(text: str, action: str, limit: int) -> tuple[str, int]:
    """`text` with its think blocks removed or summarised, and how many characters were hidden."""
    hidden = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal hidden
        hidden += len(match.group(0))
        if action == "summary":
            return f"<think>{summarise(match.group(1), limit)}</think>"
        return ""

    out = _THINK_BLOCK.sub(replace, text)
    if hidden and action == "strip":
        out = out.lstrip()
    return out, hidden


def protect_response(body: Any, action: str, limit: int = 240) -> int:
    """Apply `action` (keep, strip, summary) to a whole response in place; characters hidden."""
    if action == "keep" or not isinstance(body, dict):
        return 0
    hidden = 0
    choices = body.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            holder = message if isinstance(message, dict) else choice
            for field in REASONING_FIELDS:
                value = holder.get(field)
                if isinstance(value, str) and value:
                    hidden += len(value)
                    if action == "summary":
                        holder[field] = summarise(value, limit)
                    else:
                        del holder[field]
            key = "content" if isinstance(message, dict) else "text"
            text = holder.get(key)
            if isinstance(text, str) and "<" in text:
                holder[key], n = _protect_text(text, action, limit)
                hidden += n
    output = body.get("output")
    if isinstance(output, list):  # /v1/responses: reasoning items carry raw content and/or a summary
        kept = []
        for item in output:
            if isinstance(item, dict) and item.get("type") == "reasoning":
                hidden += len(str(item.get("content") or "")) + len(str(item.get("encrypted_content") or ""))
                if action == "summary":
                    item.pop("content", None)
                    item.pop("encrypted_content", None)
                    kept.append(item)
                else:
                    hidden += len(str(item.get("summary") or ""))
                continue
            if (
                isinstance(item, dict)
                and item.get("type") == "message"
                and isinstance(item.get("content"), list)
            ):
                for part in item["content"]:
                    if isinstance(part, dict) and isinstance(part.get("text"), str) and "<" in part["text"]:
                        part["text"], n = _protect_text(part["text"], action, limit)
                        hidden += n
            kept.append(item)
        output[:] = kept
    return hidden


class ThinkFilter:
    """Removes `<think>...</think>` from text that arrives in pieces (tags may be split across
    deltas), holding back only as many characters as could start a tag."""

    _longest = max(len(t) for t in THINK_OPEN + THINK_CLOSE)

    def __init__(self) -> None:
        self.inside = False
        self.pending = ""
        self.hidden: list[str] = []
        self._trim = False

    def feed(self, text: str) -> str:
        data = self.pending + text
        self.pending = ""
        out: list[str] = []
        while data:
            tags = THINK_CLOSE if self.inside else THINK_OPEN
            found = [(pos, tag) for pos, tag in ((data.find(tag), tag) for tag in tags) if pos >= 0]
            if found:
                pos, tag = min(found)
                self._emit(data[:pos], out)
                data = data[pos + len(tag) :]
                self.inside = not self.inside
                # the blank line a model writes after its think block goes with the block
                self._trim = not self.inside
                continue
            # keep a tail that may be the start of a tag split across deltas
            keep = 0
            for n in range(1, min(len(data), self._longest - 1) + 1):
                if any(tag.startswith(data[-n:]) for tag in tags):
                    keep = n
            body, self.pending = (data[:-keep], data[-keep:]) if keep else (data, "")
            self._emit(body, out)
            break
        return "".join(out)

    def _emit(self, text: str, out: list[str]) -> None:
        if self.inside:
            self.hidden.append(text)
            return
        if self._trim:
            text = text.lstrip()
            self._trim = not text
        out.append(text)

    def flush(self) -> str:
        rest, self.pending = self.pending, ""
        if self.inside:
            self.hidden.append(rest)
            return ""
        return rest


class StreamProtector:
    """Applies the reasoning action to the decoded `data` objects of an SSE stream, in order.

    Returns the object to send (possibly changed in place), or None to drop the event entirely.
    """

    def __init__(self, action: str, limit: int = 240) -> None:
        self.action = action
        self.limit = limit
        self.hidden_chars = 0
        self._filters: dict[int, ThinkFilter] = {}
        self._reasoning: dict[int, list[str]] = {}
        self._summarised: set[int] = set()

    def _summary_for(self, index: int) -> str | None:
        if self.action != "summary" or index in self._summarised:
            return None
        parts = self._reasoning.get(index, [])
        think = self._filters.get(index)
        text = "\n".join(t for t in ("".join(parts), "".join(think.hidden) if think else "") if t)
        if not text:
            return None
        self._summarised.add(index)
        return summarise(text, self.limit)

    def chat_chunk(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return chunk
        emptied = 0  # choices whose delta carried only reasoning and now carries nothing
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0) if isinstance(choice.get("index"), int) else 0
            delta = choice.get("delta")
            holder = delta if isinstance(delta, dict) else choice
            key = "content" if isinstance(delta, dict) else "text"
            had_reasoning = False
            for field in REASONING_FIELDS:
                value = holder.pop(field, None)
                if isinstance(value, str) and value:
                    had_reasoning = True
                    self.hidden_chars += len(value)
                    self._reasoning.setdefault(index, []).append(value)
            text = holder.get(key)
            if isinstance(text, str) and text:
                think = self._filters.setdefault(index, ThinkFilter())
                before = sum(map(len, think.hidden))
                holder[key] = think.feed(text)
                hidden_now = sum(map(len, think.hidden)) - before
                self.hidden_chars += hidden_now
                # a delta whose every character was withheld (tag pieces, think text) goes nowhere
                had_reasoning = had_reasoning or not holder[key]
            finished = choice.get("finish_reason") is not None
            if finished and index in self._filters:
                holder[key] = (holder.get(key) or "") + self._filters[index].flush()
            # in summary mode the extract goes out with the first visible answer text or at the end
            if isinstance(delta, dict) and (holder.get(key) or finished):
                summary = self._summary_for(index)
                if summary is not None:
                    holder["reasoning_content"] = summary
            meaningful = [k for k, v in holder.items() if v not in (None, "")]
            if had_reasoning and not finished and not meaningful:
                emptied += 1
        if emptied and emptied == len(choices) and not chunk.get("usage"):
            return None
        return chunk

    def responses_event(self, event: dict[str, Any]) -> dict[str, Any] | None:
        kind = event.get("type")
        if not isinstance(kind, str):
            return event
        if kind.startswith("response.reasoning"):
            keep_summary = self.action == "summary" and kind.startswith("response.reasoning_summary")
            if not keep_summary:
                self.hidden_chars += len(str(event.get("delta") or event.get("text") or ""))
                return None
            return event
        item = event.get("item")
        if isinstance(item, dict) and item.get("type") == "reasoning" and self.action == "strip":
            return None
        response = event.get("response")
        if isinstance(response, dict):
            self.hidden_chars += protect_response(response, self.action, self.limit)
        return event
