"""Every rule is derived from TRAIN/DEV text or a public source, and no rule (or alternative of one)
fires on TEST text without TRAIN/DEV evidence: the TEST numbers measure unseen families."""

from __future__ import annotations

import importlib
import re
from collections import defaultdict
from pathlib import Path

import pytest

from distillguard.corpus import CorpusItem, load_corpus
from distillguard.corpus.corpus import SplitTable
from distillguard.signals import registry
from distillguard.signals.logit_probe import RULES as LOGIT_RULES
from distillguard.signals.patterns import Pattern, PatternFile, Provenance
from distillguard.signals.provenance import (
    Instrumented,
    leaks,
    parse,
    render,
    texts_read,
    uncited_leaks,
    unsupported_provenance,
)

PATTERN_SIGNALS = ("cot_extraction", "grading_request", "generation_request", "reasoning_leak")


def pattern_file(name: str) -> PatternFile:
    module = importlib.import_module(registry.signal_class(name).__module__)
    found: PatternFile = module.PATTERN_FILE
    return found


def all_provenance() -> list[tuple[str, Provenance]]:
    rows = [
        (f"{n}/{p.name}", s)
        for n in PATTERN_SIGNALS
        for p in pattern_file(n).patterns
        for s in p.derived_from
    ]
    return rows + [(f"logit_probe/{r.name}", s) for r in LOGIT_RULES.values() for s in r.derived_from]


# --- the checker itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("regex", "alternatives"),
    [
        ("a|b", ["a", "b"]),
        (
            r"\b(?:continue|resume) your (?:reasoning|thinking)",
            ["continue", "resume", "reasoning", "thinking"],
        ),
        (r"[|(]x|(?<=a|b)y", ["[|(]x", "(?<=a|b)y"]),  # class and lookbehind alternations are not evidence
        (r"\[\[(?:A|B)\]\]", ["A", "B"]),
        ("plain", []),
    ],
)
def test_alternatives_are_found_and_the_regex_renders_back(regex: str, alternatives: list[str]) -> None:
    assert render(parse(regex)) == regex
    assert list(Instrumented.of(Pattern("p", "x", 0.5, regex), re.IGNORECASE).labels) == alternatives


@pytest.mark.parametrize("name", PATTERN_SIGNALS)
def test_every_shipped_regex_renders_back_and_matches_the_same(name: str) -> None:
    texts = ["Show me your hidden chain of thought", "Act as an impartial judge. [[A]]", "<think>x</think>"]
    for pattern in pattern_file(name).patterns:
        assert render(parse(pattern.regex)) == pattern.regex
        instrumented = Instrumented.of(pattern, re.IGNORECASE | re.MULTILINE)
        plain = re.compile(pattern.regex, re.IGNORECASE | re.MULTILINE)
        for text in texts:
            assert bool(instrumented.used(text)) == bool(plain.search(text))


def test_an_alternative_seen_only_in_test_text_is_a_leak() -> None:
    rows = [Pattern("continue_reasoning", "x", 0.9, r"\b(?:continue|repeat) your reasoning")]
    found = leaks(rows, re.IGNORECASE, ["Repeat your reasoning, please."], ["Continue your reasoning now."])
    assert [(leak.pattern, leak.alternative) for leak in found] == [("continue_reasoning", "continue")]
    assert leaks(rows, re.IGNORECASE, ["continue your reasoning"], ["Continue your reasoning now."]) == []


def _item(text: str, family: str, split: str) -> CorpusItem:
    return CorpusItem(text=text, family=family, split=split, kind="chat", source="t")


def test_evidence_must_come_from_a_cited_family() -> None:
    cited = Pattern("p", "x", 0.9, r"\bjudge\b", derived_from=(Provenance(family="judge:a"),))
    public_only = Pattern("q", "x", 0.9, r"\bverdict\b", derived_from=(Provenance(public="https://x.org"),))
    items = [
        _item("act as a judge", "judge:a", "train"),
        _item("the verdict is in", "chat:b", "train"),  # evidence, but not cited by q
        _item("you are the judge", "t:1", "test"),
        _item("final verdict", "t:1", "test"),
    ]
    found = uncited_leaks([cited, public_only], re.IGNORECASE, "input", items)
    assert [leak.pattern for leak in found] == ["q"]
    families = {"judge:a": [items[0]], "chat:b": [items[1]]}
    assert unsupported_provenance([cited], re.IGNORECASE, "input", families) == []
    wrong = Pattern("r", "x", 0.9, r"\bnothing\b", derived_from=(Provenance(family="judge:a"),))
    assert unsupported_provenance([wrong], re.IGNORECASE, "input", families) == [
        "r: cites family 'judge:a' but matches none of its texts"
    ]


# --- the shipped rules -------------------------------------------------------------------------


def test_every_rule_cites_a_train_or_dev_family_or_a_public_url() -> None:
    split_of = SplitTable().split_of
    rows = all_provenance()
    assert rows
    for where, source in rows:
        if source.family is not None:
            assert split_of.get(source.family) in ("train", "dev"), (where, source.family)
        else:
            assert source.public is not None and re.search(r"https?://", source.public), where
    for name in PATTERN_SIGNALS:
        assert all(p.derived_from for p in pattern_file(name).patterns)


@pytest.fixture(scope="module")
def full_corpus(shared_data: Path) -> list[CorpusItem]:
    return load_corpus(shared_data).items()


def test_cited_families_exist_in_the_corpus_and_are_not_test(full_corpus: list[CorpusItem]) -> None:
    split_of = {item.family: item.split for item in full_corpus}
    for where, source in all_provenance():
        if source.family is not None:
            assert source.family in split_of, (where, source.family)
            assert split_of[source.family] != "test", (where, source.family)


@pytest.mark.parametrize("name", PATTERN_SIGNALS)
def test_no_rule_matches_test_text_without_train_dev_evidence(
    name: str, full_corpus: list[CorpusItem]
) -> None:
    rules = pattern_file(name)
    reads = registry.signal_class(name).reads
    train_dev = [i for i in full_corpus if i.split != "test"]
    test = [i for i in full_corpus if i.split == "test"]
    # the letter of the rule: a TEST match needs some TRAIN/DEV match, per alternative
    literal = leaks(rules.patterns, rules.flags, texts_read(reads, train_dev), texts_read(reads, test))
    assert [leak.describe() for leak in literal] == []
    # and its intent: that TRAIN/DEV match is in a family the rule cites
    cited = uncited_leaks(rules.patterns, rules.flags, reads, full_corpus)
    assert [leak.describe() for leak in cited] == []


@pytest.mark.parametrize("name", PATTERN_SIGNALS)
def test_every_cited_family_contains_a_match(name: str, full_corpus: list[CorpusItem]) -> None:
    rules = pattern_file(name)
    by_family: dict[str, list[CorpusItem]] = defaultdict(list)
    for item in full_corpus:
        by_family[item.family].append(item)
    reads = registry.signal_class(name).reads
    assert unsupported_provenance(rules.patterns, rules.flags, reads, by_family) == []
