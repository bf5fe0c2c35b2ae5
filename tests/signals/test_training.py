from __future__ import annotations

import numpy as np
import pytest

from distillguard.corpus import CorpusItem
from distillguard.signals.training import (
    ANSWER_TARGET,
    answer_items,
    dev_threshold,
    family_weights,
    populations,
    target,
    threshold_at_fpr,
    tpr_at_threshold,
)

NEGATIVES = np.linspace(0.0, 0.99, 100)  # 100 negatives: 0.00, 0.01, ..., 0.99


@pytest.mark.parametrize(("fpr", "above"), [(0.01, 1), (0.05, 5), (0.0, 0)])
def test_threshold_lets_through_at_most_the_allowed_negatives(fpr: float, above: int) -> None:
    threshold = threshold_at_fpr(NEGATIVES, fpr)
    assert int(np.sum(threshold <= NEGATIVES)) == above


@pytest.mark.parametrize(("already", "above"), [(0, 5), (3, 2), (5, 0), (9, 0)])
def test_negatives_the_rules_fire_on_spend_the_budget(already: int, above: int) -> None:
    # 100 negatives in all: `already` fire through the rules, the model may add 5 - already
    scores = NEGATIVES[: 100 - already]
    threshold = threshold_at_fpr(scores, 0.05, already)
    assert int(np.sum(scores >= threshold)) == above


def test_tied_negatives_are_not_split() -> None:
    negatives = np.array([0.0] * 95 + [0.9] * 5)
    threshold = threshold_at_fpr(negatives, 0.01)
    assert np.sum(negatives >= threshold) == 0  # the five tied at 0.9 exceed 1%: all stay below
    assert tpr_at_threshold(np.array([0.95, 0.9, 0.5]), threshold) == pytest.approx(1 / 3)


def test_no_negatives_is_an_error() -> None:
    with pytest.raises(ValueError, match="no negatives"):
        threshold_at_fpr(np.array([]))


def _item(family: str, kind: str, **fields: str) -> CorpusItem:
    return CorpusItem(
        text=fields.get("text", "t"),
        family=family,
        kind=kind,
        **{k: v for k, v in fields.items() if k != "text"},
    )


def test_small_benign_populations_are_pooled_by_kind_and_bound_the_threshold() -> None:
    # 40 hard negatives in 4 small groups (each < 20 items: not a population alone), 1000 chat turns
    items = [_item(f"hardneg:g{k % 4}", "hard_negative") for k in range(40)]
    items += [_item("chat:big", "chat") for _ in range(1000)]
    negative = np.ones(len(items), dtype=bool)
    assert set(populations(items, negative)) == {"kind:hard_negative", "chat:big"}
    scores = np.zeros(len(items))
    scores[:4] = 0.9  # 4 of 40 hard negatives (10%) score high: 0.4% of all negatives
    scores[:2] = 0.95
    threshold = dev_threshold(scores, items, negative)
    # overall 1% would allow all four; the pooled population allows 5% (2 of 40): the two at 0.95
    assert 0.9 < threshold <= 0.95
    rule_fires = np.zeros(len(items), dtype=bool)
    rule_fires[2:4] = True  # the rules already fire on two hard negatives: the model may add none
    assert dev_threshold(scores, items, negative, rule_fires) > 0.95


def test_hard_negative_families_can_weigh_more() -> None:
    items = [_item("chat:a", "chat") for _ in range(4)] + [
        _item("hardneg:x", "hard_negative") for _ in range(4)
    ]
    labels = np.zeros(len(items), dtype=np.int8)
    plain = family_weights(items, labels)
    heavy = family_weights(items, labels, hard_negative=4.0)
    assert plain[0] == pytest.approx(plain[-1])
    assert heavy[-1] == pytest.approx(4 * heavy[0])
    assert heavy.sum() == pytest.approx(len(items))  # each class still sums to its count


def test_answer_items_are_reasoning_or_ordinary_answers_long_enough_to_read() -> None:
    long = "The train covers 120 km in 2 hours, so its speed is 120 / 2 = 60 km per hour. " * 2
    items = [
        _item("bare:flan_aqua", "bare_question", source="flan_aqua", answer=long),
        _item("bare:amc23", "bare_question", source="amc23", answer="27.0"),  # a number is not reasoning
        _item("hardneg:ordinary_answers_facts", "hard_negative", source="hard_negatives", answer=long[::-1]),
        _item("chat:x", "chat", source="oasst_en", answer=long),  # unlabelled source: left out
    ]
    judge = _item(
        "judge:alpaca_eval",
        "grading",
        text='[{"output": """' + long + '"""}, {"output": """' + long + '"""}]',
    )
    kept = answer_items([*items, judge])
    # the two identical outputs embedded in the judge request count once, as an ordinary answer
    assert [i.family for i in kept] == [
        "bare:flan_aqua",
        "hardneg:ordinary_answers_facts",
        "judge:alpaca_eval",
    ]
    goal = target(ANSWER_TARGET)
    assert [goal.positive(i) for i in kept] == [True, False, False]
