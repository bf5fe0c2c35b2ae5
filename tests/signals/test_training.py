from __future__ import annotations

import numpy as np
import pytest

from distillguard.signals.training import threshold_at_fpr, tpr_at_threshold

NEGATIVES = np.linspace(0.0, 0.99, 100)  # 100 negatives: 0.00, 0.01, ..., 0.99


@pytest.mark.parametrize(("fpr", "above"), [(0.01, 1), (0.05, 5), (0.0, 0)])
def test_threshold_lets_through_at_most_the_allowed_negatives(fpr: float, above: int) -> None:
    threshold = threshold_at_fpr(NEGATIVES, fpr)
    assert int(np.sum(threshold <= NEGATIVES)) == above


def test_tied_negatives_are_not_split() -> None:
    negatives = np.array([0.0] * 95 + [0.9] * 5)
    threshold = threshold_at_fpr(negatives, 0.01)
    assert np.sum(negatives >= threshold) == 0  # the five tied at 0.9 exceed 1%: all stay below
    assert tpr_at_threshold(np.array([0.95, 0.9, 0.5]), threshold) == pytest.approx(1 / 3)


def test_no_negatives_is_an_error() -> None:
    with pytest.raises(ValueError, match="no negatives"):
        threshold_at_fpr(np.array([]))
