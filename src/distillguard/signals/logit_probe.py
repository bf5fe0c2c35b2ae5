"""logit_probe: request parameters of logprob / logit_bias extraction (an input signal).

Reading a model's distribution token by token (top logprobs, biasing many tokens to ±100,
one-token completions) recovers far more than the text answer; ordinary applications rarely
need more than a handful of alternatives.
"""

from __future__ import annotations

from dataclasses import dataclass

from distillguard.events.call_view import CallView
from distillguard.signals.base import Signal, SignalResult


@dataclass(frozen=True, slots=True)
class ParameterRule:
    name: str
    weight: float
    explanation: str


# Rows of the table; `_fired` below says when each applies.
RULES: dict[str, ParameterRule] = {
    r.name: r
    for r in (
        ParameterRule("top_logprobs_5", 0.5, "top_logprobs >= 5"),
        ParameterRule("top_logprobs_20", 0.75, "top_logprobs >= 15 (near the API maximum)"),
        ParameterRule("logprobs_on", 0.1, "logprobs requested"),
        ParameterRule("logit_bias_10", 0.45, "logit_bias with >= 10 entries"),
        ParameterRule("logit_bias_100", 0.8, "logit_bias with >= 100 entries"),
        ParameterRule("max_tokens_1", 0.35, "max_tokens <= 1 (one-token probe)"),
        ParameterRule("one_token_logprobs", 0.85, "max_tokens <= 1 with logprobs or logit_bias"),
        ParameterRule(
            "n_greedy", 0.4, "n > 1 at temperature 0 (identical samples are useless unless probing)"
        ),
        ParameterRule("n_many", 0.3, "n >= 8 samples per call"),
    )
}


def _fired(call: CallView) -> list[str]:
    fired = []
    top = call.top_logprobs or 0
    if call.logprobs:
        fired.append("logprobs_on")
    if top >= 15:
        fired.append("top_logprobs_20")
    elif top >= 5:
        fired.append("top_logprobs_5")
    if call.logit_bias_size >= 100:
        fired.append("logit_bias_100")
    elif call.logit_bias_size >= 10:
        fired.append("logit_bias_10")
    if call.max_tokens is not None and call.max_tokens <= 1:
        fired.append("max_tokens_1")
        if call.logprobs or top > 0 or call.logit_bias_size > 0:
            fired.append("one_token_logprobs")
    if call.n is not None and call.n > 1 and call.temperature == 0.0:
        fired.append("n_greedy")
    if call.n is not None and call.n >= 8:
        fired.append("n_many")
    return fired


class LogitProbe(Signal):
    name = "logit_probe"
    version = "1"
    description = (
        "Parameter patterns of logprob and logit_bias extraction: many top logprobs, large logit_bias "
        "maps, one-token completions with logprobs, several greedy samples per call."
    )
    known_false_positives = (
        "classification apps reading the logprob of one label token (max_tokens 1 with logprobs)",
        "calibration and uncertainty research",
        "logit_bias used to ban a list of words",
    )
    reads = "input"
    inline = True
    reads_columns = ("logprobs", "top_logprobs", "logit_bias_size", "max_tokens", "n", "temperature")
    memo_entries = 4096

    def analyze(self, call: CallView) -> SignalResult:
        fired = _fired(call)
        miss = 1.0
        for name in fired:
            miss *= 1.0 - RULES[name].weight
        score = round(1.0 - miss, 4)
        return SignalResult(
            signal=self.name,
            score=score,
            detail=f"{len(fired)} extraction parameter pattern(s)" if fired else "no extraction parameters",
            matched=[f"{name}: {RULES[name].explanation}" for name in fired],
            adjustments=[f"noisy-or of {len(fired)} rules"] if len(fired) > 1 else [],
        )
