"""Account rules: the shipped set loads against the real feature names; bad files name the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distillguard.features.catalog import FEATURES
from distillguard.scoring.rules import RuleError, load_rules


def test_shipped_rules_load_against_the_features_the_scan_computes() -> None:
    rules = load_rules(known_features=FEATURES)
    assert [r.id for r in rules] == sorted(r.id for r in rules)
    assert all(0.0 <= r.score <= 1.0 and r.conditions for r in rules)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("rules: [{id: X, title: t, score: 0.5}]", "missing field 'when'"),
        ("rules: [{id: X, title: t, score: 1.5, when: {n_calls: '>= 1'}}]", "'score' must be in [0, 1]"),
        ("rules: [{id: X, title: t, score: 0.5, when: {n_calls: 'lots'}}]", "'when.n_calls' must look like"),
        ("rules: [{id: X, title: t, score: 0.5, when: {}}]", "at least one condition"),
        ("rules: [{id: X, title: t, score: 0.5, when: {nope: '>= 1'}}]", "unknown feature 'nope'"),
        (
            "rules: [{id: X, title: t, score: 0.5, when: {n_calls: '>= 1'}}, "
            "{id: X, title: u, score: 0.5, when: {n_calls: '>= 2'}}]",
            "duplicate rule id X",
        ),
        ("rules: {", "not valid YAML"),
        ("{}", "a list under 'rules'"),
    ],
)
def test_bad_rule_files_are_refused_naming_file_and_field(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(body)
    with pytest.raises(RuleError) as error:
        load_rules(path, known_features=["n_calls"])
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_rule_fires_only_when_every_condition_holds_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - {id: R1, title: Many reveals, score: 0.9, when: {reveal: '>= 0.25', n_calls: '>= 8'}}\n"
    )
    (rule,) = load_rules(path, known_features=["reveal", "n_calls"])
    assert rule.evaluate({"reveal": 0.5, "n_calls": 7}) is None
    reason = rule.evaluate({"reveal": 0.5, "n_calls": 8})
    assert reason is not None and reason.signal == "rule:R1" and reason.score == 0.9
    assert "reveal=0.5 (>= 0.25)" in reason.detail and "n_calls=8" in reason.detail
    # the vectorised form used on checkpoint matrices agrees with the per-row form
    column = np.array([0.1, 0.25, 0.3])
    assert rule.conditions[0].holds_array(column).tolist() == [False, True, True]
