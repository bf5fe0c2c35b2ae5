"""The shape shared by the prompt classifiers: a pattern table, optionally a trained text model,
and one score that is the larger of the two, with every step written into the evidence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from distillguard.events.call_view import CallView
from distillguard.signals.base import Signal, SignalResult, score_down
from distillguard.signals.patterns import PatternTable, head_and_tail
from distillguard.signals.text_model import TextClassifier, load_classifier

MODES = ("rules+model", "rules")


def prompt_text(call: CallView) -> str:
    """What a prompt classifier reads: the system prompt and the last user turn, long ones cut."""
    if call.system_prompt:
        return head_and_tail(call.system_prompt) + "\n\n" + head_and_tail(call.prompt)
    return head_and_tail(call.prompt)


class RulesAndModelSignal(Signal):
    """Score = max(rule score, model probability); `mode="rules"` is the keyword-only baseline."""

    table: ClassVar[PatternTable]
    inline = True

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
        """Rule score, sub-scores per aspect, what matched, adjustments. Subclasses add call-level rules."""
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
            rule = score
            detail = f"rules {rule:.2f}"
            if probabilities is not None:
                p = score_down(float(probabilities[i]))
                parts["model"] = p
                detail += f", model {p:.4f} (0.5 = the dev-chosen threshold)"
                if p > score:
                    adjustments.append(f"model raised the score from {score:.2f} to {p:.4f}")
                    score = p
            results.append(
                SignalResult(
                    signal=self.name,
                    score=round(min(1.0, max(0.0, score)), 4),
                    detail=detail,
                    matched=matched,
                    adjustments=adjustments,
                    parts=parts,
                )
            )
        return results
