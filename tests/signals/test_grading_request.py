from __future__ import annotations

import pytest

from distillguard.signals.grading_request import GradingRequest

RULES = GradingRequest(mode="rules")

CASES = [
    (
        "Please act as an impartial judge and evaluate the quality of the responses provided by two AI "
        'assistants. Output your final verdict: "[[A]]" if assistant A is better, "[[B]]" if B is better.',
        "judge_role",
        0.9,
        "impartial_judge",
    ),
    ("Rate the response on a scale of 1 to 10. Output only the score.", "rubric", 0.7, "score_only"),
    (
        "Here are 4 completions. Rank the following responses from best to worst.",
        "ranking",
        0.8,
        "rank_responses",
    ),
    (
        "Which response is better for the user? Response A: ... Response B: ...",
        "pairwise",
        0.8,
        "which_is_better",
    ),
    ("Output your final verdict: [[A]] or [[B]].", "verdict_format", 0.9, "verdict_brackets"),
    ("Rate outputs 1 to 5 and give a rationale.", "rubric", 0.6, "rubric_scale"),
    ("请你以公正的评判者的身份，评估一个AI助手对于用户提问的回答的质量。", "judge_role", 0.7, "grading.zh"),
    ("What's a good recipe for banana bread?", None, 0.0, None),
    ("Summarize this article about climate change in three sentences.", None, 0.0, None),
]


@pytest.mark.parametrize(("prompt", "aspect", "minimum", "row"), CASES)
def test_rule_table(call_of, prompt: str, aspect: str | None, minimum: float, row: str | None) -> None:
    result = RULES.analyze(call_of(prompt))
    assert result is not None
    if aspect is None:
        assert result.score == 0.0 and result.matched == []
        return
    assert result.parts[aspect] >= minimum
    assert any(m.startswith(f"{aspect}/{row}:") for m in result.matched), result.matched


# Verdict formats and labels only the TEST judge templates use were removed (no TRAIN/DEV source):
# they must not fire on their own any more.
@pytest.mark.parametrize("prompt", ["Verdict: A>>B", "[[C]]", "Rating: [[5]]", "[[rating]]"])
def test_test_only_verdict_formats_are_not_rules(call_of, prompt: str) -> None:
    result = RULES.analyze(call_of(prompt))
    assert result is not None and result.parts["verdict_format"] == 0.0, result.matched
