from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.signals import reasoning_leak
from distillguard.signals.reasoning_leak import ReasoningLeak, answer_text, echo_share

SIGNAL = ReasoningLeak()
RULES = ReasoningLeak(mode="rules")
# the openers a simulator writes into its traces; no real TRAIN/DEV trace uses them
PLANTED = (
    "Okay, so I need to find the sum. Let me check the first term again. Hmm, that gives 12. "
    "Wait, I think I made a mistake. Alternatively, I could add them pairwise. " * 3
)
WORKED = (
    "Natalia sold 48 clips in April. In May she sold half as many, which is 48 / 2 = 24 clips. "
    "Altogether she sold 48 + 24 = 72 clips in April and May. Each clip costs $2, so the clips "
    "she sold in May earned her 24 * 2 = 48 dollars, and the clips from both months 72 * 2 = 144."
)
ORDINARY = "Paris is the capital of France. It is also the country's largest city."
LONG_ORDINARY = (
    "Paris is the capital of France and its largest city, with about two million people in the city "
    "proper. It is known for the Eiffel Tower, the Louvre and its cafés, and it sits on the Seine."
)

# (response_text, reasoning_text, expected minimum score, aspect that must fire or None)
CASES = [
    ("The answer is 42.", "First I considered the question...", 1.0, "reasoning_field"),
    ("<think>The user wants a sum. 2+2=4.</think>The answer is 4.", "", 0.95, "format"),
    ("<|begin_of_thought|>step one<|end_of_thought|> 4", "", 0.9, "format"),
    (WORKED, "", 0.5, "trace"),
]


@pytest.mark.parametrize(("response", "reasoning", "minimum", "aspect"), CASES)
def test_table(call_of, response: str, reasoning: str, minimum: float, aspect: str) -> None:
    result = SIGNAL.analyze(call_of("q", response_text=response, reasoning_text=reasoning))
    assert result is not None
    assert result.parts[aspect] >= minimum and result.score >= minimum


@pytest.mark.parametrize(
    "response", [ORDINARY, LONG_ORDINARY, "Sure! Here's a haiku:\nSoft rain on the roof"]
)
def test_ordinary_answers_are_not_reasoning(call_of, response: str) -> None:
    result = SIGNAL.analyze(call_of("q", response_text=response))
    assert result is not None and result.score < 0.5, result


def test_short_answers_are_not_read_by_the_trace_classifier(call_of) -> None:
    result = SIGNAL.analyze(call_of("q", response_text=ORDINARY))
    assert result is not None and "model" not in result.parts


def test_planted_openers_are_not_rules(call_of) -> None:
    result = RULES.analyze(call_of("q", response_text=PLANTED))
    assert result is not None and result.score == 0.0 and result.matched == []


def test_cues_of_real_traces_are_weak_evidence(call_of) -> None:
    result = RULES.analyze(call_of("q", response_text="We need to find x. Let's verify the second case."))
    assert result is not None and 0.0 < result.parts["trace"] < 0.5
    assert any(m.startswith("trace/we_need_to") for m in result.matched)


def test_an_answer_copied_from_the_reasoning_is_an_echo(call_of) -> None:
    reasoning = "First, list the facts. " + WORKED * 2 + " So the total is 72."
    result = SIGNAL.analyze(call_of("q", response_text=WORKED * 2, reasoning_text=reasoning))
    assert result is not None and result.parts["echo"] >= 0.9
    assert any(m.startswith("echo:") for m in result.matched)
    short = SIGNAL.analyze(call_of("q", response_text="72 clips.", reasoning_text=reasoning))
    assert short is not None and short.parts["echo"] == 0.0  # a short answer restates by design


@pytest.mark.parametrize(
    ("answer", "reasoning", "share"),
    [("", "x", 0.0), (WORKED, WORKED, 1.0), (WORKED, ORDINARY * 5, 0.0), (ORDINARY, ORDINARY, 0.0)],
)
def test_echo_share(answer: str, reasoning: str, share: float) -> None:
    assert echo_share(answer, reasoning) == pytest.approx(share)


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        ("Half of 48 is 48/2 = <<48/2=24>>24.\n#### 24", "Half of 48 is 48/2 = 24."),
        ("Sex equals reproduction. So the answer is (D).", "Sex equals reproduction."),
        ("<think>\nconsider x\n</think>\n\nx = 2", "consider x\n \n\nx = 2"),
    ],
)
def test_answer_text_drops_storage_formats(stored: str, read: str) -> None:
    assert answer_text(stored) == read


def test_abstains_without_a_response(call_of) -> None:
    assert SIGNAL.analyze(call_of("q")) is None


def test_unknown_mode_fails_loudly() -> None:
    with pytest.raises(ValueError, match="known: rules\\+model, rules"):
        ReasoningLeak(mode="keywords")


# characters where a cheaper reading of words could part from `re`'s: non-ASCII word characters
# (é, 思, ², the Kelvin sign that lower-cases to "k", İ that lower-cases to two characters),
# non-ASCII separators (…, ×, –, ’), "_", digits, ASCII whitespace and punctuation, a lone surrogate
_TRICKY = "aZ09_ \t\n.,'<>#éÉ思²\u212a\u0130…×–’\ud800"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_TRICKY, max_size=60))
def test_words_are_the_words_re_finds(text: str) -> None:
    expected = [w.encode("utf-8", "surrogatepass") for w in re.findall(r"\w+", text.lower())]
    assert reasoning_leak._words(text) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["the", "sum", "is", "72", "Clips", "café", "×", "…", "x_1"]), max_size=80),
    st.data(),
)
def test_echo_share_equals_the_set_definition(words: list[str], data: st.DataObject) -> None:
    answer = " ".join(words)
    reasoning = " ".join(data.draw(st.permutations(words))) + " " + answer[: len(answer) // 2]

    def shingles(text: str) -> set[tuple[str, ...]]:
        found = re.findall(r"\w+", text.lower())
        return {tuple(found[i : i + 4]) for i in range(len(found) - 3)}

    mine = shingles(answer)
    expected = (
        len(mine & shingles(reasoning)) / len(mine) if len(mine) >= reasoning_leak.ECHO_MIN_WORDS else 0.0
    )
    assert echo_share(answer, reasoning) == expected


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(["So the answer is ", "(D)", "x", ".", " ", "\n", "\t", "\u2003", "So", "answer"]),
        max_size=14,
    )
)
def test_the_flan_suffix_is_dropped_as_the_regex_drops_it(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert reasoning_leak._drop_flan_suffix(text) == reasoning_leak._FLAN_SUFFIX.sub("", text)
