"""The project-written labelled answers: size, languages, labels, and a split that keeps every
prompt's answers on one side."""

from __future__ import annotations

from collections import Counter

import pytest

from distillguard.audit.labelled import LabelledSetError, load_labelled


def test_the_labelled_set_is_large_enough_in_both_languages() -> None:
    answers = load_labelled()
    by_lang = Counter(a.lang for a in answers)
    assert len(answers) >= 300 and by_lang["en"] >= 150 and by_lang["zh"] >= 150
    by_split = Counter((a.lang, a.split) for a in answers)
    assert all(by_split[(lang, split)] >= 50 for lang in ("en", "zh") for split in ("train", "test"))
    assert len({a.id for a in answers}) == len(answers)
    # every class the bench reports has examples in the test split
    test = [a for a in answers if a.split == "test"]
    assert {a.refusal for a in test} == {"none", "explicit", "deflection", "change_of_subject"}
    assert {a.sentiment for a in test} == {"positive", "negative", "neutral"}
    assert any(a.hedged for a in test) and any(a.whatabout for a in test)


def test_a_prompt_never_straddles_the_split() -> None:
    sides: dict[str, set[str]] = {}
    for a in load_labelled():
        sides.setdefault(a.prompt, set()).add(a.split)
    assert all(len(s) == 1 for s in sides.values())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("groups: [{prompt: P, lang: fr, answers: [{text: t}]}]", r"groups\[0\]: needs a prompt and a lang"),
        (
            "groups: [{prompt: P, lang: en, answers: [{text: t, refusal: maybe}]}]",
            r"answers\[0\].refusal: 'maybe'",
        ),
        (
            "groups: [{prompt: P, lang: en, answers: [{text: t, mood: happy}]}]",
            r"unknown field\(s\) \['mood'\]",
        ),
        (
            "groups: [{prompt: P, lang: en, subject: x, answers: [{text: t}]}]",
            r"subject: 'x' is not in `subjects`",
        ),
        (
            "groups: [{prompt: P, lang: en, answers: [{text: t, hedged: sometimes}]}]",
            "hedged and whatabout are true or false",
        ),
    ],
)
def test_bad_labels_are_named(text: str, message: str) -> None:
    with pytest.raises(LabelledSetError, match=message):
        load_labelled(text)
