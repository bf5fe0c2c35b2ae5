from __future__ import annotations

import pytest

from distillguard.signals.reasoning_leak import ReasoningLeak

SIGNAL = ReasoningLeak()
TRACE = (
    "Okay, so I need to find the sum. Let me check the first term again. Hmm, that gives 12. "
    "Wait, I think I made a mistake. Alternatively, I could add them pairwise. " * 3
)

# (response_text, reasoning_text, expected minimum score, aspect that must fire or None)
CASES = [
    ("The answer is 42.", "First I considered the question...", 1.0, "reasoning_field"),
    ("<think>The user wants a sum. 2+2=4.</think>The answer is 4.", "", 0.95, "format"),
    ("<|begin_of_thought|>step one<|end_of_thought|> 4", "", 0.9, "format"),
    (TRACE, "", 0.5, "trace"),
    ("Paris is the capital of France.", "", 0.0, None),
]


@pytest.mark.parametrize(("response", "reasoning", "minimum", "aspect"), CASES)
def test_table(call_of, response: str, reasoning: str, minimum: float, aspect: str | None) -> None:
    result = SIGNAL.analyze(call_of("q", response_text=response, reasoning_text=reasoning))
    assert result is not None
    if aspect is None:
        assert result.score == 0.0 and result.matched == []
    else:
        assert result.parts[aspect] >= minimum and result.score >= minimum


def test_abstains_without_a_response(call_of) -> None:
    assert SIGNAL.analyze(call_of("q")) is None


def test_short_answer_with_one_wait_is_discounted(call_of) -> None:
    result = SIGNAL.analyze(call_of("q", response_text="Wait, did you mean Paris, Texas? Let me check."))
    assert result is not None and result.score < 0.5
    assert result.adjustments
