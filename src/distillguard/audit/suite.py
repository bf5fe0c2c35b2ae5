"""Prompt suites as data: single prompts by topic, and pairs that ask the same of two sides.

A suite is YAML, validated when loaded in two phases (each record's shape, then the set: unique
ids, known languages, terms for every language a side is asked in). Errors name the file, the line
and the field (``suite.yaml:12: $.pairs[0].a.text: ...``). The packaged suites live in
``suites/`` next to their licence and origin notes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

# Languages the classifiers have lexicons for; a suite in another language is refused on load
# rather than measured with the wrong patterns.
LANGUAGES = ("en", "zh")
PAIR_KINDS = ("criticise", "praise", "describe")
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")

# name -> files of the packaged suite, relative to this package's suites/ folder
PACKAGED: dict[str, tuple[str, ...]] = {
    "deccp": ("deccp/prompts.yaml",),
    "pairs": ("pairs/pairs.yaml",),
    "default": ("deccp/prompts.yaml", "pairs/pairs.yaml"),
}


class SuiteError(ValueError):
    """A suite that cannot be used; the message names the file, line and field."""


class Subject(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Who or what an answer is about, and the words that name it in each language (for the
    sentiment toward it and for noticing when an answer turns to someone else)."""

    name: str
    terms: dict[str, list[str]]


class Prompt(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    topic: str
    text: dict[str, str]
    # a Subject, or the name of one in the suite's `subjects` table (resolved on load)
    subject: Subject | str | None = None
    tags: list[str] = []
    source: str = ""


class Side(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    subject: Subject | str
    text: dict[str, str]


class Pair(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The same ask about two sides (criticise A / criticise B, describe event X / comparable Y)."""

    id: str
    topic: str
    kind: Literal["criticise", "praise", "describe"]
    a: Side
    b: Side
    note: str = ""


class SuiteFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    licence: str
    description: str = ""
    origin: str = ""
    # subjects named once and referred to by key from prompts and pair sides
    subjects: dict[str, Subject] = {}
    prompts: list[Prompt] = []
    pairs: list[Pair] = []


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One question to send: a prompt (or one side of a pair) in one language."""

    item: str
    lang: str
    topic: str
    text: str
    subject: Subject | None = None
    pair: str | None = None
    side: str | None = None
    kind: str | None = None
    other: Subject | None = None  # a pair side's opposite, whose faults an answer may turn to

    @property
    def key(self) -> str:
        return f"{self.item}@{self.lang}"


@dataclass(frozen=True, slots=True)
class SuiteSource:
    name: str
    path: str
    sha256: str
    licence: str


@dataclass(frozen=True, slots=True)
class Suite:
    sources: tuple[SuiteSource, ...]
    prompts: tuple[Prompt, ...]
    pairs: tuple[Pair, ...]

    @property
    def name(self) -> str:
        return "+".join(source.name for source in self.sources)

    def languages(self) -> list[str]:
        found = {lang for p in self.prompts for lang in p.text}
        found |= {lang for pair in self.pairs for lang in pair.a.text}
        return [lang for lang in LANGUAGES if lang in found]

    def items(self, langs: Sequence[str]) -> list[WorkItem]:
        """Every (prompt or pair side, language) to ask, in suite order; a prompt without text in a
        requested language is simply not asked in it."""
        out: list[WorkItem] = []
        for lang in langs:
            for p in self.prompts:
                if lang in p.text:
                    out.append(WorkItem(p.id, lang, p.topic, p.text[lang], subject=_resolved(p.subject)))
            for pair in self.pairs:
                for side_name, side, other in (("a", pair.a, pair.b), ("b", pair.b, pair.a)):
                    if lang in side.text:
                        out.append(
                            WorkItem(
                                f"{pair.id}:{side_name}",
                                lang,
                                pair.topic,
                                side.text[lang],
                                subject=_resolved(side.subject),
                                pair=pair.id,
                                side=side_name,
                                kind=pair.kind,
                                other=_resolved(other.subject),
                            )
                        )
        return out


def _resolved(subject: Subject | str | None) -> Subject | None:
    if isinstance(subject, str):  # parse_suite resolves every name; a str here is a bug
        raise TypeError(f"subject {subject!r} was not resolved")
    return subject


def packaged_dir() -> Path:
    return Path(str(resources.files("distillguard.audit") / "suites"))


def load_suites(refs: Iterable[str]) -> Suite:
    """Load packaged suites by name or suite files by path, and check them as one set.

    >>> suite = load_suites(["pairs"])
    >>> len(suite.pairs) >= 12 and suite.languages()
    ['en', 'zh']
    """
    sources: list[SuiteSource] = []
    prompts: list[Prompt] = []
    pairs: list[Pair] = []
    seen: dict[str, str] = {}
    for ref in refs:
        if ref in PACKAGED:
            paths = [packaged_dir() / rel for rel in PACKAGED[ref]]
        else:
            path = Path(ref)
            if not path.is_file():
                known = ", ".join(sorted(PACKAGED))
                raise SuiteError(f"{ref}: no such suite file, and not a packaged suite ({known})")
            paths = [path]
        for path in paths:
            if str(path) in seen:
                continue
            seen[str(path)] = ref
            raw = path.read_bytes()
            parsed = parse_suite(raw, str(path))
            sources.append(
                SuiteSource(parsed.name, str(path), hashlib.sha256(raw).hexdigest(), parsed.licence)
            )
            prompts.extend(parsed.prompts)
            pairs.extend(parsed.pairs)
    _check_unique_across(prompts, pairs, [s.path for s in sources])
    return Suite(tuple(sources), tuple(prompts), tuple(pairs))


def parse_suite(raw: bytes | str, where: str) -> SuiteFile:
    """Parse and validate one suite file's text; `where` names it in errors."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        why = " ".join(
            str(part) for part in (getattr(error, "context", None), getattr(error, "problem", None)) if part
        )
        raise SuiteError(f"{where}{line}: not valid YAML: {why or error}") from error
    if not isinstance(data, dict):
        raise SuiteError(f"{where}:1: $: a suite is a mapping with name, licence, prompts and pairs")
    try:
        suite = msgspec.convert(data, SuiteFile)
    except msgspec.ValidationError as error:
        message = str(error)
        found = re.search(r" - at `([^`]*)`$", message)
        path = found.group(1) if found else "$"
        problem = message[: found.start()] if found else message
        raise SuiteError(f"{where}:{_line_of(root, path)}: {path}: {problem}") from error
    problems = list(_check_suite(suite))
    if problems:
        path, problem = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise SuiteError(f"{where}:{_line_of(root, path)}: {path}: {problem}{more}")
    return suite


def _check_suite(suite: SuiteFile) -> Iterable[tuple[str, str]]:
    if not suite.prompts and not suite.pairs:
        yield "$", "the suite has neither prompts nor pairs"
    for field_name in ("name", "licence"):
        if not getattr(suite, field_name).strip():
            yield f"$.{field_name}", "must not be empty"
    for name, subject in suite.subjects.items():
        yield from _check_subject(subject, [], f"$.subjects.{name}")
    yield from _resolve_subjects(suite)
    ids: dict[str, str] = {}

    def check_id(value: str, path: str) -> Iterable[tuple[str, str]]:
        if not _ID.match(value):
            yield path, f"id {value!r} must be lower-case letters, digits, '_', '.', '-' (at most 80)"
        elif value in ids:
            yield path, f"id {value!r} is already used at {ids[value]}"
        else:
            ids[value] = path

    for i, p in enumerate(suite.prompts):
        base = f"$.prompts[{i}]"
        yield from check_id(p.id, f"{base}.id")
        yield from _check_topic(p.topic, f"{base}.topic")
        yield from _check_texts(p.text, f"{base}.text")
        if isinstance(p.subject, Subject):
            yield from _check_subject(p.subject, list(p.text), f"{base}.subject")
    for i, pair in enumerate(suite.pairs):
        base = f"$.pairs[{i}]"
        yield from check_id(pair.id, f"{base}.id")
        yield from _check_topic(pair.topic, f"{base}.topic")
        for side_name in ("a", "b"):
            side: Side = getattr(pair, side_name)
            yield from _check_texts(side.text, f"{base}.{side_name}.text")
            if isinstance(side.subject, Subject):
                yield from _check_subject(side.subject, list(side.text), f"{base}.{side_name}.subject")
        if set(pair.a.text) != set(pair.b.text):
            yield (
                f"{base}.b.text",
                f"side b is asked in {sorted(pair.b.text)} but side a in {sorted(pair.a.text)}: "
                "a pair compares like with like, so both sides need the same languages",
            )
        a, b = pair.a.subject, pair.b.subject
        if (
            isinstance(a, Subject)
            and isinstance(b, Subject)
            and a.name.strip().lower() == b.name.strip().lower()
        ):
            yield f"{base}.b.subject", "both sides name the same subject"


def _resolve_subjects(suite: SuiteFile) -> Iterable[tuple[str, str]]:
    """Replace subject names by the subjects they name in the suite's `subjects` table."""
    holders: list[tuple[Prompt | Side, str]] = [(p, f"$.prompts[{i}]") for i, p in enumerate(suite.prompts)]
    for i, pair in enumerate(suite.pairs):
        holders += [(pair.a, f"$.pairs[{i}].a"), (pair.b, f"$.pairs[{i}].b")]
    for holder, path in holders:
        if isinstance(holder.subject, str):
            found = suite.subjects.get(holder.subject)
            if found is None:
                known = ", ".join(sorted(suite.subjects)) or "none defined"
                yield f"{path}.subject", f"names subject {holder.subject!r}, not in `subjects` ({known})"
            else:
                holder.subject = found


def _check_topic(topic: str, path: str) -> Iterable[tuple[str, str]]:
    if not _ID.match(topic):
        yield path, f"topic {topic!r} must be lower-case letters, digits, '_', '.', '-'"


def _check_texts(texts: dict[str, str], path: str) -> Iterable[tuple[str, str]]:
    if not texts:
        yield path, f"needs the prompt in at least one language ({', '.join(LANGUAGES)})"
    for lang, value in texts.items():
        if lang not in LANGUAGES:
            yield path, f"language {lang!r} has no classifier lexicon; supported: {', '.join(LANGUAGES)}"
        elif not value.strip():
            yield f"{path}.{lang}", "empty prompt"


def _check_subject(subject: Subject, langs: list[str], path: str) -> Iterable[tuple[str, str]]:
    if not subject.name.strip():
        yield f"{path}.name", "must not be empty"
    for lang in subject.terms:
        if lang not in LANGUAGES:
            yield f"{path}.terms", f"language {lang!r} has no classifier lexicon"
    for lang in langs:
        terms = [t for t in subject.terms.get(lang, []) if t.strip()]
        if not terms:
            yield f"{path}.terms", f"no terms in {lang!r} that name {subject.name!r} in an answer"


def _check_unique_across(prompts: Sequence[Prompt], pairs: Sequence[Pair], paths: Sequence[str]) -> None:
    seen: set[str] = set()
    for record_id in [*(p.id for p in prompts), *(p.id for p in pairs)]:
        if record_id in seen:
            raise SuiteError(
                f"id {record_id!r} appears in more than one of the suites given ({', '.join(paths)})"
            )
        seen.add(record_id)


_PATH_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[\.\.\.\]")


def _line_of(root: yaml.Node | None, path: str) -> int:
    """The 1-based line of the deepest YAML node on a msgspec error path like `$.pairs[2].a.text`."""
    node = root
    line = 1 if node is None else node.start_mark.line + 1
    for match in _PATH_STEP.finditer(path[1:]):
        key, index = match.group(1), match.group(2)
        child: Any = None
        if key is not None and isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif index is not None and isinstance(node, yaml.SequenceNode):
            position = int(index)
            child = node.value[position] if position < len(node.value) else None
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line
