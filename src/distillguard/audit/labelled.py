"""The project-written labelled answers that measure the audit classifiers (`labelled/answers.yaml`).

Groups (one prompt, one language, several answers) are split into TRAIN and TEST by a hash of the
prompt, so no prompt has answers on both sides; the lexicon was tuned on TRAIN only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from distillguard.audit.suite import LANGUAGES

REFUSAL_LABELS = ("none", "explicit", "deflection", "change_of_subject")
SENTIMENT_LABELS = ("positive", "negative", "neutral")
TEST_SHARE = 35  # percent of groups in TEST


class LabelledSetError(ValueError):
    """A labelled set that cannot be used; the message names the group and answer."""


@dataclass(frozen=True, slots=True)
class LabelledAnswer:
    id: str
    lang: str
    split: str
    prompt: str
    subject_terms: tuple[str, ...]
    text: str
    refusal: str
    hedged: bool
    sentiment: str
    whatabout: bool


def split_of(prompt: str) -> str:
    """TRAIN or TEST, from the prompt alone (every answer to a prompt lands on the same side).

    >>> split_of("What is the capital of Australia?") in ("train", "test")
    True
    """
    bucket = int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "test" if bucket < TEST_SHARE else "train"


def load_labelled(text: str | None = None) -> list[LabelledAnswer]:
    """The packaged labelled answers (or those in `text`), validated.

    >>> answers = load_labelled()
    >>> len(answers) >= 300 and {a.lang for a in answers} == {"en", "zh"}
    True
    """
    where = "labelled/answers.yaml"
    if text is None:
        text = (resources.files("distillguard.audit") / "labelled" / "answers.yaml").read_text(
            encoding="utf-8"
        )
    data: Any = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise LabelledSetError(f"{where}: expected `subjects` and a list of `groups`")
    subjects = data.get("subjects") or {}
    out: list[LabelledAnswer] = []
    for g, group in enumerate(data["groups"]):
        at = f"{where}: groups[{g}]"
        lang = group.get("lang")
        prompt = group.get("prompt")
        if lang not in LANGUAGES or not isinstance(prompt, str) or not prompt.strip():
            raise LabelledSetError(f"{at}: needs a prompt and a lang in {LANGUAGES}")
        subject = group.get("subject")
        if subject is not None and subject not in subjects:
            raise LabelledSetError(f"{at}.subject: {subject!r} is not in `subjects`")
        terms = tuple(subjects[subject].get(lang, [])) if subject is not None else ()
        answers = group.get("answers")
        if not isinstance(answers, list) or not answers:
            raise LabelledSetError(f"{at}.answers: expected a non-empty list")
        for a, answer in enumerate(answers):
            here = f"{at}.answers[{a}]"
            extra = set(answer) - {"text", "refusal", "hedged", "sentiment", "whatabout"}
            if extra:
                raise LabelledSetError(f"{here}: unknown field(s) {sorted(extra)}")
            refusal = answer.get("refusal", "none")
            sentiment = answer.get("sentiment", "neutral")
            hedged = answer.get("hedged", False)
            whatabout = answer.get("whatabout", False)
            if refusal not in REFUSAL_LABELS:
                raise LabelledSetError(f"{here}.refusal: {refusal!r} not in {REFUSAL_LABELS}")
            if sentiment not in SENTIMENT_LABELS:
                raise LabelledSetError(f"{here}.sentiment: {sentiment!r} not in {SENTIMENT_LABELS}")
            if not isinstance(hedged, bool) or not isinstance(whatabout, bool):
                raise LabelledSetError(f"{here}: hedged and whatabout are true or false")
            if not isinstance(answer.get("text"), str) or not answer["text"].strip():
                raise LabelledSetError(f"{here}.text: empty")
            out.append(
                LabelledAnswer(
                    id=f"{lang}-{g:03d}-{a}",
                    lang=lang,
                    split=split_of(prompt),
                    prompt=prompt,
                    subject_terms=terms,
                    text=answer["text"].strip(),
                    refusal=refusal,
                    hedged=hedged,
                    sentiment=sentiment,
                    whatabout=whatabout,
                )
            )
    return out
