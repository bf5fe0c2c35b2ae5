"""Account-level heuristics as data: pySigma-style rules over an account's feature vector.

A rule is a YAML record (id, title, score, conditions, known false positives, references). Rules
are validated when loaded, in two phases like pySigma's validators: each rule on its own, then
the set (unique ids, only known features). Errors name the file and the field.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from distillguard.events.model import Reason

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}
_ARRAY_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    ">=": np.greater_equal,
    ">": np.greater,
    "<=": np.less_equal,
    "<": np.less,
    "==": np.equal,
}
_CONDITION = re.compile(r"^\s*(>=|<=|==|>|<)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*$")


class RuleError(ValueError):
    """A rule file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Condition:
    feature: str
    op: str
    value: float

    def holds(self, features: Mapping[str, float]) -> bool:
        return _OPS[self.op](features.get(self.feature, 0.0), self.value)

    def holds_array(self, column: np.ndarray) -> np.ndarray:
        compare: Callable[[np.ndarray, float], np.ndarray] = _ARRAY_OPS[self.op]
        return compare(column, self.value)

    def describe(self, features: Mapping[str, float]) -> str:
        return f"{self.feature}={features.get(self.feature, 0.0):.3g} ({self.op} {self.value:g})"


@dataclass(frozen=True, slots=True)
class AccountRule:
    id: str
    title: str
    score: float
    conditions: tuple[Condition, ...]
    description: str = ""
    tactic: str = ""
    false_positives: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    tags: tuple[str, ...] = field(default=())

    def evaluate(self, features: Mapping[str, float]) -> Reason | None:
        if not all(condition.holds(features) for condition in self.conditions):
            return None
        matched = ", ".join(condition.describe(features) for condition in self.conditions)
        return Reason(signal=f"rule:{self.id}", score=self.score, detail=f"{self.title}: {matched}")


def _require(record: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    if key not in record:
        raise RuleError(f"{where}: missing field '{key}'")
    value = record[key]
    if not isinstance(value, kinds):
        raise RuleError(f"{where}: field '{key}' must be {kinds}, got {type(value).__name__}")
    return value


def _parse_rule(record: Any, where: str) -> AccountRule:
    if not isinstance(record, dict):
        raise RuleError(f"{where}: a rule must be a mapping")
    rule_id = _require(record, "id", str, where)
    where = f"{where} (rule {rule_id})"
    score = _require(record, "score", (int, float), where)
    if not 0.0 <= float(score) <= 1.0:
        raise RuleError(f"{where}: field 'score' must be in [0, 1], got {score}")
    when = _require(record, "when", dict, where)
    if not when:
        raise RuleError(f"{where}: field 'when' must hold at least one condition")
    conditions = []
    for feature, text in when.items():
        match = _CONDITION.match(str(text))
        if match is None:
            raise RuleError(f"{where}: field 'when.{feature}' must look like '>= 0.5', got {text!r}")
        conditions.append(Condition(str(feature), match.group(1), float(match.group(2))))
    return AccountRule(
        id=rule_id,
        title=_require(record, "title", str, where),
        score=float(score),
        conditions=tuple(conditions),
        description=str(record.get("description", "")),
        tactic=str(record.get("tactic", "")),
        false_positives=tuple(record.get("false_positives", ()) or ()),
        references=tuple(record.get("references", ()) or ()),
        tags=tuple(record.get("tags", ()) or ()),
    )


def load_rules(path: Path | None = None, *, known_features: Iterable[str] | None = None) -> list[AccountRule]:
    """Rules from a YAML file (default: the shipped `account_rules.yaml`)."""
    if path is None:
        source = resources.files("distillguard.scoring").joinpath("account_rules.yaml")
        text, name = source.read_text(encoding="utf-8"), "account_rules.yaml"
    else:
        text, name = path.read_text(encoding="utf-8"), str(path)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(f"{name}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise RuleError(f"{name}: expected a mapping with a list under 'rules'")
    rules = [_parse_rule(record, f"{name}: rules[{i}]") for i, record in enumerate(document["rules"])]
    # second phase: the rule set as a whole
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise RuleError(f"{name}: duplicate rule id {rule.id}")
        seen.add(rule.id)
    if known_features is not None:
        known = set(known_features)
        for rule in rules:
            for condition in rule.conditions:
                if condition.feature not in known:
                    raise RuleError(
                        f"{name}: rule {rule.id}: unknown feature '{condition.feature}' in 'when'"
                    )
    return rules


def evaluate_rules(rules: Iterable[AccountRule], features: Mapping[str, float]) -> list[Reason]:
    """Every rule that fires on these features, strongest first."""
    fired = [reason for rule in rules if (reason := rule.evaluate(features)) is not None]
    return sorted(fired, key=lambda reason: -reason.score)
