"""reasoning_leak: the response hands reasoning to the client (an output signal).

Reasoning returned in its own field (`reasoning_content`, `reasoning`), `<think>` blocks in the
answer, or a visible answer that reads like a raw reasoning trace ("Wait, ...", "Let me check").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from distillguard.events.call_view import CallView
from distillguard.signals.base import Signal, SignalResult
from distillguard.signals.patterns import Pattern, PatternTable, head_and_tail

# Markers of a raw trace: self-correction and deliberation that a finished answer does not contain.
TRACE_MARKERS: tuple[Pattern, ...] = (
    Pattern("wait", "trace", 0.3, r"(?:^|[.!?]\s+|\n)(?:but )?wait[,.!]"),
    Pattern("hmm", "trace", 0.3, r"\bhmm+\b"),
    Pattern(
        "let_me_check",
        "trace",
        0.25,
        r"\blet me (?:double[- ]check|check|verify|re-?examine|reconsider|think|re-?read|recalculate|try again|see)\b",
    ),
    Pattern("okay_so", "trace", 0.3, r"(?:^|\n)\s*(?:okay|ok|alright|all right),? so\b"),
    Pattern("alternatively", "trace", 0.2, r"(?:^|[.!?]\s+|\n)alternatively,"),
    Pattern("i_think_i", "trace", 0.2, r"\bi (?:think|guess) i (?:need|should|made)\b"),
    Pattern("thought_markers", "format", 0.9, r"<\|begin_of_thought\|>|<\|end_of_thought\|>"),
    Pattern(
        "think_block", "format", 0.95, r"<think>|</think>|<thinking>|</thinking>|<reasoning>|</reasoning>"
    ),
)
_TABLE = PatternTable(TRACE_MARKERS, flags=re.IGNORECASE | re.MULTILINE)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOTHING_FOUND = SignalResult(
    signal="reasoning_leak",
    score=0.0,
    detail="no reasoning found",
    parts={"reasoning_field": 0.0, "format": 0.0, "trace": 0.0},
)


class ReasoningLeak(Signal):
    name = "reasoning_leak"
    version = "1"
    description = (
        "Reasoning reached the client: returned in a reasoning field, as <think> blocks in the "
        "answer, or copied into the visible answer as a raw trace."
    )
    known_false_positives = (
        "deployments that deliberately return reasoning summaries to their customers (field present on every call)",
        "answers that quote or discuss a reasoning trace the user pasted",
        "conversational answers with a few 'wait'/'let me check' phrases",
    )
    reads = "output"
    inline = True
    reads_columns = ("response_text", "reasoning_text")

    def analyze_many(self, calls: Sequence[CallView]) -> list[SignalResult | None]:
        """Most answers carry no marker and no reasoning field: a prefilter scan that finds no
        candidate row settles them with what `analyze` would build (one shared result, read-only),
        without the memo and evidence strings; the rest go through `analyze`."""
        out: list[SignalResult | None] = []
        for call in calls:
            unmarked = call.response_text and not call.reasoning_text
            if unmarked and not _TABLE.candidate_rows(head_and_tail(call.response_text)):
                out.append(_NOTHING_FOUND)
            else:
                out.append(self.analyze(call))
        return out

    def analyze_columns(
        self, batch: pa.RecordBatch | pa.Table
    ) -> tuple[list[SignalResult | None], np.ndarray]:
        """Answers are mostly distinct, so grouping them saves little: each row's answer is read
        straight from the column, and only answers the prefilter flags (or that come with a
        reasoning field) become calls for `analyze`."""
        answers = batch.column("response_text").to_pylist()
        reasoning = batch.column("reasoning_text").to_pylist()
        results: list[SignalResult | None] = [_NOTHING_FOUND, None]  # shared: index 0 and 1
        index = np.zeros(len(answers), dtype=np.int64)
        for i, (answer, thought) in enumerate(zip(answers, reasoning, strict=True)):
            if not answer and not thought:
                index[i] = 1
            elif thought or _TABLE.candidate_rows(head_and_tail(answer)):
                call = CallView(
                    event_id="",
                    ts=_EPOCH,
                    account_id="",
                    response_text=answer or "",
                    reasoning_text=thought or "",
                )
                index[i] = len(results)
                results.append(self.analyze(call))
        return results, index

    def analyze(self, call: CallView) -> SignalResult | None:
        if not call.response_text and not call.reasoning_text:
            return None  # nothing came back: nothing to say about what leaked
        matched: list[str] = []
        adjustments: list[str] = []
        parts = {"reasoning_field": 0.0, "format": 0.0, "trace": 0.0}
        if call.reasoning_text:
            parts["reasoning_field"] = 1.0
            matched.append(f"reasoning_field: {len(call.reasoning_text)} characters of reasoning returned")
        hits = _TABLE.hits(head_and_tail(call.response_text))
        matched.extend(h.describe() for h in hits)
        parts.update((k, v) for k, v in _TABLE.aspect_scores(hits).items())
        trace_hits = sum(1 for h in hits if h.pattern.aspect == "trace")
        if trace_hits and len(call.response_text) < 400:
            # short answers with one "wait" are conversation, not a pasted trace
            adjustments.append(f"answer of {len(call.response_text)} characters: trace score halved")
            parts["trace"] = round(parts["trace"] / 2, 4)
        score = max(parts.values())
        return SignalResult(
            signal=self.name,
            score=score,
            detail=f"{len(matched)} indication(s) of reasoning in the response"
            if matched
            else "no reasoning found",
            matched=matched,
            adjustments=adjustments,
            parts=parts,
        )
