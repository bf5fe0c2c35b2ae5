from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.signals.logit_probe import RULES, LogitProbe, load_rules

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


def test_supersedes_keeps_only_the_stronger_rule(call_of) -> None:
    fired = {
        m.split(":")[0] for m in SIGNAL.analyze(call_of("q", top_logprobs=20, logit_bias_size=150)).matched
    }
    assert {"top_logprobs_20", "logit_bias_100"} <= fired
    assert not {"top_logprobs_5", "logit_bias_10"} & fired


def test_every_rule_says_where_it_came_from() -> None:
    assert RULES and all(rule.derived_from for rule in RULES.values())


RULE = """signal: logit_probe
rules:
  - name: r
    weight: 0.5
    explanation: x
    all: {all}
    derived_from: [{{public: 'https://arxiv.org/abs/2403.06634'}}]
"""


@pytest.mark.parametrize(
    ("clauses", "message"),
    [
        ("[{param: n, ge: 2, le: 4}]", r"field 'rules\[0\]\.all\[0\]': give exactly one comparison"),
        ("[{param: seed, ge: 2}]", r"field 'rules\[0\]\.all\[0\]\.param': Invalid enum value 'seed'"),
        ("[]", r"field 'rules\[0\]\.all': a rule needs at least one clause"),
        ("[{param: n, ge: many}]", r"rules\[0\]\.all\[0\]\.ge': Expected `float \| null`, got `str`"),
    ],
)
def test_bad_rules_name_the_file_and_the_field(tmp_path: Path, clauses: str, message: str) -> None:
    path = tmp_path / "logit_probe.yaml"
    path.write_text(RULE.format(all=clauses), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_rules(path)
