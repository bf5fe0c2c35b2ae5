"""`bench signals` prints TEST numbers aggregated per signal; per-TEST-family rates only on request."""

from __future__ import annotations

import pytest

from distillguard.corpus import load_corpus
from distillguard.signals.bench import quality


@pytest.fixture(scope="module")
def reports() -> tuple[str, str]:
    corpus = load_corpus()  # the shipped sample: every split, every classifier
    return "\n".join(quality(corpus)), "\n".join(quality(corpus, final_report=True))


def test_default_report_names_no_test_family(reports: tuple[str, str]) -> None:
    default, _ = reports
    corpus = load_corpus()
    test_families = {f for f, split in corpus.families().items() if split == "test"}
    assert test_families
    assert [f for f in test_families if f in default] == []
    assert "TEST (families never seen), aggregated per signal" in default
    for name in ("cot_extraction", "grading_request", "generation_request", "reasoning_leak"):
        assert f"\n{name}" in default


def test_final_report_adds_per_test_family_rates(reports: tuple[str, str]) -> None:
    _, final = reports
    assert "FINAL REPORT: fire rate per TEST family" in final
    assert " test  POS cot:open_r1" in final
