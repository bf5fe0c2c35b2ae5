"""Pattern tables: the data most rule-based signals are made of, compiled once for fast scanning.

A table is a tuple of `Pattern` rows (name, aspect, weight, regex). Python's `re` defines what a
row matches; Hyperscan (a multi-pattern regex engine) scans the prompt once for all rows as a
prefilter, ~100x faster than one big `re` alternation, and `re` then confirms the few rows it
reports and extracts the evidence. Without Hyperscan (platforms it has no wheel for) the table
falls back to `re` alone: the same results, slower.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

hyperscan: Any
try:
    import hyperscan
except ImportError:  # no wheel for this platform: `re` alone gives the same results, slower
    hyperscan = None

# Very long prompts (pasted documents, judge requests with long answers) are read as their head and
# tail: the instruction of a template sits at one end, and scanning 100 kB of pasted text per call
# would cost more than the whole rest of the pipeline.
HEAD_CHARS = 3000
TAIL_CHARS = 1500
# distinct texts whose hits a pattern table remembers (templated traffic repeats prompts)
MEMO_TEXTS = 4096


def head_and_tail(text: str, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> str:
    if len(text) <= head + tail:
        return text
    return text[:head] + "\n…\n" + text[-tail:]


@dataclass(frozen=True, slots=True)
class Pattern:
    """One row of a pattern table.

    `aspect` groups rows into the sub-scores a signal reports (e.g. "step_by_step" vs
    "reveal_hidden"), `weight` is the score the row alone gives its aspect.
    """

    name: str
    aspect: str
    weight: float
    regex: str

    def __post_init__(self) -> None:
        if not 0.0 < self.weight <= 1.0:
            raise ValueError(f"pattern {self.name!r}: weight {self.weight} outside (0, 1]")
        try:
            re.compile(self.regex)
        except re.error as exc:
            raise ValueError(f"pattern {self.name!r}: invalid regex: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Hit:
    pattern: Pattern
    snippet: str

    def describe(self) -> str:
        return f"{self.pattern.aspect}/{self.pattern.name}: {self.snippet!r}"


class PatternTable:
    """A compiled table. `hits(text)` returns at most one hit per row, in order of appearance."""

    def __init__(self, patterns: Iterable[Pattern], *, flags: int = re.IGNORECASE) -> None:
        self.patterns = tuple(patterns)
        names = [p.name for p in self.patterns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"pattern table has duplicate names: {duplicates}")
        self.aspects = tuple(dict.fromkeys(p.aspect for p in self.patterns))
        self._flags = flags
        self._rows = [re.compile(p.regex, flags) for p in self.patterns]
        # compiled on first use: building the signal set stays cheap
        self._database: Any = None
        self._memo: dict[str, list[Hit]] = {}

    def candidate_rows(self, text: str) -> set[int]:
        """Rows that may match `text` (a superset of those that do)."""
        if hyperscan is None:
            return set(range(len(self.patterns)))  # every row is tried with `re`
        if self._database is None:
            self._database = _prefilter(self.patterns, self._flags)
        rows: set[int] = set()

        def on_match(row: int, start: int, end: int, flags: int, context: Any) -> None:
            rows.add(row)

        # lower-cased because Hyperscan folds case for ASCII only
        self._database.scan(text.lower().encode("utf-8", "surrogatepass"), match_event_handler=on_match)
        return rows

    def hits(self, text: str) -> list[Hit]:
        """The rows that match, at most one hit each, in order of appearance."""
        # Pure in the text; templated traffic sends the same prompt many times, so repeats are
        # answered from a bounded memo (cleared when full: no per-entry bookkeeping on the hot path).
        cached = self._memo.get(text)
        if cached is None:
            if len(self._memo) >= MEMO_TEXTS:
                self._memo.clear()
            cached = self._memo[text] = self._hits(text)
        return list(cached)

    def _hits(self, text: str) -> list[Hit]:
        found: list[tuple[int, int, Hit]] = []
        for row in self.candidate_rows(text):
            match = self._rows[row].search(text)
            if match is not None:
                found.append((match.start(), row, Hit(self.patterns[row], _snippet(match.group()))))
        found.sort(key=lambda item: item[:2])
        return [hit for _, _, hit in found]

    def aspect_scores(self, hits: list[Hit]) -> dict[str, float]:
        """Noisy-or of the weights of the rows that fired, per aspect (0 for aspects with no hit)."""
        scores = dict.fromkeys(self.aspects, 0.0)
        if not hits:  # most prompts: skip the arithmetic
            return scores
        misses: dict[str, float] = {}
        for hit in hits:
            aspect = hit.pattern.aspect
            misses[aspect] = misses.get(aspect, 1.0) * (1.0 - hit.pattern.weight)
        for aspect, miss in misses.items():
            scores[aspect] = round(1.0 - miss, 4)
        return scores


def _snippet(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# `\b` outside a character class, not escaped itself: Hyperscan's `\b` is ASCII-only, so it is
# dropped from the prefilter (which may then over-report; `re` decides).
_WORD_BOUNDARY = re.compile(r"(?<!\\)((?:\\\\)*)\\b")


def _prefilter(patterns: tuple[Pattern, ...], flags: int) -> Any:
    assert hyperscan is not None
    hs_flags = hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_SINGLEMATCH
    hs_flags |= hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_ALLOWEMPTY
    if flags & re.MULTILINE:
        hs_flags |= hyperscan.HS_FLAG_MULTILINE
    if flags & re.DOTALL:
        hs_flags |= hyperscan.HS_FLAG_DOTALL
    expressions = [_WORD_BOUNDARY.sub(r"\1", p.regex).encode("utf-8") for p in patterns]
    database = hyperscan.Database()
    try:
        database.compile(
            expressions=expressions,
            ids=list(range(len(expressions))),
            elements=len(expressions),
            flags=[hs_flags] * len(expressions),
        )
    except hyperscan.error as exc:
        raise ValueError(
            f"pattern table {[p.name for p in patterns]}: Hyperscan cannot compile it: {exc}"
        ) from exc
    return database
