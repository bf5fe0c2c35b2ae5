"""Every account feature has one declared provenance; the fakeable ones can be left out."""

from __future__ import annotations

import pytest

from distillguard.features import feature_names
from distillguard.features.catalog import ACCOUNT_SIGNALS, FEATURES, Feature
from distillguard.features.provenance import (
    FAKEABLE,
    PROVENANCES,
    UnknownFeature,
    provenance_of,
    without,
)


def test_every_feature_the_build_computes_has_a_provenance() -> None:
    assert tuple(feature_names(ACCOUNT_SIGNALS)) == FEATURES
    tags = {name: provenance_of(name) for name in FEATURES}
    assert set(tags.values()) == set(PROVENANCES)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("top_ip_share", "metadata"),
        ("distinct_user_agents", "metadata"),
        ("router_share", "metadata"),
        ("n_multi_share", "request_params"),
        ("temperature_mean", "request_params"),
        ("logit_probe_fire_rate", "request_params"),
        ("reasoning_returned_share", "request_params"),
        ("grading_request_fire_rate", "content"),
        ("cot_extraction.reveal_hidden_mean", "content"),
        ("topic_novelty", "content"),
        ("gap_cv", "behaviour"),
        ("template_refill_share", "behaviour"),
    ],
)
def test_provenance_table(name: str, expected: str) -> None:
    assert provenance_of(name) == expected


def test_undeclared_feature_is_an_error_naming_it() -> None:
    with pytest.raises(UnknownFeature, match="brand_new_feature"):
        provenance_of("brand_new_feature")


def test_content_behaviour_features_leave_out_every_fakeable_one() -> None:
    kept = without(FEATURES, FAKEABLE)
    assert kept and all(provenance_of(n) not in FAKEABLE for n in kept)
    assert "top_ip_share" not in kept and "response_chars_mean" in kept
    with pytest.raises(ValueError, match="unknown provenance"):
        without(FEATURES, ["network"])


def test_a_declaration_without_a_known_provenance_does_not_construct() -> None:
    with pytest.raises(ValueError, match=r"new_feature.*provenance 'network'"):
        Feature("new_feature", "network", lambda s: 0.0)
