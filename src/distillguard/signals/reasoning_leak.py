"""reasoning_leak: the response hands reasoning to the client (an output signal).

Four things are told apart in `parts`:
- `reasoning_field`: reasoning returned in its own field (`reasoning_content`, `reasoning`);
- `format`: reasoning markup in the visible answer (`<think>` blocks, thought markers);
- `trace`: the visible answer IS reasoning: a classifier trained on real reasoning (FLAN rationales,
  GSM8K worked solutions; thresholded on DEV families with s1K thinking trajectories) against
  ordinary answers (models/reasoning_leak.npz), with weak cue phrases of real traces as evidence;
- `echo`: the visible answer copies the returned reasoning (shared word 4-grams), which is how
  reasoning leaks past a gateway that strips the reasoning field.
No rule keys on words a simulator writes into its traces: the cues come from real traces only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from distillguard.events.call_view import CallView
from distillguard.signals.base import LazyResults, Signal, SignalResult, distinct_views, score_down
from distillguard.signals.patterns import Pattern, head_and_tail, load_patterns
from distillguard.signals.text_model import TextClassifier, load_classifier

PATTERN_FILE = load_patterns(Path(__file__).with_name("reasoning_leak.yaml"), signal="reasoning_leak")
PATTERNS: tuple[Pattern, ...] = PATTERN_FILE.patterns
MODES = ("rules+model", "rules")

# A visible answer must be at least this long before copying from the reasoning is evidence: a
# short final answer restates the reasoning's conclusion by design.
ECHO_MIN_WORDS = 30
# ... and at least this long (after `answer_text`) before the trace classifier reads it: a
# sentence or two ("Paris is the capital of France.") is an answer, and too short to tell a
# rationale from a statement; the classifier was trained on answers of this length only.
MIN_TRACE_CHARS = 150
_WORD = re.compile(r"\w+", re.UNICODE)
# storage formats of the corpora, not what a model returns: GSM8K's calculator annotations and
# "#### n" line, the "So the answer is X." that the FLAN reader appends, reasoning tags (the
# `format` part reads those)
_GSM8K_CALC = re.compile(r"<<[^<>]*>>")
_GSM8K_FINAL = re.compile(r"^####\s*\S+\s*$", re.MULTILINE)
_FLAN_SUFFIX = re.compile(r"\s*So the answer is [^\n]*\.\s*$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TAGS = re.compile(r"</?think>|</?thinking>|<\|(?:begin|end)_of_thought\|>", re.IGNORECASE)


def answer_text(text: str) -> str:
    """What the trace classifier reads of an answer (the same in training, benchmark and service)."""
    # each pattern needs a literal that most answers lack: looking for it first costs far less
    # than a regex search of the whole answer (the result is the same)
    if "<" in text:
        text = _TAGS.sub(" ", text)
        if "<<" in text:
            text = _GSM8K_CALC.sub("", text)
    if "####" in text:
        text = _GSM8K_FINAL.sub("", text)
    if "So the answer is " in text:
        text = _drop_flan_suffix(text)
    return text.strip()


def _drop_flan_suffix(text: str) -> str:
    """`_FLAN_SUFFIX.sub("", text)`, searching only where a match can start. A match ends with the
    text's last non-space character, a ".", and its "So the answer is" sits on that character's
    line ([^\\n]), after nothing but spaces: so it starts in the spaces before that line or on it.
    (A search from the start tries, at every position, the pattern's leading \\s*.)"""
    end = len(text.rstrip())  # re's \s is str.isspace, as rstrip's
    if not end or text[end - 1] != ".":
        return text
    line = text.rfind("\n", 0, end) + 1
    match = _FLAN_SUFFIX.search(text, len(text[:line].rstrip()))
    return text if match is None else text[: match.start()] + text[match.end() :]


# bytes.translate table: ASCII letters lower-cased, digits and "_" kept, every other byte a space
_WORD_BYTES = bytes(
    c if chr(c).isascii() and (chr(c).isalnum() or c == ord("_")) else 32 for c in range(256)
).lower()
_ASCII_BYTES = bytes(range(128))


def _words(text: str) -> list[bytes]:
    """`_WORD.findall(text.lower())`, each word UTF-8 encoded. When no non-ASCII character of the
    text is (lower-cased) a word character (`re` reads \\w as str.isalnum() or "_"), the words are
    the runs of ASCII word characters: one bytes.translate and split, ~3x cheaper than the regex."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) != len(text):  # non-ASCII characters: their UTF-8 bytes are all >= 0x80
        others = data.translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass")
        if any(ch.isalnum() or ch == "_" for c in set(others) for ch in c.lower()):
            return [w.encode("utf-8", "surrogatepass") for w in _WORD.findall(text.lower())]
    return data.translate(_WORD_BYTES).split()


def _runs(words: list[bytes], size: int = 4) -> Iterator[tuple[bytes, ...]]:
    """The runs of `size` consecutive words (zip builds them in C, no slicing per run)."""
    return zip(*(words[i:] for i in range(size)), strict=False)


def echo_share(answer: str, reasoning: str) -> float:
    """Share of the answer's word 4-grams that also occur in the reasoning (0 for short answers)."""
    mine = set(_runs(_words(head_and_tail(answer))))
    if len(mine) < ECHO_MIN_WORDS:
        return 0.0
    # the reasoning's 4-grams are only looked up, never kept in a set of their own
    return len(mine.intersection(_runs(_words(head_and_tail(reasoning))))) / len(mine)


class ReasoningLeak(Signal):
    name = "reasoning_leak"
    version = "2"
    description = (
        "Reasoning reached the client: returned in a reasoning field, as <think> blocks in the "
        "answer, as a visible answer that reads as reasoning (trained classifier), or copied from the "
        "returned reasoning into the answer."
    )
    known_false_positives = (
        "deployments that deliberately return reasoning summaries to their customers (field present on every call)",
        "tutoring answers that work a problem step by step (part 'trace'; the account stage weighs it)",
        "answers that quote or discuss a reasoning trace the user pasted",
    )
    reads = "output"
    inline = True
    reads_columns = ("response_text", "reasoning_text")
    table = PATTERN_FILE.table()

    def __init__(self, *, mode: str = "rules+model") -> None:
        if mode not in MODES:
            raise ValueError(f"{self.name}: unknown mode {mode!r}; known: {', '.join(MODES)}")
        self.mode = mode
        self._model: TextClassifier | None = None

    @property
    def model(self) -> TextClassifier:
        if self._model is None:
            self._model = load_classifier(self.name)
        return self._model

    def analyze(self, call: CallView) -> SignalResult | None:
        return self.analyze_many([call])[0]

    def analyze_many(self, calls: Sequence[CallView]) -> list[SignalResult | None]:
        answers = [
            answer_text(head_and_tail(call.response_text)) if call.response_text else "" for call in calls
        ]
        model_scores: dict[str, float] = {}
        if self.mode == "rules+model":
            distinct = [a for a in dict.fromkeys(answers) if len(a) >= MIN_TRACE_CHARS]
            if distinct:
                model_scores = dict(zip(distinct, map(float, self.model.scores(distinct)), strict=True))
        return [
            self._result(call, answer, model_scores.get(answer))
            for call, answer in zip(calls, answers, strict=True)
        ]

    def analyze_columns(self, batch: pa.RecordBatch | pa.Table) -> tuple[LazyResults, np.ndarray]:
        """`analyze_many` of the batch's distinct calls, each result built only when read, every
        score computed up front without the evidence. A call that returned reasoning scores 1.0
        (its 'reasoning_field' part) whatever the rest says, so neither its echo check nor its
        classifier score (parts and evidence only) is computed unless its result is read."""
        calls = distinct_views(batch, self.reads_columns)
        # the two columns as lists (no CallView per distinct call); null reads as ""
        responses = [text or "" for text in calls.columns["response_text"]]
        reasonings = [text or "" for text in calls.columns["reasoning_text"]]
        # only an answer that came without reasoning is read for its score
        read = [
            i
            for i, (response, reasoning) in enumerate(zip(responses, reasonings, strict=True))
            if response and not reasoning
        ]
        heads = [head_and_tail(responses[i]) for i in read]
        answers = [answer_text(head) for head in heads]
        # the classifier's score of each read call (by its index): the calls are distinct, so
        # their answers almost always differ, and scoring a rare repeat twice costs less than
        # hashing every answer to find it (a text's score does not depend on its batch)
        model_of: dict[int, float] = {}
        if self.mode == "rules+model":
            long = [k for k, answer in enumerate(answers) if len(answer) >= MIN_TRACE_CHARS]
            if long:
                scored = self.model.scores([answers[k] for k in long]).tolist()
                model_of = {read[k]: score for k, score in zip(long, scored, strict=True)}
        scores = np.full(len(responses), np.nan)
        scores[[i for i, reasoning in enumerate(reasonings) if reasoning]] = 1.0
        # the table's hits of every answer that came without reasoning, in one prefilter scan
        aspect_scores, get_model = self.table.aspect_scores, model_of.get
        for i, hits in zip(read, self.table.hits_many(heads), strict=True):
            # as `_result` with no reasoning: the table's aspects, raised by the classifier
            score = max(0.0, *aspect_scores(hits).values()) if hits else 0.0
            model = get_model(i)
            scores[i] = score if model is None else max(score, score_down(model))

        def build(i: int) -> SignalResult | None:
            view = CallView(
                event_id="",
                ts=_EPOCH,
                account_id="",
                response_text=responses[i],
                reasoning_text=reasonings[i],
            )
            # every answer, with reasoning or without (`model_of` holds only the latter's scores)
            answer = answer_text(head_and_tail(responses[i])) if responses[i] else ""
            model = model_of.get(i)
            if model is None and self.mode == "rules+model" and len(answer) >= MIN_TRACE_CHARS:
                # an answer that came with reasoning: scored alone (texts score independently)
                model = float(self.model.scores([answer])[0])
            return self._result(view, answer, model)

        return LazyResults(scores, build), calls.of_row

    def _result(self, call: CallView, answer: str, model: float | None) -> SignalResult | None:
        if not call.response_text and not call.reasoning_text:
            return None  # nothing came back: nothing to say about what leaked
        matched: list[str] = []
        adjustments: list[str] = []
        parts = {"reasoning_field": 0.0, "format": 0.0, "trace": 0.0, "echo": 0.0}
        if call.reasoning_text:
            parts["reasoning_field"] = 1.0
            matched.append(f"reasoning_field: {len(call.reasoning_text)} characters of reasoning returned")
            if call.response_text:
                share = echo_share(call.response_text, call.reasoning_text)
                if share > 0.0:
                    parts["echo"] = round(share, 4)
                    matched.append(
                        f"echo: {share:.0%} of the answer's word 4-grams are copied from the reasoning"
                    )
        hits = self.table.hits(head_and_tail(call.response_text))
        matched.extend(h.describe() for h in hits)
        parts.update(self.table.aspect_scores(hits))
        score = max(parts.values())  # every part but "model" (the classifier counts as 'trace')
        if model is not None:
            model = parts["model"] = score_down(model)
            if model > parts["trace"]:
                adjustments.append(
                    f"trace classifier {model:.4f} (0.5 = the dev-chosen threshold) raised 'trace' from {parts['trace']:.2f}"
                )
                parts["trace"] = model
                score = max(score, model)
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
