from __future__ import annotations

import pytest

from distillguard.signals.logit_probe import LogitProbe

SIGNAL = LogitProbe()

# (parameters, minimum score, maximum score, rules that must be in the evidence)
CASES = [
    ({}, 0.0, 0.0, []),
    ({"temperature": 0.7, "max_tokens": 512}, 0.0, 0.0, []),
    ({"logprobs": True, "top_logprobs": 20}, 0.75, 1.0, ["top_logprobs_20"]),
    ({"logprobs": True, "top_logprobs": 5}, 0.5, 0.75, ["top_logprobs_5"]),
    ({"logit_bias_size": 300}, 0.8, 1.0, ["logit_bias_100"]),
    (
        {"logit_bias_size": 12, "max_tokens": 1},
        0.9,
        1.0,
        ["logit_bias_10", "max_tokens_1", "one_token_logprobs"],
    ),
    ({"n": 4, "temperature": 0.0}, 0.4, 0.5, ["n_greedy"]),
    ({"logprobs": True, "top_logprobs": 2}, 0.05, 0.2, ["logprobs_on"]),
]


@pytest.mark.parametrize(("params", "low", "high", "rules"), CASES)
def test_table(call_of, params: dict, low: float, high: float, rules: list[str]) -> None:
    result = SIGNAL.analyze(call_of("q", **params))
    assert low <= result.score <= high
    fired = {m.split(":")[0] for m in result.matched}
    assert set(rules) <= fired
