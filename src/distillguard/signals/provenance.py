"""Checks that the rule tables stay derived from TRAIN/DEV text: no pattern, and no alternative of a
pattern, may fire on TEST text unless it also fires on some TRAIN or DEV text.

A pattern is usually an alternation (`continue|resume|finish`), and one alternative copied from a
TEST template hides behind the others: so every alternative of every alternation is wrapped in a
named group, and the groups that took part in a match say which alternatives a text used. An
alternative used on TEST text and never on TRAIN/DEV text was written from the TEST family (or
fires there by luck alone): either way the TEST number would no longer measure unseen families.

Also: each `derived_from` family must be TRAIN or DEV and the pattern must match at least one of
its texts, so a provenance entry is something a reader can check, not a label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from distillguard.signals.patterns import Pattern, PatternTable, head_and_tail

if TYPE_CHECKING:
    from distillguard.corpus import CorpusItem

LOOKAROUND = ("(?=", "(?!", "(?<=", "(?<!")


@dataclass
class Group:
    """A parenthesised group: its opening (`(`, `(?:`, `(?P<x>`, ...) and its alternatives."""

    opening: str
    alternatives: list[list[str | Group]] = field(default_factory=list)


def parse(regex: str) -> list[list[str | Group]]:
    """The top-level alternatives of `regex`, each a list of literal chunks and groups.

    >>> render(parse(r"a(?:b|c)[|)]\\|d|e"))
    'a(?:b|c)[|)]\\\\|d|e'
    """
    alternatives, end = _parse(regex, 0)
    if end != len(regex):
        raise ValueError(f"unbalanced ')' at {end} in {regex!r}")
    return alternatives


def _parse(regex: str, i: int) -> tuple[list[list[str | Group]], int]:
    alternatives: list[list[str | Group]] = [[]]
    chunk: list[str] = []

    def flush() -> None:
        if chunk:
            alternatives[-1].append("".join(chunk))
            chunk.clear()

    while i < len(regex):
        c = regex[i]
        if c == "\\":
            chunk.append(regex[i : i + 2])
            i += 2
        elif c == "[":
            j = i + 1
            if j < len(regex) and regex[j] == "^":
                j += 1
            if j < len(regex) and regex[j] == "]":
                j += 1  # a leading ']' is a literal
            while j < len(regex) and regex[j] != "]":
                j += 2 if regex[j] == "\\" else 1
            chunk.append(regex[i : j + 1])
            i = j + 1
        elif c == "(":
            flush()
            if regex.startswith("(?#", i):  # comment
                j = regex.index(")", i)
                alternatives[-1].append(regex[i : j + 1])
                i = j + 1
                continue
            opening = _opening(regex, i)
            if opening.endswith(")"):  # inline flags such as (?i)
                alternatives[-1].append(opening)
                i += len(opening)
                continue
            inner, j = _parse(regex, i + len(opening))
            if j >= len(regex) or regex[j] != ")":
                raise ValueError(f"unbalanced '(' at {i} in {regex!r}")
            alternatives[-1].append(Group(opening, inner))
            i = j + 1
        elif c == ")":
            break
        elif c == "|":
            flush()
            alternatives.append([])
            i += 1
        else:
            chunk.append(c)
            i += 1
    flush()
    return alternatives, i


def _opening(regex: str, i: int) -> str:
    if not regex.startswith("(?", i):
        return "("
    for prefix in ("(?:", "(?=", "(?!", "(?<=", "(?<!", "(?>"):
        if regex.startswith(prefix, i):
            return prefix
    if regex.startswith("(?P<", i):
        return regex[i : regex.index(">", i) + 1]
    # (?flags) or (?flags:...)
    match = re.compile(r"\(\?[aiLmsux-]+[:)]").match(regex, i)
    if match is None:
        raise ValueError(f"unsupported group at {i} in {regex!r}")
    return match.group()


def render(
    alternatives: list[list[str | Group]], labels: list[str] | None = None, _inside: bool = False
) -> str:
    """The regex again; with `labels`, each alternative of an alternation becomes a named group
    `_altN` (not inside lookarounds: those are conditions, not evidence) and `labels[N]` is its text."""
    parts = []
    for alternative in alternatives:
        text = "".join(
            item
            if isinstance(item, str)
            else item.opening
            + render(item.alternatives, None if item.opening in LOOKAROUND else labels, True)
            + ")"
            for item in alternative
        )
        if labels is not None and len(alternatives) > 1:
            labels.append(render([alternative]))
            text = f"(?P<_alt{len(labels) - 1}>{text})"
        parts.append(text)
    return "|".join(parts)


@dataclass(frozen=True)
class Instrumented:
    """A pattern compiled with a named group around every alternative."""

    pattern: Pattern
    compiled: re.Pattern[str]
    labels: tuple[str, ...]

    @classmethod
    def of(cls, pattern: Pattern, flags: int) -> Instrumented:
        labels: list[str] = []
        regex = render(parse(pattern.regex), labels)
        return cls(pattern, re.compile(regex, flags), tuple(labels))

    def used(self, text: str) -> set[int]:
        """Alternatives (indices into `labels`) that took part in a match; -1 for the whole pattern."""
        found: set[int] = set()
        for match in self.compiled.finditer(text):
            found.add(-1)
            found.update(int(name[4:]) for name, value in match.groupdict().items() if value is not None)
        return found


@dataclass(frozen=True)
class Leak:
    pattern: str
    alternative: str  # the regex text of the alternative, or the whole pattern

    def describe(self) -> str:
        return f"{self.pattern}: {self.alternative!r} matches TEST text without TRAIN/DEV evidence"


class UsageScanner:
    """Which alternatives of each pattern a text uses (Hyperscan picks the candidate rows first)."""

    def __init__(self, patterns: Sequence[Pattern], flags: int) -> None:
        self.patterns = tuple(patterns)
        self.table = PatternTable(self.patterns, flags=flags)
        self.instrumented = [Instrumented.of(p, flags) for p in self.patterns]

    def scan(self, texts: Iterable[str]) -> dict[str, set[int]]:
        used: dict[str, set[int]] = {p.name: set() for p in self.patterns}
        for text in texts:
            if not text:
                continue
            for row in self.table.candidate_rows(text):
                used[self.patterns[row].name] |= self.instrumented[row].used(text)
        return used

    def label(self, name: str, alternative: int) -> str:
        row = next(i for i in self.instrumented if i.pattern.name == name)
        return row.pattern.regex if alternative < 0 else row.labels[alternative]


def leaks(
    patterns: Sequence[Pattern], flags: int, train_dev_texts: Iterable[str], test_texts: Iterable[str]
) -> list[Leak]:
    """Every pattern, and every alternative of one, that matches TEST text but no TRAIN/DEV text."""
    scanner = UsageScanner(patterns, flags)
    seen = scanner.scan(train_dev_texts)
    tested = scanner.scan(test_texts)
    return [
        Leak(p.name, scanner.label(p.name, alternative))
        for p in patterns
        for alternative in sorted(tested[p.name] - seen[p.name])
    ]


def uncited_leaks(
    patterns: Sequence[Pattern], flags: int, reads: str, items: Sequence[CorpusItem]
) -> list[Leak]:
    """Stricter: every alternative a TEST text uses must be used by a text of a TRAIN/DEV family the
    pattern cites in `derived_from` (a pattern with public sources only may not match TEST text)."""
    scanner = UsageScanner(patterns, flags)
    by_family: dict[str, list[CorpusItem]] = {}
    test: list[CorpusItem] = []
    for item in items:
        if item.split == "test":
            test.append(item)
        else:
            by_family.setdefault(item.family, []).append(item)
    cited = sorted({s.family for p in patterns for s in p.derived_from if s.family is not None})
    per_family = {family: scanner.scan(texts_read(reads, by_family.get(family, []))) for family in cited}
    tested = scanner.scan(texts_read(reads, test))
    found = []
    for pattern in patterns:
        evidence: set[int] = set()
        for source in pattern.derived_from:
            if source.family is not None:
                evidence |= per_family[source.family][pattern.name]
        for alternative in sorted(tested[pattern.name] - evidence):
            found.append(Leak(pattern.name, scanner.label(pattern.name, alternative)))
    return found


def texts_read(reads: str, items: Sequence[CorpusItem]) -> list[str]:
    """What a signal's rules read for each corpus item: the prompt text for input signals, the
    answer for output signals (as the signals cut them: head and tail)."""
    if reads == "output":
        return [head_and_tail(item.answer) if item.answer else "" for item in items]
    from distillguard.signals.rules_and_model import prompt_text
    from distillguard.signals.training import call_of_item

    return [prompt_text(call_of_item(item)) for item in items]


def unsupported_provenance(
    patterns: Sequence[Pattern], flags: int, reads: str, items_by_family: dict[str, Sequence[CorpusItem]]
) -> list[str]:
    """Cited families a pattern matches none of the texts of (the texts its signal reads)."""
    problems = []
    for pattern in patterns:
        compiled = re.compile(pattern.regex, flags)
        for source in pattern.derived_from:
            if source.family is None:
                continue
            members = items_by_family.get(source.family, ())
            if not members:
                problems.append(f"{pattern.name}: cites family {source.family!r}, which has no items")
            elif not any(compiled.search(t) for t in texts_read(reads, members) if t):
                problems.append(
                    f"{pattern.name}: cites family {source.family!r} but matches none of its texts"
                )
    return problems
