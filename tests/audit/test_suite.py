"""Suites: the packaged ones load; a user's suite is validated on load with errors that name the
file, the line and the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from distillguard.audit.suite import PACKAGED, SuiteError, load_suites, parse_suite

HEAD = "name: mine\nlicence: CC0-1.0\n"
PAIR = """pairs:
  - id: p1
    topic: gov
    kind: criticise
    a:
      subject: {name: A, terms: {en: [Aland]}}
      text: {en: Criticise A.}
    b:
      subject: {name: B, terms: {en: [Bland]}}
      text: {en: Criticise B.}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            HEAD + "prompts:\n  - id: a\n    topik: t\n    text: {en: Hi.}\n",
            "s.yaml:4: $.prompts[0]: Object contains unknown field `topik`",
        ),
        (
            HEAD + "prompts:\n  - id: a\n    topic: t\n    text: [Hi.]\n",
            "s.yaml:6: $.prompts[0].text: Expected `object`, got `array`",
        ),
        (
            HEAD + "prompts:\n  - id: a\n    topic: t\n    text: {fr: Salut.}\n",
            "s.yaml:6: $.prompts[0].text: language 'fr' has no classifier lexicon",
        ),
        (
            HEAD + "prompts:\n  - id: a\n    topic: t\n    text: {en: '  '}\n",
            "s.yaml:6: $.prompts[0].text.en: empty prompt",
        ),
        (
            HEAD
            + "prompts:\n  - {id: a, topic: t, text: {en: One.}}\n  - {id: a, topic: t, text: {en: Two.}}\n",
            "s.yaml:5: $.prompts[1].id: id 'a' is already used at $.prompts[0].id",
        ),
        (
            HEAD + "prompts:\n  - {id: Not OK, topic: t, text: {en: One.}}\n",
            "s.yaml:4: $.prompts[0].id: id 'Not OK' must be lower-case",
        ),
        (
            HEAD + "prompts:\n  - {id: a, topic: t, text: {en: One.}, subject: nobody}\n",
            "$.prompts[0].subject: names subject 'nobody', not in `subjects` (none defined)",
        ),
        (
            HEAD + PAIR.replace("kind: criticise", "kind: attack"),
            "s.yaml:6: $.pairs[0].kind: Invalid enum value 'attack'",
        ),
        (
            HEAD + PAIR.replace("text: {en: Criticise B.}", "text: {en: Criticise B., zh: 批评B。}"),
            "$.pairs[0].b.subject.terms: no terms in 'zh'",
        ),
        (
            HEAD
            + PAIR.replace("text: {en: Criticise B.}", "text: {zh: 批评B。}").replace(
                "terms: {en: [Bland]}", "terms: {zh: [B国]}"
            ),
            "s.yaml:12: $.pairs[0].b.text: side b is asked in ['zh'] but side a in ['en']",
        ),
        (
            HEAD + PAIR.replace("name: B,", "name: a,"),
            "$.pairs[0].b.subject: both sides name the same subject",
        ),
        (HEAD, "s.yaml:1: $: the suite has neither prompts nor pairs"),
        (
            "name: mine\nprompts:\n  - {id: a, topic: t, text: {en: One.}}\n",
            "s.yaml:1: $: Object missing required field `licence`",
        ),
        ("- just\n- a list\n", "s.yaml:1: $: a suite is a mapping"),
        ("name: [unclosed\n", "s.yaml:2: not valid YAML"),
    ],
)
def test_suite_errors_name_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SuiteError) as error:
        load_suites([str(path)])
    assert str(error.value).startswith(str(tmp_path)), error.value
    assert expected in str(error.value), error.value


def test_a_valid_user_suite_with_named_subjects(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        HEAD
        + "subjects:\n  x: {name: X, terms: {en: [Xland], zh: [X国]}}\n"
        + "prompts:\n  - {id: a, topic: t, text: {en: One., zh: 一。}, subject: x}\n  - {id: b, topic: t, text: {zh: 二。}}\n"
        + PAIR,
        encoding="utf-8",
    )
    suite = load_suites([str(path)])
    items = suite.items(["en", "zh"])
    assert [i.key for i in items] == ["a@en", "p1:a@en", "p1:b@en", "a@zh", "b@zh"]
    assert items[0].subject is not None and items[0].subject.terms["zh"] == ["X国"]
    pair_a = items[1]
    assert (pair_a.pair, pair_a.side, pair_a.kind, pair_a.other.name if pair_a.other else None) == (
        "p1",
        "a",
        "criticise",
        "B",
    )


def test_ids_must_be_unique_across_suites(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + "prompts:\n  - {id: deccp-001, topic: t, text: {en: One.}}\n", encoding="utf-8")
    with pytest.raises(SuiteError, match="id 'deccp-001' appears in more than one"):
        load_suites(["deccp", str(path)])


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_packaged_suites_load(name: str) -> None:
    suite = load_suites([name])
    assert suite.items(["en"]) and suite.items(["zh"])
    assert all(source.licence.startswith("Apache-2.0") for source in suite.sources)


def test_packaged_suite_contents() -> None:
    suite = load_suites(["default"])
    assert len(suite.prompts) == 143 and len(suite.pairs) == 14
    assert sum(1 for p in suite.prompts if "zh" in p.text) == 51
    assert all(set(pair.a.text) == {"en", "zh"} for pair in suite.pairs)
    assert {pair.kind for pair in suite.pairs} == {"criticise", "praise", "describe"}
    folder = Path(suite.sources[0].path).parent
    assert "Apache License" in (folder / "LICENSE").read_text() and (folder / "ORIGIN.md").is_file()
    assert (Path(suite.sources[1].path).parent / "ORIGIN.md").is_file()


def test_unknown_suite_name() -> None:
    with pytest.raises(SuiteError, match="no such suite file, and not a packaged suite"):
        load_suites(["nope"])


def test_parse_reports_the_name_it_was_given() -> None:
    with pytest.raises(SuiteError, match=r"^inline:1: "):
        parse_suite("[]", "inline")


def test_check_suite_command(tmp_path: Path, audit_cli: Callable[..., Result]) -> None:
    ok = audit_cli("check-suite", "default")
    assert ok.exit_code == 0 and "143 prompts, 14 pairs; 250 questions in en,zh" in ok.output
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + "prompts:\n  - {id: a, topic: t, text: {de: Hallo.}}\n", encoding="utf-8")
    bad = audit_cli("check-suite", str(path))
    assert bad.exit_code != 0 and f"{path}:4: $.prompts[0].text: language 'de'" in bad.output
    assert audit_cli("check-suite", "default", "--lang", "fr").exit_code != 0
