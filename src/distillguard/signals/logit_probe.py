"""logit_probe: request parameters of logprob / logit_bias extraction (an input signal).

Reading a model's distribution token by token (top logprobs, biasing many tokens to ±100,
one-token completions) recovers far more than the text answer; ordinary applications rarely
need more than a handful of alternatives. The rules are data (logit_probe.yaml), each with the
public work it was derived from.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from distillguard.events.call_view import CallView
from distillguard.signals.base import Signal, SignalResult
from distillguard.signals.patterns import (
    Provenance,
    ProvenanceSpec,
    decode_error,
    read_provenance,
    split_of_families,
)

RULES_FILE = Path(__file__).with_name("logit_probe.yaml")
# the request parameters a clause may read (CallView fields)
PARAMETERS = ("logprobs", "top_logprobs", "logit_bias_size", "max_tokens", "n", "temperature")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ge": operator.ge,
    "gt": operator.gt,
    "le": operator.le,
    "lt": operator.lt,
}


class ClauseSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    param: Literal["logprobs", "top_logprobs", "logit_bias_size", "max_tokens", "n", "temperature"]
    eq: float | bool | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    weight: float
    explanation: str
    all: list[ClauseSpec]
    any: list[ClauseSpec] = []
    supersedes: list[str] = []
    derived_from: list[ProvenanceSpec]


class RulesFileSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    signal: str
    rules: list[RuleSpec]


@dataclass(frozen=True, slots=True)
class Clause:
    param: str
    op: str
    value: float | bool

    def holds(self, call: CallView) -> bool:
        actual = getattr(call, self.param)
        if actual is None:
            return False  # a parameter the request did not set satisfies nothing
        return _OPERATORS[self.op](actual, self.value)


@dataclass(frozen=True, slots=True)
class ParameterRule:
    name: str
    weight: float
    explanation: str
    all: tuple[Clause, ...]
    any: tuple[Clause, ...] = ()
    supersedes: tuple[str, ...] = ()
    derived_from: tuple[Provenance, ...] = ()

    def fires(self, call: CallView) -> bool:
        return all(c.holds(call) for c in self.all) and (not self.any or any(c.holds(call) for c in self.any))


def load_rules(path: Path = RULES_FILE, *, check_splits: bool = True) -> dict[str, ParameterRule]:
    """The rules of `path` by name, validated; every error names the file and the field."""
    try:
        spec = msgspec.yaml.decode(path.read_bytes(), type=RulesFileSpec)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: rules file not found") from None
    except msgspec.MsgspecError as error:
        raise decode_error(path, error) from None
    split_of = split_of_families() if check_splits else None
    rules: dict[str, ParameterRule] = {}
    for index, row in enumerate(spec.rules):
        where = f"{path}: field 'rules[{index}]"
        if row.name in rules:
            raise ValueError(f"{where}.name': {row.name!r} is defined twice")
        if not 0.0 < row.weight <= 1.0:
            raise ValueError(f"{where}.weight': {row.weight} outside (0, 1]")
        if not row.all:
            raise ValueError(f"{where}.all': a rule needs at least one clause")
        rules[row.name] = ParameterRule(
            name=row.name,
            weight=row.weight,
            explanation=row.explanation,
            all=tuple(_clause(c, f"{where}.all[{k}]") for k, c in enumerate(row.all)),
            any=tuple(_clause(c, f"{where}.any[{k}]") for k, c in enumerate(row.any)),
            supersedes=tuple(row.supersedes),
            derived_from=read_provenance(row.derived_from, f"{where}.derived_from", split_of),
        )
    for index, rule in enumerate(rules.values()):
        unknown = [name for name in rule.supersedes if name not in rules]
        if unknown:
            raise ValueError(f"{path}: field 'rules[{index}].supersedes': unknown rule(s) {unknown}")
    return rules


def _clause(spec: ClauseSpec, where: str) -> Clause:
    given = [(op, getattr(spec, op)) for op in _OPERATORS if getattr(spec, op) is not None]
    if len(given) != 1:
        raise ValueError(f"{where}': give exactly one comparison of {', '.join(_OPERATORS)}")
    op, value = given[0]
    return Clause(spec.param, op, value)


RULES: dict[str, ParameterRule] = load_rules()


def _fired(call: CallView, rules: dict[str, ParameterRule] = RULES) -> list[str]:
    fired = [rule for rule in rules.values() if rule.fires(call)]
    dropped = {name for rule in fired for name in rule.supersedes}
    return [rule.name for rule in fired if rule.name not in dropped]


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
