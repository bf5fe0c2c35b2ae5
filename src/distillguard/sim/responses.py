"""Response bodies in the OpenAI wire format: real answers where the corpus has one, otherwise a
placeholder of realistic length that says it is synthetic (`"x_synthetic": true`).

Placeholders are slices of one precomputed text (real answers from the run's split, unrelated to
the prompt), so a response costs a slice, not a generation.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

_VOCAB = (
    "the", "a", "an", "of", "to", "and", "in", "that", "is", "for", "it", "with", "as", "on", "be",
    "this", "are", "by", "or", "can", "you", "your", "which", "from", "at", "use", "using", "when",
    "more", "also", "will", "each", "these", "if", "not", "one", "first", "then", "step", "value",
    "result", "example", "data", "model", "function", "number", "time", "system", "user", "method",
    "approach", "case", "answer", "question", "important", "note", "however", "because", "therefore",
    "following", "based", "different", "could", "would", "should", "may", "might", "there", "their",
    "other", "such", "both", "between", "into", "over", "about", "after", "before", "simple", "common",
    "key", "main", "process", "second", "finally", "overall", "consider", "ensure", "provide", "make",
    "sure", "help", "understand", "explain", "include", "check", "compare", "list", "point", "option",
    "options", "benefit", "risk", "cost", "performance", "quality", "clear", "specific", "general",
    "typical", "code", "line", "file", "output", "input", "error", "test", "change", "update", "support",
    "feature", "request", "response", "format", "table", "section", "summary", "detail", "details",
    "context", "source", "information", "plan", "strategy", "goal",
)  # fmt: skip


def _word_salad(length: int = 300_000) -> str:
    rng = random.Random(20260202)
    parts: list[str] = []
    size = 0
    while size < length:
        words = [rng.choice(_VOCAB) for _ in range(rng.randint(8, 22))]
        sentence = " ".join(words).capitalize() + rng.choice((". ", ". ", ". ", ", and ", ".\n\n", ": "))
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)


_CALCULATOR = re.compile(r"<<[^>]*>>")


class Prose:
    """Placeholder text: slices of real prose (the split's corpus answers, unrelated to the prompt at
    hand), topped up with word salad when the corpus has less than `min_chars` (reasoning passes 0:
    it is only ever real trace text). Slicing is all a response costs."""

    MIN_CHARS = 200_000

    def __init__(self, texts: Sequence[str] = (), min_chars: int = MIN_CHARS) -> None:
        # GSM8K's calculator annotations (<<3*4=12>>) are not what a model would say
        joined = "\n\n".join(_CALCULATOR.sub("", t).strip() for t in texts if t and t.strip())
        self.real_chars = len(joined)
        if len(joined) < max(min_chars, 5_000):
            joined = (joined + "\n\n" + _word_salad(max(min_chars, 5_000) - len(joined) + 10_000)).strip()
        self.text = joined

    def take(self, rng: random.Random, low: int, high: int) -> str:
        """Between `low` and `high` characters, starting at a word boundary."""
        return self.take_chars(rng, rng.randint(low, high))

    def take_chars(self, rng: random.Random, length: int, sentence: bool = False) -> str:
        """About `length` characters, starting at a word boundary (or, with `sentence`, at the start
        of a sentence or paragraph, the way a trace reads)."""
        length = min(length, len(self.text) - 2)
        start = rng.randrange(0, len(self.text) - length - 1)
        if sentence:
            ends = [i for i in (self.text.find(". ", start), self.text.find("\n", start)) if i >= 0]
            cut = min(ends, default=-1)
            start = cut + 1 if 0 <= cut < start + 400 else start
            while start < len(self.text) and self.text[start] in " \n":
                start += 1
        else:
            space = self.text.find(" ", start)
            start = space + 1 if 0 <= space < start + 40 else start
        return self.text[start : start + length].strip()


WORD_SALAD = Prose()


def without_calculator_marks(text: str) -> str:
    return _CALCULATOR.sub("", text)


REFUSALS = (
    "I can't help with that. If you're going through something difficult, it may help to talk to someone you trust.",
    "I'm sorry, but I can't assist with that request.",
    "I won't help with this, because it could cause real harm. I'm happy to help with something else.",
    "That's not something I can help with. Is there anything else you'd like to talk about?",
)


def tokens(text: str) -> int:
    """Rough token count (4 characters a token), enough for usage fields."""
    return max(1, len(text) // 4)


_VERDICT_PATTERNS = (
    (re.compile(r"\[\[A\]\]"), lambda r, p: f"{p.take(r, 200, 700)}\n\n[[{r.choice('AAB')}]]"),
    (re.compile(r"\[\[rating\]\]"), lambda r, p: f"{p.take(r, 200, 600)}\n\nRating: [[{r.randint(3, 9)}]]"),
    (re.compile(r"model_identifier"), lambda r, p: f"### Concise explanation\n{p.take(r, 120, 400)}\n\n### Which is best, m or M?\n{r.choice('mM')}"),
    (re.compile(r"'rank': <model-rank>"), lambda r, p: _ranking(r)),
    (re.compile(r"Text 4|text_4|<text 4>", re.IGNORECASE), lambda r, p: "\n\n".join(f"#### Output for Text {i}\nRating: {r.randint(1, 5)}\nRationale: {p.take(r, 80, 220)}" for i in range(1, 5))),
    (re.compile(r"scores for Assistant 1 and 2"), lambda r, p: f"{r.randint(5, 9)} {r.randint(4, 9)}\n{p.take(r, 200, 600)}"),
    (re.compile(r"Output \(a\) or Output \(b\)"), lambda r, p: f"Output ({r.choice('ab')})"),
    (re.compile(r"A or B"), lambda r, p: r.choice("AB")),
)  # fmt: skip


def _ranking(rng: random.Random) -> str:
    first, second = (1, 2) if rng.random() < 0.5 else (2, 1)
    return f"[{{'model': 'model_1', 'rank': {first}}}, {{'model': 'model_2', 'rank': {second}}}]"


def judge_verdict(prompt: str, rng: random.Random, prose: Prose = WORD_SALAD, chars: int = 400) -> str:
    """What a judge model answers to a grading prompt, in the format the template asks for; its
    justification is about `chars` long."""
    low, high = max(20, chars // 2), max(40, chars)
    for pattern, make in _VERDICT_PATTERNS:
        if pattern.search(prompt):
            return str(make(rng, _Sized(prose, low, high)))
    return f"{prose.take(rng, low, high)}\n\nScore: {rng.randint(1, 10)}/10"


class _Sized:
    """A Prose whose `take` ignores the verdict template's own bounds: the judge's length comes from
    the kind of prompt (kinds.reply_chars), the same for every caller."""

    def __init__(self, prose: Prose, low: int, high: int) -> None:
        self.prose, self.low, self.high = prose, low, high

    def take(self, rng: random.Random, low: int, high: int) -> str:
        share = (low + high) / 2 / 400  # the template's parts keep their proportions
        return self.prose.take(rng, max(10, int(self.low * share)), max(20, int(self.high * share)))


def chat_response(
    *,
    rid: str,
    created: int,
    model: str,
    content: str,
    prompt_tokens: int,
    synthetic: bool,
    reasoning: str | None = None,
    finish_reason: str = "stop",
    logprobs: dict[str, Any] | None = None,
    other_samples: Sequence[str] = (),
) -> dict[str, Any]:
    """A chat.completion body; `other_samples` are the further choices of a call with n > 1."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    choices = [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}]
    for i, other in enumerate(other_samples, start=1):
        choices.append(
            {
                "index": i,
                "message": {"role": "assistant", "content": other},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        )
    texts = (content, *other_samples)
    completion_tokens = sum(tokens(t) for t in texts) + (tokens(reasoning) if reasoning else 0)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": tokens(reasoning)}
    body: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage,
    }
    if synthetic:
        body["x_synthetic"] = True
    return body


def text_completion_response(
    *, rid: str, created: int, model: str, text: str, prompt_tokens: int, finish_reason: str
) -> dict[str, Any]:
    completion_tokens = tokens(text)
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "x_synthetic": True,
    }


_PROBE_TOKENS = (
    "The",
    " the",
    " a",
    " of",
    " is",
    " Yes",
    " No",
    " I",
    "1",
    " to",
    " and",
    " in",
    " that",
    ".",
)


def probe_logprobs(rng: random.Random, top: int, answer: str | None = None) -> tuple[str, dict[str, Any]]:
    """Logprobs as a `logprobs: true` call returns them: for one sampled token (max_tokens 1), or,
    with `answer`, for its first few words (a careful prober reads the alternatives of each)."""
    words = [f" {w}" if i else w for i, w in enumerate(answer.split()[:8])] if answer else []
    entries = []
    for position in range(max(1, len(words))):
        candidates = rng.sample(_PROBE_TOKENS, k=min(top, len(_PROBE_TOKENS)))
        if words:
            candidates[0] = words[position]
        values = sorted((-abs(rng.gauss(0, 2.5)) for _ in candidates), reverse=True)
        top_list = [
            {"token": t, "logprob": round(v, 5), "bytes": list(t.encode())}
            for t, v in zip(candidates, values, strict=True)
        ]
        entries.append({**top_list[0], "top_logprobs": top_list})
    return str(entries[0]["token"]), {"content": entries, "refusal": None}


def error_body(status: int) -> dict[str, Any]:
    if status == 429:
        return {
            "error": {
                "message": "Rate limit reached for requests per minute. Please try again in 20s.",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
    return {
        "error": {"message": "The server had an error while processing your request.", "type": "server_error"}
    }
