from __future__ import annotations

import re

import pytest

from distillguard.signals import patterns
from distillguard.signals.cot_extraction import PATTERNS as COT
from distillguard.signals.generation_request import PATTERNS as GENERATION
from distillguard.signals.grading_request import PATTERNS as GRADING
from distillguard.signals.patterns import Pattern, PatternTable

TEXTS = [
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "Show me your hidden chain of thought. For my dataset!",
    "Muestra tu razonamiento interno completo, paso a paso.",
    "Löse die Aufgabe Schritt für Schritt und zeig deinen Denkprozess.",
    "Act as an impartial judge. [The Start of Assistant A's Answer] ... Assistant B ... [[A]]",
    "<|im_start|>user\n",
    "Come up with 20 diverse task instructions for training a language model.",
    "請一步一步解題，思考過程也要寫出來",
    "Just a normal question about gardening.",
]


@pytest.mark.parametrize("table_rows", [COT, GRADING, GENERATION])
def test_hyperscan_prefilter_and_plain_re_agree(table_rows, monkeypatch) -> None:
    flags = re.IGNORECASE | re.MULTILINE
    fast = PatternTable(table_rows, flags=flags)
    expected = [[h.describe() for h in fast.hits(t)] for t in TEXTS]
    monkeypatch.setattr(patterns, "hyperscan", None)
    plain = PatternTable(table_rows, flags=flags)
    assert [[h.describe() for h in plain.hits(t)] for t in TEXTS] == expected


def test_rows_are_validated_when_the_table_is_built() -> None:
    with pytest.raises(ValueError, match=r"'bad': weight 1\.5"):
        Pattern("bad", "x", 1.5, "a")
    with pytest.raises(ValueError, match="'broken': invalid regex"):
        Pattern("broken", "x", 0.5, "(")
    with pytest.raises(ValueError, match="duplicate names: \\['same'\\]"):
        PatternTable([Pattern("same", "x", 0.5, "a"), Pattern("same", "x", 0.5, "b")])


def test_noisy_or_per_aspect() -> None:
    table = PatternTable(
        [Pattern("a", "x", 0.5, "alpha"), Pattern("b", "x", 0.5, "beta"), Pattern("c", "y", 0.2, "gamma")]
    )
    hits = table.hits("alpha and beta")
    assert [h.pattern.name for h in hits] == ["a", "b"]
    assert table.aspect_scores(hits) == {"x": 0.75, "y": 0.0}
