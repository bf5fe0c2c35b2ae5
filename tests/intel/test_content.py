"""Content signatures: one template with different fillings signs the same; other texts do not;
the key matters; short or fill-only prompts are never signed."""

from __future__ import annotations

import pytest

from distillguard.intel.content import hamming, simhash64, system_frame, template_frame
from distillguard.intel.records import SIMHASH_RADIUS

KEY, OTHER_KEY = b"k" * 32, b"o" * 32
JUDGE = (
    "Please act as an impartial judge.\n[The Start of Assistant A's Answer]\n{a}\n[The End of Assistant A's Answer]\n"
    "[The Start of Assistant B's Answer]\n{b}\n[The End of Assistant B's Answer]\nOutput [[A]] or [[B]]."
)
GENERATE = "List 50 diverse tasks that a programmer can assist a person working in {field} using {lang}.\nBe concise."


def sign(prompt: str, key: bytes = KEY) -> int | None:
    frame = template_frame(prompt)
    return simhash64(frame, key) if frame else None


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (JUDGE.format(a="Paris.", b="Lyon, I think."), JUDGE.format(a="42", b="A long answer " * 30), True),
        (GENERATE.format(field="Marketing", lang="SQL"), GENERATE.format(field="Film", lang="PHP"), True),
        (JUDGE.format(a="x", b="y"), GENERATE.format(field="Film", lang="PHP"), False),
        (
            GENERATE.format(field="Film", lang="PHP"),
            "Write a short poem about the sea at night, please, in English.",
            False,
        ),
    ],
)
def test_same_template_same_signature(a: str, b: str, same: bool) -> None:
    assert (hamming(sign(a), sign(b)) <= SIMHASH_RADIUS) is same


def test_the_key_changes_every_signature() -> None:
    prompt = JUDGE.format(a="x", b="y")
    assert hamming(sign(prompt), sign(prompt, OTHER_KEY)) > SIMHASH_RADIUS


@pytest.mark.parametrize("prompt", ["Translate this:", "hi", "", "Is it true?"])
def test_short_or_bare_prompts_are_not_signed(prompt: str) -> None:
    assert sign(prompt) is None


def test_system_frame_drops_numbers_and_names() -> None:
    a = system_frame("You are DataForge v2, answer in JSONL with 12 fields per line, always.")
    b = system_frame("You are DataForge v3, answer in JSONL with 20 fields per line, always.")
    assert a is not None and simhash64(a, KEY) == simhash64(b or "", KEY)
    assert system_frame("   ") is None
