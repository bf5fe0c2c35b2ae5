"""Reasoning protection: in `strip` mode no part of the model's reasoning leaves the gateway, in
`summary` mode only a short extract does, whatever field, content part, token list or stream event
carries it, in whole responses and in streams.

A reasoning trace is what a distiller wants most and what an ordinary caller needs least. `summary`
keeps the first and last sentence (an extract, no model on the request path), so a caller still
sees that the model reasoned and where it ended up.

Two lines of defence. First, a table of the places model servers and routers put reasoning (the
`CARRIERS` below); in strip and summary mode a chat message or delta also keeps only the fields an
OpenAI answer has, so a carrier nobody has listed yet is dropped too. Second, a final scan: every
string of the outgoing body other than the answer text itself is searched for the withheld
reasoning, and removed where it is found.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

THINK_OPEN = ("<think>", "<thinking>", "<reasoning>", "<|begin_of_thought|>")
THINK_CLOSE = ("</think>", "</thinking>", "</reasoning>", "<|end_of_thought|>")
_THINK_BLOCK = re.compile(
    r"(?:<think>|<thinking>|<reasoning>|<\|begin_of_thought\|>)(.*?)"
    r"(?:</think>|</thinking>|</reasoning>|<\|end_of_thought\|>|\Z)",
    re.S,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
SUMMARY_NOTE = "[reasoning summarised by the provider]"

# ---- where reasoning travels --------------------------------------------------------------------
# Fields of a chat message (or a streamed delta) that carry reasoning: vLLM and DeepSeek
# (`reasoning_content`), OpenRouter (`reasoning`, `reasoning_details`), Anthropic-compatible servers
# and LiteLLM (`thinking`, `thinking_blocks`), others (`reasoning_text`, `thoughts`).
REASONING_FIELDS = (
    "reasoning_content",
    "reasoning",
    "reasoning_details",
    "reasoning_text",
    "thinking",
    "thinking_blocks",
    "thoughts",
)
# Content parts (chat `content` lists, /v1/responses message content) that carry reasoning.
REASONING_PART_TYPES = frozenset(
    {"thinking", "redacted_thinking", "reasoning", "reasoning_text", "reasoning_content"}
)
# /v1/responses output items that carry reasoning; in summary mode only these keys of one stay.
REASONING_ITEM_TYPES = frozenset({"reasoning"})
SUMMARY_ITEM_KEYS = ("type", "id", "summary", "status")
# What an OpenAI chat message or delta holds; in strip and summary mode nothing else leaves.
MESSAGE_FIELDS = frozenset(
    {
        "role",
        "content",
        "refusal",
        "tool_calls",
        "function_call",
        "audio",
        "annotations",
        "name",
        "tool_call_id",
    }
)
# The table the docs and tests read: (where, what carries reasoning there).
CARRIERS: tuple[tuple[str, str], ...] = (
    ("choices[].message / choices[].delta", "fields " + ", ".join(REASONING_FIELDS)),
    ("choices[].message.content / delta.content / choices[].text", "<think>, <thinking>, <reasoning> blocks"),
    ("choices[].message.content[] parts", "parts of type " + ", ".join(sorted(REASONING_PART_TYPES))),
    ("choices[].logprobs (chat content tokens, completions tokens)", "the tokens of withheld reasoning"),
    ("/v1/responses output[] items", "items of type reasoning: content, encrypted_content, summary"),
    ("/v1/responses message content parts and their logprobs", "reasoning parts, <think> blocks"),
    (
        "/v1/responses stream events",
        "response.reasoning*, output_item.added/done and content_part.* of reasoning, "
        "output_text.delta/done, created/in_progress/completed/incomplete/failed responses",
    ),
)
_LOGPROB_TOKEN_ARRAYS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")  # completions format
_WINDOW = 48  # characters of withheld reasoning searched for as one piece by the final scan
_MAX_NEEDLES = 256


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


def _text_of(value: Any) -> str:
    """Every string inside a carrier's value (a string, or objects such as reasoning_details)."""
    if isinstance(value, str):
        return value
    return "\n".join(s for s in _strings(value) if s)


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))


def protect_text(text: str, action: str, limit: int = 240) -> tuple[str, int]:
    """`text` with its think blocks removed (strip) or summarised (summary); characters hidden.

    >>> protect_text("<think>2+2 is 4.</think>\\n\\nFour.", "strip")
    ('Four.', 24)
    """
    out, spans, _ = _protect_text(text, action, limit)
    return out, sum(end - start for start, end in spans)


def _protect_text(text: str, action: str, limit: int) -> tuple[str, list[tuple[int, int]], list[str]]:
    """The protected text, the hidden spans (in `text`) and the hidden reasoning."""
    spans: list[tuple[int, int]] = []
    hidden: list[str] = []

    def replace(match: re.Match[str]) -> str:
        spans.append(match.span())
        hidden.append(match.group(1))
        if action == "summary":
            return f"<think>{summarise(match.group(1), limit)}</think>"
        return ""

    out = _THINK_BLOCK.sub(replace, text)
    if spans and action == "strip":
        out = out.lstrip()
    return out, spans, hidden


class ReasoningProtector:
    """Applies the reasoning action (strip or summary) to one call's answer: `response` for a whole
    body, `chat_chunk` and `responses_event` for the decoded events of a stream, in order; `scan`
    is the final search for withheld reasoning. `changed` says whether the last object handed in
    was modified (an unchanged event is relayed as the upstream's bytes)."""

    def __init__(self, action: str, limit: int = 240) -> None:
        if action not in ("strip", "summary"):
            raise ValueError(f"reasoning action must be strip or summary here, not {action!r}")
        self.action = action
        self.limit = limit
        self.hidden_chars = 0
        self.withheld: list[str] = []  # the reasoning text, for the final scan
        self.dropped_fields: set[str] = set()  # unlisted message fields removed
        self.scan_removed: list[str] = []  # where the final scan found withheld reasoning
        self.changed = False
        self._filters: dict[Any, ThinkFilter] = {}
        self._reasoning: dict[int, list[str]] = {}
        self._summarised: set[int] = set()
        self._reasoning_outputs: set[int] = set()  # /v1/responses output indexes of reasoning items
        self._pieces: list[str] = []  # withheld reasoning that arrived in stream deltas
        self._needles: list[str] = []
        self._needles_from = -1
        # ids of the answer strings of the object being protected: the final scan leaves them alone
        self._answers: set[int] = set()

    # ---- bookkeeping ---------------------------------------------------------------------------
    def _withhold(self, text: str, piece: bool = False) -> None:
        """Count `text` as withheld; a stream's pieces are searched for as one text."""
        if text:
            self.hidden_chars += len(text)
            (self._pieces if piece else self.withheld).append(text)
            self.changed = True

    def notes(self) -> list[str]:
        """What the call log says about this answer."""
        out = []
        if self.hidden_chars:
            out.append(f"reasoning {self.action}: {self.hidden_chars} characters withheld")
        if self.dropped_fields:
            out.append("answer fields not passed on: " + ", ".join(sorted(self.dropped_fields)))
        if self.scan_removed:
            out.append("withheld reasoning found and removed at: " + ", ".join(self.scan_removed[:10]))
        return out

    # ---- whole responses -----------------------------------------------------------------------
    def response(self, body: Any) -> bool:
        """Protect a whole response in place; whether anything changed."""
        self.changed = False
        self._answers = set()
        if not isinstance(body, dict):
            return False
        choices = body.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict):
                    self._whole_choice(choice)
        output = body.get("output")
        if isinstance(output, list):
            self._output_items(output)
        if isinstance(body.get("output_text"), str):
            body["output_text"] = self._answer_text(body["output_text"])
        changed = self.changed
        if self.scan(body):
            changed = True
        self.changed = changed
        return changed

    def _message_fields(self, holder: dict[str, Any], is_message: bool, piece: bool = False) -> list[str]:
        """Pops reasoning fields (and, from a message or delta, unlisted fields); their texts."""
        texts: list[str] = []
        for field in [f for f in holder if f not in MESSAGE_FIELDS]:
            if field in REASONING_FIELDS:
                value = holder.pop(field)
                if not value:
                    holder[field] = (
                        value  # null or empty (vLLM sends `reasoning_content: null`): nothing to hide
                    )
                    continue
                text = _text_of(value)
                self.changed = True
                if text:
                    texts.append(text)
                    self._withhold(text, piece)
            elif is_message and holder[field] not in (None, "", [], {}):
                holder.pop(field)
                self.dropped_fields.add(field)
                self.changed = True
        return texts

    def _whole_choice(self, choice: dict[str, Any]) -> None:
        message = choice.get("message")
        is_message = isinstance(message, dict)
        holder: dict[str, Any] = message if isinstance(message, dict) else choice
        key = "content" if is_message else "text"
        carried = [f for f in REASONING_FIELDS if isinstance(holder.get(f), str) and holder.get(f)]
        texts = self._message_fields(holder, is_message)
        original = holder.get(key)
        spans: list[tuple[int, int]] = []
        if isinstance(original, str):
            if "<" in original:
                holder[key], spans, hidden = _protect_text(original, self.action, self.limit)
                for text in hidden:
                    self._withhold(text)
            self._answers.add(id(holder[key]))
        elif isinstance(original, list):
            texts += self._parts(original)
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict) and (texts or spans):
            self._filter_logprobs(
                logprobs, original if isinstance(original, str) else None, spans, bool(texts)
            )
        if self.action == "summary" and texts and is_message:
            holder[carried[0] if carried else "reasoning_content"] = summarise("\n".join(texts), self.limit)

    def _parts(self, parts: list[Any]) -> list[str]:
        """Content parts: reasoning parts removed (their texts returned), think blocks in text parts."""
        texts: list[str] = []
        kept = []
        for part in parts:
            if isinstance(part, dict) and part.get("type") in REASONING_PART_TYPES:
                text = _text_of({k: v for k, v in part.items() if k != "type"})
                texts.append(text)
                self._withhold(text)
                self.changed = True
                continue
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                original = part["text"]
                if "<" in original:
                    part["text"], spans, hidden = _protect_text(original, self.action, self.limit)
                    for text in hidden:
                        self._withhold(text)
                    if spans and isinstance(part.get("logprobs"), list):
                        part["logprobs"] = _kept_tokens(part["logprobs"], original, spans, False)
                self._answers.add(id(part["text"]))
            kept.append(part)
        if len(kept) != len(parts):
            parts[:] = kept
        return texts

    def _answer_text(self, text: str) -> str:
        if "<" in text:
            text, _, hidden = _protect_text(text, self.action, self.limit)
            for piece in hidden:
                self._withhold(piece)
        self._answers.add(id(text))
        return text

    def _filter_logprobs(
        self, logprobs: dict[str, Any], original: str | None, spans: list[tuple[int, int]], fields: bool
    ) -> None:
        """Drops the log-probabilities of withheld tokens (chat and completions formats)."""
        self.changed = True
        for key in list(logprobs):
            if key not in ("content", "refusal", *_LOGPROB_TOKEN_ARRAYS):
                logprobs.pop(key)  # a server's own reasoning log-probabilities, say
        content = logprobs.get("content")
        if isinstance(content, list):
            logprobs["content"] = _kept_tokens(content, original, spans, fields)
        tokens = logprobs.get("tokens")
        if isinstance(tokens, list):
            entries = [{"token": t} for t in tokens]
            kept = {id(e) for e in _kept_tokens(entries, original, spans, fields)}
            keep = [i for i, e in enumerate(entries) if id(e) in kept]
            for name in _LOGPROB_TOKEN_ARRAYS:
                array = logprobs.get(name)
                if isinstance(array, list) and len(array) == len(tokens):
                    logprobs[name] = [array[i] for i in keep]

    def _output_items(self, output: list[Any]) -> None:
        kept = []
        for item in output:
            if isinstance(item, dict) and item.get("type") in REASONING_ITEM_TYPES:
                texts = _text_of(item.get("content")), _text_of(item.get("encrypted_content"))
                for text in texts:
                    self._withhold(text)
                self.changed = True
                if self.action == "summary":
                    for key in list(item):
                        if key not in SUMMARY_ITEM_KEYS:
                            item.pop(key)
                    kept.append(item)
                else:
                    self._withhold(_text_of(item.get("summary")))
                continue
            if (
                isinstance(item, dict)
                and item.get("type") == "message"
                and isinstance(item.get("content"), list)
            ):
                self._parts(item["content"])
            kept.append(item)
        if len(kept) != len(output):
            output[:] = kept

    # ---- streams -------------------------------------------------------------------------------
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
        """One streamed chat or completions chunk; None drops it (it carried only reasoning)."""
        self.changed = False
        self._answers = set()
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return chunk
        emptied = 0  # choices whose delta carried only reasoning and now carries nothing
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0) if isinstance(choice.get("index"), int) else 0
            delta = choice.get("delta")
            is_delta = isinstance(delta, dict)
            holder: dict[str, Any] = delta if isinstance(delta, dict) else choice
            key = "content" if is_delta else "text"
            texts = self._message_fields(holder, is_delta, piece=True)
            self._reasoning.setdefault(index, []).extend(texts)
            had_reasoning = bool(texts)
            if isinstance(holder.get(key), list):
                texts = self._parts(holder[key])
                had_reasoning = had_reasoning or bool(texts)
            text: Any = holder.get(key)
            if isinstance(text, str) and text:
                think = self._filters.setdefault(index, ThinkFilter())
                before, pieces = think.hidden_chars, len(think.hidden)
                holder[key] = think.feed(text)
                hidden_now = think.hidden_chars - before
                if hidden_now:
                    self._withhold("".join(think.hidden[pieces:]), piece=True)
                if holder[key] != text:
                    self.changed = True
                # a delta whose every character was withheld (tag pieces, think text) goes nowhere
                had_reasoning = had_reasoning or not holder[key]
                if hidden_now or think.inside or think.pending:
                    had_reasoning = True
            finished = choice.get("finish_reason") is not None
            if finished and index in self._filters:
                rest = self._filters[index].flush()
                if rest:
                    holder[key] = (holder.get(key) or "") + rest
                    self.changed = True
            if had_reasoning and choice.get("logprobs") is not None:
                choice["logprobs"] = None  # the tokens of this chunk include withheld ones
                self.changed = True
            # in summary mode the extract goes out with the first visible answer text or at the end
            if is_delta and (holder.get(key) or finished):
                summary = self._summary_for(index)
                if summary is not None:
                    holder["reasoning_content"] = summary
                    self.changed = True
            if isinstance(holder.get(key), str):
                self._answers.add(id(holder[key]))
            meaningful = [k for k, v in holder.items() if v not in (None, "")]
            if had_reasoning and not finished and not meaningful:
                emptied += 1
        if emptied and emptied == len(choices) and not chunk.get("usage"):
            return None
        if self.hidden_chars and self.scan(chunk):
            self.changed = True
        return chunk

    def responses_event(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """One /v1/responses stream event; None drops it."""
        self.changed = False
        self._answers = set()
        kind = event.get("type")
        if not isinstance(kind, str):
            return event
        if kind.startswith("response.reasoning"):
            if self.action == "summary" and kind.startswith("response.reasoning_summary"):
                return event
            if kind.endswith(".delta"):
                self._withhold(_text_of(event.get("delta")), piece=True)
            else:
                self._withhold(_text_of(event.get("text")))
            self.changed = True
            return None
        index = event.get("output_index")
        item = event.get("item")
        if isinstance(item, dict) and item.get("type") in REASONING_ITEM_TYPES:
            if isinstance(index, int):
                self._reasoning_outputs.add(index)
            if self.action == "strip":
                self._withhold(_text_of(item.get("content")) + _text_of(item.get("encrypted_content")))
                self.changed = True
                return None
            self._output_items([item])  # summary: the item keeps only its summary
        elif (
            isinstance(item, dict) and item.get("type") == "message" and isinstance(item.get("content"), list)
        ):
            self._parts(item["content"])
        part = event.get("part")
        if isinstance(part, dict):
            if part.get("type") in REASONING_PART_TYPES or index in self._reasoning_outputs:
                self._withhold(_text_of(part))
                self.changed = True
                return None
            self._parts([part])
        elif index in self._reasoning_outputs and kind.startswith("response.content_part"):
            return None
        if kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
            text = event["delta"]
            think = self._filters.setdefault(
                (event.get("item_id"), event.get("content_index")), ThinkFilter()
            )
            before, pieces = think.hidden_chars, len(think.hidden)
            event["delta"] = think.feed(text)
            if think.hidden_chars != before:
                self._withhold("".join(think.hidden[pieces:]), piece=True)
            if event["delta"] != text:
                self.changed = True
            if (think.hidden_chars != before or think.inside or think.pending) and event.get("logprobs"):
                event["logprobs"] = []
                self.changed = True
            self._answers.add(id(event["delta"]))
            if not event["delta"] and text:
                return None
        elif kind == "response.output_text.done" and isinstance(event.get("text"), str):
            original = event["text"]
            if "<" in original:
                event["text"], spans, hidden = _protect_text(original, self.action, self.limit)
                for piece in hidden:
                    self._withhold(piece)
                if spans and isinstance(event.get("logprobs"), list):
                    event["logprobs"] = _kept_tokens(event["logprobs"], original, spans, False)
            self._answers.add(id(event["text"]))
        response = event.get("response")
        if isinstance(response, dict):
            changed = self.changed
            self.response(response)
            self.changed = self.changed or changed
        elif self.hidden_chars and self.scan(event):
            self.changed = True
        return event

    # ---- the final scan ------------------------------------------------------------------------
    def _current_needles(self) -> list[str]:
        total = self.hidden_chars
        if total - self._needles_from < _WINDOW and self._needles:
            return self._needles
        needles: list[str] = []
        for text in [*self.withheld, "".join(self._pieces)]:
            if self.action == "summary":
                # the extract (first and last sentence) leaves by design: search for the rest
                sentences = [s for s in _SENTENCE.split(text.strip()) if s]
                text = " ".join(sentences[1:-1])
            for start in range(0, len(text) - _WINDOW + 1, _WINDOW):
                window = text[start : start + _WINDOW]
                if sum(ch.isalnum() for ch in window) >= _WINDOW // 2:
                    needles.append(window)
        if len(needles) > _MAX_NEEDLES:
            step = len(needles) / _MAX_NEEDLES
            needles = [needles[int(i * step)] for i in range(_MAX_NEEDLES)]
        self._needles, self._needles_from = needles, total
        return needles

    def scan(self, body: Any) -> int:
        """Removes every string (other than the answer text) that holds withheld reasoning;
        returns how many. The answer text itself was cleaned by the carriers above."""
        if not self.hidden_chars:
            return 0
        needles = self._current_needles()
        if not needles:
            return 0
        removed = 0
        stack: list[tuple[Any, str]] = [(body, "$")]
        while stack:
            node, where = stack.pop()
            items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
            doomed: list[Any] = []
            for key, value in items:
                if isinstance(value, str):
                    if (
                        len(value) >= _WINDOW
                        and id(value) not in self._answers
                        and any(needle in value for needle in needles)
                    ):
                        doomed.append(key)
                elif isinstance(value, dict | list):
                    stack.append((value, f"{where}.{key}" if isinstance(node, dict) else f"{where}[{key}]"))
            for key in reversed(doomed):
                del node[key]
                removed += 1
                self.scan_removed.append(f"{where}.{key}" if isinstance(node, dict) else f"{where}[{key}]")
        return removed


def _kept_tokens(
    tokens: list[Any], original: str | None, spans: list[tuple[int, int]], fields: bool
) -> list[Any]:
    """The token entries (`{"token": ...}`) that lie outside the withheld spans of `original`. When
    the tokens also cover reasoning returned in a separate field, they start with it; when they
    cannot be laid over the text at all, none is kept."""
    texts = [t.get("token") if isinstance(t, dict) else None for t in tokens]
    if original is None or not all(isinstance(t, str) for t in texts):
        return []
    joined = "".join(texts)  # type: ignore[arg-type]
    if joined == original:
        offset = 0
    elif fields and joined.endswith(original):
        offset = len(joined) - len(original)  # the reasoning's tokens come first
    else:
        return []
    kept = []
    position = -offset
    for entry, text in zip(tokens, texts, strict=True):
        start, end = position, position + len(text)  # type: ignore[arg-type]
        position = end
        if start < 0:
            continue
        if any(start < hidden_end and end > hidden_start for hidden_start, hidden_end in spans):
            continue
        kept.append(entry)
    return kept


class ThinkFilter:
    """Removes `<think>...</think>` from text that arrives in pieces (tags may be split across
    deltas), holding back only as many characters as could start a tag."""

    _longest = max(len(t) for t in THINK_OPEN + THINK_CLOSE)

    def __init__(self) -> None:
        self.inside = False
        self.pending = ""
        self.hidden: list[str] = []
        self.hidden_chars = 0
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
            self.hidden_chars += len(text)
            return
        if self._trim:
            text = text.lstrip()
            self._trim = not text
        out.append(text)

    def flush(self) -> str:
        rest, self.pending = self.pending, ""
        if self.inside:
            self.hidden.append(rest)
            self.hidden_chars += len(rest)
            return ""
        return rest


def protect_response(body: Any, action: str, limit: int = 240) -> int:
    """Apply `action` (keep, strip, summary) to a whole response in place; characters hidden."""
    if action == "keep" or not isinstance(body, dict):
        return 0
    protector = ReasoningProtector(action, limit)
    protector.response(body)
    return protector.hidden_chars
