"""The learned account model: threshold calibration, training, reasons, and a stable artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distillguard.scoring.risk_model import RiskModel, Thresholds, threshold_for_fpr, train_risk_model


@pytest.mark.parametrize(
    ("benign", "fpr", "flagged_at_most"),
    [
        ([0.1] * 999 + [0.99], 0.001, 1),
        ([0.1] * 999 + [0.99], 0.0, 0),
        ([0.5] * 10, 0.1, 0),  # ties cannot push the rate over budget
        (list(np.linspace(0, 1, 2000)), 0.005, 10),
    ],
)
def test_threshold_keeps_benign_false_positives_within_budget(
    benign: list[float], fpr: float, flagged_at_most: int
) -> None:
    t = threshold_for_fpr(benign, fpr)
    assert sum(r >= t for r in benign) <= flagged_at_most


def test_threshold_needs_benign_accounts() -> None:
    with pytest.raises(ValueError, match="benign"):
        threshold_for_fpr([], 0.01)


def test_model_learns_separates_explains_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = ["reveal_rate", "noise"]
    x = rng.random((600, 2))
    y = (x[:, 0] > 0.6).astype(float)
    booster = train_risk_model(x, y.tolist(), names)
    model = RiskModel(booster, names, Thresholds(0.5, 0.3, 0.001, 0.01, "test"), {"note": "unit test"})
    probabilities = model.predict(np.array([[0.95, 0.5], [0.05, 0.5]]))
    assert probabilities[0] > 0.9 > 0.1 > probabilities[1]
    (reason,) = model.explain(np.array([0.95, 0.5]), top=1)
    assert reason.signal == "model:reveal_rate" and "reveal_rate=0.95" in reason.detail
    model.save(tmp_path)
    again = RiskModel.load(tmp_path)
    assert again.feature_names == names and again.thresholds.distiller == 0.5
    assert np.allclose(again.predict(np.array([[0.95, 0.5]])), probabilities[:1])


def test_small_inputs_predict_on_one_thread_with_the_same_values() -> None:
    from distillguard.scoring import risk_model

    rng = np.random.default_rng(3)
    x = rng.random((400, 4))
    booster = train_risk_model(x, (x[:, 0] + x[:, 1] > 1.0).astype(int).tolist(), ["a", "b", "c", "d"])
    calls: list[dict[str, object]] = []

    class Recording:
        def predict(self, rows, **params):
            calls.append({k: v for k, v in params.items() if k == "num_threads"})
            return booster.predict(rows, **params)

    model = RiskModel(Recording(), ["a", "b", "c", "d"], None, {})  # type: ignore[arg-type]
    assert np.array_equal(model.predict(x[:1]), booster.predict(x[:1]))  # all threads
    assert np.array_equal(model.predict(x), booster.predict(x))
    large = np.repeat(x, risk_model.ONE_THREAD_BELOW // len(x) + 1, axis=0)
    assert np.array_equal(model.predict(large), booster.predict(large))
    assert calls == [{"num_threads": 1}, {"num_threads": 1}, {}]
