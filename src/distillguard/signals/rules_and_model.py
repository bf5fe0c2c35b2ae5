"""The shape shared by the prompt classifiers: a pattern table, optionally a trained text model,
and one score that is the larger of the two, with every step written into the evidence."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, ClassVar

import numpy as np

from distillguard.events.call_view import CallView
from distillguard.signals.base import (
    DistinctCalls,
    LazyResults,
    Signal,
    SignalResult,
    score_down,
    scores_down,
)
from distillguard.signals.patterns import Hit, PatternTable, TableGroup, head_and_tail
from distillguard.signals.text_model import EncodedTexts, TextClassifier, encode_texts, load_classifier

MODES = ("rules+model", "rules")


def prompt_text(call: CallView) -> str:
    """What a prompt classifier reads: the system prompt and the last user turn, long ones cut."""
    return texts_of(call.system_prompt, call.prompt)


def texts_of(system_prompt: str, prompt: str) -> str:
    """`prompt_text` of a call with this system prompt and prompt."""
    if system_prompt:
        return head_and_tail(system_prompt) + "\n\n" + head_and_tail(prompt)
    return head_and_tail(prompt)


# What the columnar path remembers of a distinct call: its score, its model score (after
# score_down; None in mode "rules") and the values of its parts (the table's aspects in order,
# then "model"). Its full result is rebuilt from these and the rules when read.
_Remembered = tuple[float, float | None, tuple[float, ...]]
# `DistinctCalls.derived` entries: the text (`texts_of`) of each distinct call, None until built;
# under (_TEXTS, the calls a classifier missed): what the classifiers share about them (`_Shared`)
_TEXTS = "rules_and_model.texts_of"


# the rules-and-model signals defined (each subclass with a table of its own registers itself)
_SIGNALS: list[type[RulesAndModelSignal]] = []


class _Shared:
    """The texts of the calls the prompt classifiers missed, their encoding for the text models,
    and each prompt table's hits of them (not through the table's memo: the texts of a batch's new
    distinct calls rarely repeat, and the memo's hashing and bookkeeping cost more there)."""

    __slots__ = ("encoded", "hits", "texts")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.encoded: EncodedTexts | None = None
        self.hits: dict[PatternTable, list[list[Hit]]] = {}


class RulesAndModelSignal(Signal):
    """Score = max(rule score, model probability); `mode="rules"` is the keyword-only baseline."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "table" in cls.__dict__:  # a signal with a table of its own: scanned with the others
            _SIGNALS.append(cls)

    table: ClassVar[PatternTable]
    inline = True
    # prompt_text reads the first two; rule_score may read the turn count (generation_request)
    reads_columns = ("system_prompt", "prompt", "n_user_turns")
    memo_entries = 65_536

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

    def rule_score(self, call: CallView, text: str) -> tuple[float, dict[str, float], list[str], list[str]]:
        """Rule score, sub-scores per aspect, what matched, adjustments. Subclasses add call-level
        rules in `rules`, which reads only the prompt and the number of user turns of the call."""
        return self.rules(call.prompt, call.n_user_turns, text)

    def rules(
        self, prompt: str, n_user_turns: int, text: str, hits: list[Hit] | None = None
    ) -> tuple[float, dict[str, float], list[str], list[str]]:
        """`hits`: the table's hits of `text` when the caller has them (a batch scanned at once)."""
        if hits is None:
            hits = self.table.hits(text)
        parts = self.table.aspect_scores(hits)
        return max(parts.values(), default=0.0), parts, [h.describe() for h in hits], []

    def analyze(self, call: CallView) -> SignalResult | None:
        return self.analyze_many([call])[0]

    def analyze_many(self, calls: Sequence[CallView]) -> list[SignalResult | None]:
        texts = [prompt_text(call) for call in calls]
        probabilities = None
        if self.mode == "rules+model":
            # the model reads the text alone, and templated traffic repeats texts within a batch:
            # score each distinct text once (rows are independent, so the values are the same)
            unique = list(dict.fromkeys(texts))
            scored = self.model.scores(unique)
            position = {text: k for k, text in enumerate(unique)}
            probabilities = scored[[position[text] for text in texts]] if texts else scored
        results: list[SignalResult | None] = []
        for i, (call, text) in enumerate(zip(calls, texts, strict=True)):
            score, parts, matched, adjustments = self.rule_score(call, text)
            model = None if probabilities is None else score_down(float(probabilities[i]))
            results.append(self._result(score, parts, matched, adjustments, model))
        return results

    def analyze_distinct(self, calls: DistinctCalls) -> LazyResults | list[SignalResult | None]:  # type: ignore[override]
        """`analyze_many` of the distinct calls, every score and part computed up front and each
        full result (its evidence text) built only when read. A distinct call seen in the last
        `memo_entries` is not scored again: its score, model score and parts are remembered."""
        names = self.reads_columns
        if calls.keys is None or any(name not in calls.columns for name in names):
            return super().analyze_distinct(calls)
        system_prompts, prompts, turns = (calls.columns[name] for name in names)
        # the prompt classifiers read the same distinct calls: the first builds each text they read
        texts: list[str | None] = calls.derived.setdefault(_TEXTS, [None] * len(calls))

        def compute(missing: list[int]) -> list[_Remembered]:
            # the classifiers' memos are alike, so they miss the same calls: the first builds
            # their texts, the texts' encoding and every prompt table's hits for the others
            key = (_TEXTS, tuple(missing))
            found: _Shared | None = calls.derived.get(key)
            if found is None:
                for i in missing:
                    if texts[i] is None:
                        texts[i] = texts_of(system_prompts[i] or "", prompts[i] or "")
                wanted = [texts[i] or "" for i in missing]
                found = calls.derived[key] = _Shared(wanted)
            if found.encoded is None and self.mode == "rules+model":
                found.encoded = encode_texts(found.texts)
            hits = found.hits.get(self.table)
            if hits is None:
                group = prompt_tables()
                if self.table in group.tables:
                    found.hits.update(group.hits_each(found.texts))
                    hits = found.hits[self.table]
                else:
                    hits = found.hits[self.table] = self.table.hits_many(found.texts)
            return self._remember(
                [prompts[i] or "" for i in missing],
                [turns[i] or 0 for i in missing],
                found.texts,
                found.encoded,
                hits,
            )

        keys = calls.keys
        known = self._recall(keys, compute) if self.memo_entries else compute(list(range(len(keys))))
        scores = np.fromiter((k[0] for k in known), dtype=np.float64, count=len(known))
        names_of_parts = self._part_names()
        values = np.array([k[2] for k in known], dtype=np.float64).reshape(len(known), len(names_of_parts))
        parts = {name: values[:, j] for j, name in enumerate(names_of_parts)}

        def build(i: int) -> SignalResult | None:
            prompt, turn = prompts[i] or "", turns[i] or 0
            text = texts_of(system_prompts[i] or "", prompt)
            return self._result(*self.rules(prompt, turn, text), known[i][1])

        return LazyResults(scores, build, parts)

    def _remember(
        self,
        prompts: list[str],
        turns: list[int],
        texts: list[str],
        encoded: EncodedTexts | None,
        hits_of: list[list[Hit]],
    ) -> list[_Remembered]:
        """What `analyze_distinct` keeps of each call (`texts`: their `texts_of`, `encoded`: the
        texts encoded for the model, `hits_of`: the table's hits of each): as `analyze_many`,
        without its evidence. Each text is scored
        as it comes: distinct calls' texts almost never repeat, and a text's score does not
        depend on its batch, so finding repeats (hashing every text) would cost more than it saves."""
        model: list[float | None] = [None] * len(texts)
        if self.mode == "rules+model":
            model = list(scores_down(self.model.scores(texts, encoded)))
        out: list[_Remembered] = []
        names = self._part_names()
        # the parts' values as a tuple (itemgetter of one name gives the value alone)
        values_of = itemgetter(*names) if len(names) > 1 else (lambda parts: tuple(parts[n] for n in names))
        for prompt, turn, text, p, hits in zip(prompts, turns, texts, model, hits_of, strict=True):
            score, parts, _, _ = self.rules(prompt, turn, text, hits)
            if p is not None:
                parts["model"] = p
                score = max(score, p)
            if len(parts) != len(names):
                raise ValueError(f"{self.name}: parts {sorted(parts)} are not {names}")
            out.append((round(min(1.0, max(0.0, score)), 4), p, values_of(parts)))
        return out

    def _part_names(self) -> tuple[str, ...]:
        """The parts of every result: the table's aspects, then the model's score."""
        return (*self.table.aspects, *(("model",) if self.mode == "rules+model" else ()))

    def _result(
        self,
        score: float,
        parts: dict[str, float],
        matched: list[str],
        adjustments: list[str],
        model: float | None,
    ) -> SignalResult:
        """The result of a call from its rules and its model score (after score_down)."""
        detail = f"rules {score:.2f}"
        if model is not None:
            parts["model"] = model
            detail += f", model {model:.4f} (0.5 = the dev-chosen threshold)"
            if model > score:
                adjustments.append(f"model raised the score from {score:.2f} to {model:.4f}")
                score = model
        return SignalResult(
            signal=self.name,
            score=round(min(1.0, max(0.0, score)), 4),
            detail=detail,
            matched=matched,
            adjustments=adjustments,
            parts=parts,
        )


def prompt_tables() -> TableGroup:
    """The pattern tables of every rules-and-model signal defined so far (they read the same
    text), scanned as one (`TableGroup`), in the order of the signals' names."""
    return _group(tuple(cls.table for cls in sorted(_SIGNALS, key=lambda cls: cls.name)))


@functools.cache
def _group(tables: tuple[PatternTable, ...]) -> TableGroup:
    return TableGroup(tables)
