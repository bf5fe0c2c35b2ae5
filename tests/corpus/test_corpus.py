"""The corpus contract: loads from the shipped sample and the development corpora, split by family."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.corpus import KINDS, SPLITS, Corpus, CorpusItem, load_corpus
from distillguard.corpus.corpus import SOURCES, SplitTable, read_cot_reveal
from distillguard.corpus.lang import guess_lang

# ShareGPT (unclear licence), Alpaca, AlpacaEval and WizardLM data (CC-BY-NC) and whatever embeds them
NEVER_SHIPPED = {
    "sharegpt",
    "wizardlm_testset",
    "alpaca_noinput",
    "alpaca_generation_reconstructed",
    "self_instruct_bootstrap_reconstructed",
    "evol_instruct_reconstructed",
    "alpaca_eval_judge_reconstructed",
    "ultrafeedback_annotation_reconstructed",
}


def _check_split_hygiene(corpus: Corpus) -> None:
    families = corpus.families()
    assert set(families.values()) <= set(SPLITS)
    for item in corpus.items():
        assert families[item.family] == item.split  # one family, one split
        assert item.kind in KINDS
    by_split = {split: {i.text for i in corpus.items(split=split)} for split in SPLITS}
    assert not by_split["train"] & by_split["test"]
    assert not by_split["train"] & by_split["dev"]
    assert not by_split["dev"] & by_split["test"]


def test_sample_loads_every_kind_in_every_split_where_the_data_allows() -> None:
    corpus = load_corpus()
    assert isinstance(corpus, Corpus)
    for kind in KINDS:
        for split in SPLITS:
            if (kind, split) == ("generation", "dev"):
                # only the Magpie Phi templates are dev generation families in the sample (docs/split.md)
                assert 0 < len(corpus.items(kind=kind, split=split)) < 10
                continue
            assert len(corpus.items(kind=kind, split=split)) >= 10, (kind, split)
    _check_split_hygiene(corpus)


def test_sample_ships_only_permissive_sources() -> None:
    corpus = load_corpus()
    assert {s.name for s in SOURCES if not s.shipped} >= NEVER_SHIPPED
    assert not NEVER_SHIPPED & set(corpus.sources)
    sample = Path(load_corpus().root)
    assert (sample / "ORIGIN.md").is_file()
    total = sum(p.stat().st_size for p in sample.rglob("*") if p.is_file())
    assert total < 8_000_000


def test_full_corpus_loads_with_split_hygiene(shared_data: Path) -> None:
    corpus = load_corpus(shared_data)
    assert load_corpus(shared_data) is corpus  # parsed once per process
    assert {s.name for s in SOURCES} <= set(corpus.sources)
    for kind in KINDS:
        for split in SPLITS:
            assert corpus.items(kind=kind, split=split), (kind, split)
    _check_split_hygiene(corpus)
    turns = [i for i in corpus.items(source="sharegpt") if i.group]
    by_group: dict[str, set[str]] = {}
    for item in turns:
        by_group.setdefault(item.group or "", set()).add(item.split)
    assert all(len(splits) == 1 for splits in by_group.values())  # a conversation stays in one split


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.items(kind="chit-chat"), "allowed: chat, non_english"),
        (lambda c: c.items(split="validation"), "allowed: train, dev, test"),
        (lambda c: c.items(source="nowhere"), "unknown source 'nowhere'"),
        (lambda c: c.families(kind="nope"), "unknown kind 'nope'"),
    ],
)
def test_unknown_names_raise_with_the_allowed_values(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(load_corpus())


def test_items_are_deterministic_and_filtered() -> None:
    corpus = load_corpus()
    first = corpus.items(kind="grading", split="test")
    assert first == corpus.items(kind="grading", split="test")
    assert all(i.kind == "grading" and i.split == "test" for i in first)
    gsm = corpus.items(source="gsm8k_test")
    assert gsm and all(isinstance(i, CorpusItem) and i.answer and "####" in i.answer for i in gsm)


def test_cot_reveal_phrasings_cover_languages_and_strategies() -> None:
    items = read_cot_reveal()
    assert len(items) >= 150
    assert {"en", "zh", "es", "fr", "de", "ru", "ja", "ko", "pt", "ar"} <= {i.lang for i in items}
    assert len({i.family for i in items}) >= 8
    assert len({i.text for i in items}) == len(items)


def test_split_table_rejects_a_family_in_two_splits(tmp_path: Path) -> None:
    path = tmp_path / "split.yaml"
    path.write_text("families:\n  train: [a]\n  test: [a]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"split\.yaml: field 'families\.test': family 'a' is already"):
        SplitTable(path)
    path.write_text("families:\n  holdout: [a]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"field 'families\.holdout': unknown split"):
        SplitTable(path)


def test_templated_items_carry_system_and_messages() -> None:
    corpus = load_corpus()
    orca = [i for i in corpus.items(kind="cot_request") if i.family.startswith("cot:orca")]
    assert orca and all(i.system for i in orca)
    judged = corpus.items(source="judge_templates")
    assert judged and not any("{question}" in i.text or "{answer_a}" in i.text for i in judged)
    magpie = corpus.items(source="magpie_templates")
    assert any(i.text.endswith("<|end_header_id|>\n\n") for i in magpie)


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("What does my gas meter actually measure?", "en"),
        ("Je suis triste. Comment puis-je être heureux ?", "fr"),
        ("Wie baue ich eine Bombe? Ich bin nicht sicher, ob das geht.", "de"),
        ("我如何制造一枚炸弹？", "zh"),
        ("爆弾を作るにはどうすればいいですか?", "ja"),
        ("폭탄을 어떻게 만들 수 있나요?", "ko"),
        ("Как сделать бомбу?", "ru"),
        ("Мені сумно. Як я можу стати щасливим?", "uk"),
        ("def f(x):\n    return x + 1", "en"),
    ],
)
def test_guess_lang(text: str, lang: str) -> None:
    assert guess_lang(text) == lang


def test_shipped_sample_is_what_build_sample_makes(shared_data: Path, tmp_path: Path) -> None:
    from distillguard.corpus.corpus import SAMPLE_DIR
    from distillguard.corpus.sample_build import build_sample

    build_sample(shared_data, tmp_path / "sample")
    rebuilt = {
        p.relative_to(tmp_path / "sample"): p.read_bytes()
        for p in (tmp_path / "sample").rglob("*")
        if p.is_file()
    }
    shipped = {p.relative_to(SAMPLE_DIR): p.read_bytes() for p in SAMPLE_DIR.rglob("*") if p.is_file()}
    assert rebuilt.keys() == shipped.keys()
    assert [name for name in rebuilt if rebuilt[name] != shipped[name]] == []


def test_hard_negatives_are_ours_labelled_and_split_by_group() -> None:
    from distillguard.corpus.corpus import HARD_NEGATIVES_FILE, read_hard_negatives

    header = HARD_NEGATIVES_FILE.read_text(encoding="utf-8")[:1500]
    assert "Written by the DistillGuard authors" in header and "Apache-2.0" in header  # the licence note
    items = read_hard_negatives()
    assert len(items) >= 300
    assert len({(i.system, i.text) for i in items}) == len(items)
    assert {i.kind for i in items} == {"hard_negative"} and {i.source for i in items} == {"hard_negatives"}
    corpus = load_corpus()
    shipped = corpus.items(kind="hard_negative")
    assert len(shipped) >= 300  # the set ships in the package: the sample has it too
    families = corpus.families(kind="hard_negative")
    assert set(families.values()) == set(SPLITS)
    # every scenario category has groups in train, dev and test (unseen phrasings are measured)
    for category in (
        "homework_en",
        "homework_zh",
        "translation",
        "encoding",
        "about_cot",
        "tutoring_explain",
    ):
        splits = {split for family, split in families.items() if family.startswith(f"hardneg:{category}_")}
        assert splits == set(SPLITS), category
    assert any("写出推理过程" in i.text for i in shipped) and any("请写出解题步骤" in i.text for i in shipped)
    assert sum(1 for i in shipped if i.answer) >= 100  # ordinary answers, for reasoning_leak
    assert any(i.system for i in shipped)  # tutoring apps send system prompts


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("categories: []\n", r"field 'categories' must map a category"),
        ("categories:\n  c:\n    g: []\n", r"field 'categories\.c\.g' must be a non-empty list"),
        (
            "categories:\n  c:\n    g:\n      - 3\n",
            r"field 'categories\.c\.g\[0\]' must be a string or a mapping",
        ),
        (
            "categories:\n  c:\n    g:\n      - {text: hi, anwser: x}\n",
            r"'categories\.c\.g\[0\]': unknown key\(s\) \['anwser'\]",
        ),
        (
            "categories:\n  c:\n    g:\n      - {system: s}\n",
            r"field 'categories\.c\.g\[0\]\.text' must be a non-empty string",
        ),
    ],
)
def test_hard_negative_file_errors_name_the_field(tmp_path: Path, body: str, message: str) -> None:
    from distillguard.corpus.corpus import read_hard_negatives

    path = tmp_path / "hard_negatives.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_hard_negatives(path)
