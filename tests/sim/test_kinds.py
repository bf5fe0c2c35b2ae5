"""Prompt kinds decide answer lengths, the same way for every caller."""

from __future__ import annotations

import random
import statistics

import pytest

from distillguard.sim.kinds import BUDGET, PROMPT_KINDS, prompt_kind, reasoning_chars, reply_chars


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("How do I reverse a list in Python?", "code"),
        ("```js\nconst x = 1\n```\nwhy is this undefined", "code"),
        ("Natalia sold clips to 48 of her friends in April. How many clips did she sell altogether?", "math"),
        ("Solve for x: 3x + 5 = 20", "math"),
        ('Is the following sentence factually correct?\n"Paris is in Peru."\nOptions:\n- yes\n- no', "qa"),
        ("Does Evander Holyfield eat pork products?", "qa"),
        (
            "Write a short story about a lighthouse keeper who befriends a seal, in the style of a fable.",
            "chat",
        ),
        ("What is the difference between TCP and UDP?", "qa"),
    ],
)
def test_prompt_kind(text: str, kind: str) -> None:
    assert prompt_kind(text) == kind


@pytest.mark.parametrize("kind", PROMPT_KINDS)
def test_lengths_depend_on_the_kind_only(kind: str) -> None:
    # two callers with their own random streams see the same distribution for the same kind
    one = [reply_chars(kind, random.Random(f"a{i}")) for i in range(400)]
    two = [reply_chars(kind, random.Random(f"b{i}")) for i in range(400)]
    assert abs(statistics.median(one) / statistics.median(two) - 1) < 0.15
    assert all(reasoning_chars(kind, random.Random(i)) > 0 for i in range(50))
    assert kind in BUDGET


def test_kinds_differ_where_answers_do() -> None:
    rng = random.Random(1)
    median = {k: statistics.median(reply_chars(k, rng) for _ in range(300)) for k in PROMPT_KINDS}
    assert median["classification"] < median["qa"] < median["chat"] < median["code"]
