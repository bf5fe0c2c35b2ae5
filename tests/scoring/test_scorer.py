"""The shipped scorers by name: the content-behaviour one reads no fakeable feature, through its
model or its rules."""

from __future__ import annotations

import pytest

from distillguard.features.provenance import FAKEABLE, provenance_of
from distillguard.scan.replay import FEATURES
from distillguard.scoring.scorer import AccountScorer


def test_content_behaviour_scorer_reads_no_metadata_or_request_parameters() -> None:
    scorer = AccountScorer.load(FEATURES, model="content-behaviour")
    assert scorer.model is not None
    assert all(provenance_of(name) not in FAKEABLE for name in scorer.model.feature_names)
    read_by_rules = {c.feature for rule in scorer.rules for c in rule.conditions}
    assert all(provenance_of(name) not in FAKEABLE for name in read_by_rules)
    full = AccountScorer.load(FEATURES, model="full")
    # the logit-probe rule reads request parameters: kept in the full scorer only
    assert {r.id for r in full.rules} - {r.id for r in scorer.rules} == {"DG-A004"}


def test_shipped_models_keep_a_review_band() -> None:
    for name in ("full", "content-behaviour"):
        thresholds = AccountScorer.load(FEATURES, model=name).model.thresholds  # type: ignore[union-attr]
        assert thresholds.suspicious < thresholds.distiller, name


def test_unknown_model_name_is_an_error_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="content-behaviour"):
        AccountScorer.load(FEATURES, model="fancy")
