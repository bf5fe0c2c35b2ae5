"""Pattern tables: the data most rule-based signals are made of, loaded from YAML and compiled once.

A table is a tuple of `Pattern` rows (name, aspect, weight, regex, derived_from). The rows of a
signal live in a YAML file next to its module (`cot_extraction.yaml`, ...), validated when loaded
with errors that name the file and the field, the way pySigma keeps detection content as data with
its references. Every row says where it came from (`derived_from`): a TRAIN or DEV template family
of the corpus (docs/split.md) or a public source outside the corpus (a URL), never a TEST family,
so a measurement on TEST families stays a measurement on text the rules were not written from.

Python's `re` defines what a row matches; Hyperscan (a multi-pattern regex engine) scans the
prompt once for all rows as a prefilter, ~100x faster than one big `re` alternation, and `re` then
confirms the few rows it reports and extracts the evidence. Without Hyperscan (platforms it has no
wheel for) the table falls back to `re` alone: the same results, slower.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import os
import platform
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import msgspec

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
class Provenance:
    """Where a pattern came from: a TRAIN/DEV corpus family, or a public source (a URL) outside it."""

    family: str | None = None
    public: str | None = None

    def describe(self) -> str:
        return f"family {self.family}" if self.family else str(self.public)


@dataclass(frozen=True, slots=True)
class Pattern:
    """One row of a pattern table.

    `aspect` groups rows into the sub-scores a signal reports (e.g. "step_by_step" vs
    "reveal_hidden"), `weight` is the score the row alone gives its aspect. `derived_from` says
    what text the row was written from (required in the shipped YAML tables).
    """

    name: str
    aspect: str
    weight: float
    regex: str
    derived_from: tuple[Provenance, ...] = ()
    note: str = ""

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
        # `hits_many` scans many texts as one (see there): only rows whose prefilter matches a
        # substring wherever it stands, so a match inside a text is also one inside the joined texts
        self._joinable = not any(_POSITIONAL.search(p.regex) for p in self.patterns)
        self._every_match: Any = None  # the prefilter reporting every match, not the first per row

    def candidate_rows(self, text: str) -> set[int]:
        """Rows that may match `text` (a superset of those that do)."""
        return set(self._candidates(text))

    def _candidates(self, text: str) -> list[int]:
        """`candidate_rows` as a list (each row once: the prefilter reports a row's first match only)."""
        if hyperscan is None:
            return list(range(len(self.patterns)))  # every row is tried with `re`
        if self._database is None:
            self._database = _prefilter(self.patterns, self._flags)
        rows: list[int] = []
        # Hyperscan folds case for ASCII only: other text is lower-cased first. ASCII text (most
        # prompts and answers; `isascii` costs nothing) is scanned as it is: lower-casing it changes
        # ASCII letters only, which the caseless database reads alike.
        data = text.encode() if text.isascii() else text.lower().encode("utf-8", "surrogatepass")
        self._database.scan(data, match_event_handler=_collect_row, context=rows)
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

    def hits_many(self, texts: list[str]) -> list[list[Hit]]:
        """`hits` of each text (not remembered). The prefilter scans all the texts joined as one,
        each text's bytes as `_candidates` scans them, with a newline between two, and a row is a
        candidate for the text in which one of its matches ends: a match inside a text is one
        inside the joined texts (no row of a joinable table is anchored or looks around), and one
        across a newline only adds a candidate that `re` then rejects. Most answers match no row:
        one scan per batch instead of one per text."""
        if hyperscan is None or not self._joinable or not texts:
            return [self._hits(text) for text in texts]
        if self._every_match is None:
            self._every_match = _prefilter(self.patterns, self._flags, single_match=False)
        data = [t.encode() if t.isascii() else t.lower().encode("utf-8", "surrogatepass") for t in texts]
        ends: list[int] = list(itertools.accumulate(len(d) + 1 for d in data))  # each text's newline, + 1
        matches: list[tuple[int, int]] = []
        self._every_match.scan(
            b"\n".join(data),
            match_event_handler=lambda row, start, end, flags, context: matches.append((row, end)),
        )
        rows: dict[int, set[int]] = {}
        for row, end in matches:  # the match's last byte is end - 1
            rows.setdefault(bisect.bisect_right(ends, end - 1), set()).add(row)
        out: list[list[Hit]] = [[] for _ in texts]
        for k, candidates in rows.items():
            if k < len(texts):
                out[k] = self._confirm(texts[k], list(candidates))
        return out

    def _hits(self, text: str) -> list[Hit]:
        return self._confirm(text, self._candidates(text))

    def _confirm(self, text: str, rows: list[int]) -> list[Hit]:
        """The hits of the candidate `rows` that `re` confirms, in order of appearance."""
        if not rows:  # most texts: the prefilter reports no row
            return []
        found: list[tuple[int, int, Hit]] = []
        for row in rows:
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


class TableGroup:
    """Several pattern tables scanned together: one Hyperscan pass over a text finds the candidate
    rows of every table (their prefilter expressions compiled into one database, each table's
    rows numbered after the previous table's), and each table's candidates are confirmed as its
    own `hits` would. The prompt classifiers read the same text: one scan instead of three."""

    def __init__(self, tables: Sequence[PatternTable]) -> None:
        self.tables = tuple(tables)
        self._starts = list(itertools.accumulate((len(t.patterns) for t in self.tables), initial=0))
        self._database: Any = None

    def hits_each(self, texts: list[str]) -> dict[PatternTable, list[list[Hit]]]:
        """Each table's `hits` of each text (not remembered)."""
        if hyperscan is None:
            return {table: table.hits_many(texts) for table in self.tables}
        if self._database is None:
            patterns = tuple(p for table in self.tables for p in table.patterns)
            flags = [table._flags for table in self.tables for _ in table.patterns]
            self._database = _prefilter(patterns, flags)
        out: dict[PatternTable, list[list[Hit]]] = {table: [] for table in self.tables}
        lists = [out[table] for table in self.tables]
        bounds = list(itertools.pairwise(self._starts))
        for text in texts:
            rows: list[int] = []
            # the bytes `PatternTable._candidates` scans
            data = text.encode() if text.isascii() else text.lower().encode("utf-8", "surrogatepass")
            self._database.scan(data, match_event_handler=_collect_row, context=rows)
            if not rows:  # most texts: no table has a candidate
                for found in lists:
                    found.append([])
                continue
            for table, found, (lo, hi) in zip(self.tables, lists, bounds, strict=True):
                found.append(table._confirm(text, [row - lo for row in rows if lo <= row < hi]))
        return out


def _collect_row(row: int, start: int, end: int, flags: int, rows: list[int]) -> None:
    """Hyperscan's match handler for `_candidates`: the rows reported, in order (one function for
    every scan, instead of a closure made per text)."""
    rows.append(row)


def _snippet(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# What makes a row's match depend on where it stands (`hits_many` cannot join texts for it): an
# anchor (`^`, `$`, `\A`, `\Z`, `\z`, `\B`) or a lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`). Read
# loosely: a `^` that negates a class also counts (the table is then scanned text by text).
_POSITIONAL = re.compile(r"[\^$]|\\[AZzB]|\(\?<?[=!]")


# `\b` outside a character class, not escaped itself: Hyperscan's `\b` is ASCII-only, so it is
# dropped from the prefilter (which may then over-report; `re` decides).
_WORD_BOUNDARY = re.compile(r"(?<!\\)((?:\\\\)*)\\b")


# Hyperscan reads \w, \s and \d as ASCII; `re` reads them as Unicode. Its UCP flag would agree
# with `re` but makes the tables compile in minutes, so the prefilter widens them instead: \w becomes
# \S (no word character is whitespace), and \s, \d also accept any non-ASCII character. The
# prefilter then over-reports on non-ASCII text, never misses, and `re` decides.
_NON_ASCII = r"\x{80}-\x{10ffff}"
_WIDER = {"\\w": "\\S", "\\s": rf"(?:\s|[{_NON_ASCII}])", "\\d": rf"(?:\d|[{_NON_ASCII}])"}
_WIDER_IN_CLASS = {"\\w": "\\S", "\\s": rf"\s{_NON_ASCII}", "\\d": rf"\d{_NON_ASCII}"}


# A bounded repeat with a large upper bound (`[^.?!\n]{0,40}` after a common verb) makes Hyperscan
# count every start it has seen: one such row made cot_extraction's database ~4x slower to scan
# (6.6 -> 1.7 us per prompt of the default preset) and to compile. The prefilter drops the upper
# bound (`{0,}`): it matches a superset, and `re` decides as before.
UNBOUNDED_FROM = 20
_BOUNDED_REPEAT = re.compile(r"\{(\d+),(\d+)\}")


def widen_for_prefilter(regex: str) -> str:
    """The regex with \\w, \\s and \\d widened for Hyperscan's ASCII reading (see above), and
    bounded repeats of UNBOUNDED_FROM or more made unbounded.

    In a negated class (`[^\\s]`) they stay: the ASCII reading already excludes fewer characters.
    """
    out: list[str] = []
    in_class = negated = False
    i = 0
    while i < len(regex):
        c = regex[i]
        if c == "{" and not in_class:
            repeat = _BOUNDED_REPEAT.match(regex, i)
            if repeat is not None and int(repeat.group(2)) >= UNBOUNDED_FROM:
                out.append(f"{{{repeat.group(1)},}}")
                i = repeat.end()
                continue
        if c == "\\":
            escape = regex[i : i + 2]
            if not in_class:
                out.append(_WIDER.get(escape, escape))
            else:
                out.append(escape if negated else _WIDER_IN_CLASS.get(escape, escape))
            i += 2
            continue
        if c == "[" and not in_class:
            in_class, negated = True, regex.startswith("^", i + 1)
            start = i + 2 if negated else i + 1
            if regex.startswith("]", start):  # a ']' right after '[' or '[^' is a literal
                start += 1
            out.append(regex[i:start])
            i = start
            continue
        if c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


def prefilter_cache_dir() -> Path:
    """$DISTILLGUARD_CACHE/hyperscan, else the user cache directory ($XDG_CACHE_HOME or ~/.cache)."""
    if os.environ.get("DISTILLGUARD_CACHE"):
        return Path(os.environ["DISTILLGUARD_CACHE"]) / "hyperscan"
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "distillguard" / "hyperscan"


def _prefilter(
    patterns: tuple[Pattern, ...], flags: int | Sequence[int], *, single_match: bool = True
) -> Any:
    """The Hyperscan database of a table (``flags``: its `re` flags, or each pattern's, for tables
    scanned together). Compiling the largest table (cot_extraction) takes ~1-2 s
    of CPU, paid by every scan and gateway start: the compiled database is kept in the user's cache,
    named by a digest of everything that defines it (expressions, flags, Hyperscan's version, the
    machine), and compiled again whenever it is missing or will not load (another CPU, a damaged file)."""
    assert hyperscan is not None
    each = [flags] * len(patterns) if isinstance(flags, int) else list(flags)
    if len(each) != len(patterns):
        raise ValueError(f"{len(each)} flags for {len(patterns)} patterns")
    hs_flags = [_hyperscan_flags(f, single_match) for f in each]
    expressions = [widen_for_prefilter(_WORD_BOUNDARY.sub(r"\1", p.regex)).encode("utf-8") for p in patterns]
    # one flags value for a table whose patterns share it (the digest, and so the cached file,
    # of such a table is what it was before tables were scanned together)
    shared = hs_flags[0] if len(set(hs_flags)) == 1 else hs_flags
    identity = [getattr(hyperscan, "__version__", ""), platform.machine(), shared, *expressions]
    digest = hashlib.sha256(b"\x00".join(str(part).encode() for part in identity)).hexdigest()[:32]
    cached = prefilter_cache_dir() / f"{digest}.hsdb"
    try:
        database = hyperscan.loadb(cached.read_bytes(), hyperscan.HS_MODE_BLOCK)
        database.scratch = hyperscan.Scratch(database)
        # a database built for another CPU's instructions (a cache shared between machines) loads
        # but refuses to scan: find out now, not on the first prompt
        database.scan(b"probe", match_event_handler=lambda *match: None)
        return database
    except (OSError, hyperscan.error):
        pass  # not cached yet, or not usable here: compile it
    database = _compile_prefilter(patterns, expressions, hs_flags)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".tmp{os.getpid()}")
        partial.write_bytes(hyperscan.dumpb(database))
        partial.replace(cached)  # atomic: a concurrent reader never sees half a file
    except OSError:
        pass  # a read-only cache only costs the compile next time
    return database


def _hyperscan_flags(flags: int, single_match: bool) -> int:
    """Hyperscan's flags for a prefilter expression of a pattern with these `re` flags."""
    assert hyperscan is not None
    hs_flags = hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_UTF8
    if single_match:  # each row reported once per scan, at its first match
        hs_flags |= hyperscan.HS_FLAG_SINGLEMATCH
    hs_flags |= hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_ALLOWEMPTY
    if flags & re.MULTILINE:
        hs_flags |= hyperscan.HS_FLAG_MULTILINE
    if flags & re.DOTALL:
        hs_flags |= hyperscan.HS_FLAG_DOTALL
    return hs_flags


def _compile_prefilter(patterns: tuple[Pattern, ...], expressions: list[bytes], hs_flags: list[int]) -> Any:
    assert hyperscan is not None
    database = hyperscan.Database()
    try:
        database.compile(
            expressions=expressions,
            ids=list(range(len(expressions))),
            elements=len(expressions),
            flags=hs_flags,
        )
    except hyperscan.error as exc:
        raise ValueError(
            f"pattern table {[p.name for p in patterns]}: Hyperscan cannot compile it: {exc}"
        ) from exc
    return database


# --- pattern files (YAML) ------------------------------------------------------------------------

FLAG_NAMES = {"IGNORECASE": re.IGNORECASE, "MULTILINE": re.MULTILINE, "DOTALL": re.DOTALL}
# `{NAME}` in a regex is replaced by the file's fragment NAME (not after a backslash, and never a
# regex quantifier, which holds digits only)
_FRAGMENT = re.compile(r"(?<!\\)\{([A-Z][A-Z0-9_]*)\}")
_URL = re.compile(r"https?://\S+")


class ProvenanceSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    family: str | None = None
    public: str | None = None


class PatternSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    aspect: str
    weight: float
    regex: str
    derived_from: list[ProvenanceSpec]
    note: str = ""


class PatternFileSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    signal: str
    flags: list[Literal["IGNORECASE", "MULTILINE", "DOTALL"]] = []
    fragments: dict[str, str] = {}
    patterns: list[PatternSpec]


@dataclass(frozen=True)
class PatternFile:
    """A validated pattern file: the rows of one signal and the `re` flags they are compiled with."""

    path: Path
    signal: str
    flags: int
    patterns: tuple[Pattern, ...]

    def table(self) -> PatternTable:
        return PatternTable(self.patterns, flags=self.flags)


def decode_error(path: Path, error: msgspec.MsgspecError) -> ValueError:
    """msgspec says "Expected `float`, got `str` - at `$.patterns[3].weight`": name the file and field."""
    message = str(error)
    detail, _, where = message.rpartition(" - at `$")
    if detail and where.endswith("`"):
        return ValueError(f"{path}: field '{where[:-1].lstrip('.')}': {detail}")
    return ValueError(f"{path}: {message}")


def load_patterns(path: Path, *, signal: str | None = None, check_splits: bool = True) -> PatternFile:
    """Read and validate a pattern file; every error names `path` and the field.

    Per row: weight in (0, 1], a regex that compiles (after fragment substitution), at least one
    `derived_from` entry, each either a `family` of the TRAIN or DEV split (checked against the
    corpus split table unless `check_splits` is False) or a `public` source with a URL. Across rows:
    names are unique.
    """
    try:
        spec = msgspec.yaml.decode(path.read_bytes(), type=PatternFileSpec)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: pattern file not found") from None
    except msgspec.MsgspecError as error:
        raise decode_error(path, error) from None
    if signal is not None and spec.signal != signal:
        raise ValueError(f"{path}: field 'signal' is {spec.signal!r}, expected {signal!r}")
    flags = 0
    for name in spec.flags:
        flags |= FLAG_NAMES[name]
    split_of = split_of_families() if check_splits else None
    patterns: list[Pattern] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(spec.patterns):
        where = f"{path}: field 'patterns[{index}]"
        if not row.name.strip():
            raise ValueError(f"{where}.name' is empty")
        if row.name in seen:
            raise ValueError(f"{where}.name': {row.name!r} is already the name of patterns[{seen[row.name]}]")
        seen[row.name] = index
        if not 0.0 < row.weight <= 1.0:
            raise ValueError(f"{where}.weight': {row.weight} outside (0, 1]")
        regex = _expand(row.regex, spec.fragments, f"{where}.regex'")
        try:
            re.compile(regex, flags)
        except re.error as exc:
            raise ValueError(f"{where}.regex': invalid regex: {exc}") from None
        provenance = read_provenance(row.derived_from, f"{where}.derived_from", split_of)
        patterns.append(
            Pattern(row.name, row.aspect, row.weight, regex, derived_from=provenance, note=row.note)
        )
    return PatternFile(path=path, signal=spec.signal, flags=flags, patterns=tuple(patterns))


def read_provenance(
    entries: list[ProvenanceSpec], where: str, split_of: dict[str, str] | None
) -> tuple[Provenance, ...]:
    """Validated `derived_from` entries; `where` names the file and field (ends with the field)."""
    if not entries:
        raise ValueError(f"{where}': say where the rule came from (a TRAIN/DEV family or a public URL)")
    provenance = []
    for k, entry in enumerate(entries):
        at = f"{where}[{k}]'"
        if (entry.family is None) == (entry.public is None):
            raise ValueError(f"{at}: give exactly one of 'family' or 'public'")
        if entry.public is not None and not _URL.search(entry.public):
            raise ValueError(f"{at}: a public source must carry a URL, got {entry.public!r}")
        if entry.family is not None and split_of is not None:
            split = split_of.get(entry.family)
            if split is None:
                raise ValueError(f"{at}: family {entry.family!r} is not in the corpus split table")
            if split not in ("train", "dev"):
                raise ValueError(
                    f"{at}: family {entry.family!r} is a {split.upper()} family; rules may only be "
                    "derived from TRAIN or DEV families"
                )
        provenance.append(Provenance(family=entry.family, public=entry.public))
    return tuple(provenance)


@cache
def split_of_families() -> dict[str, str]:
    """family -> split from the corpus split table (imported here: only validation needs it)."""
    from distillguard.corpus.corpus import SplitTable

    return dict(SplitTable().split_of)


def _expand(regex: str, fragments: dict[str, str], where: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in fragments:
            raise ValueError(
                f"{where}: unknown fragment {{{name}}}; known: {', '.join(sorted(fragments)) or 'none'}"
            )
        return fragments[name]

    return _FRAGMENT.sub(substitute, regex)
