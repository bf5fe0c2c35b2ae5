"""The learned account model: gradient boosting over account features, with readable reasons.

LightGBM is used because its text model format is stable across versions and platforms (a
shipped artifact keeps loading after a library upgrade, unlike a pickle), it trains in seconds
on CPU, and `pred_contrib` gives per-feature contributions (SHAP values) that become evidence.
Thresholds are calibrated on BENIGN accounts only, for a target false-positive rate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from distillguard.events.model import Reason

# The risk scale every verdict is read on: the model's calibrated thresholds are mapped onto these
# fixed points, so rules (whose scores are statements on this scale) and the model combine by max.
DISTILLER_RISK = 0.9
SUSPICIOUS_RISK = 0.6
MODEL_TEXT = "risk_model.txt"
MODEL_META = "risk_model.json"


@dataclass
class Thresholds:
    """Risk cut-offs: `distiller` is enforced on, `suspicious` goes to human review."""

    distiller: float
    suspicious: float
    target_fpr_distiller: float
    target_fpr_suspicious: float
    calibrated_on: str


def threshold_for_fpr(benign_risks: Sequence[float], target_fpr: float) -> float:
    """The smallest threshold whose false-positive rate on these benign risks is ≤ target.

    >>> t = threshold_for_fpr([0.1, 0.2, 0.3, 0.9], 0.25)  # one of four may be flagged
    >>> 0.3 < t <= 0.9
    True
    >>> threshold_for_fpr([0.1, 0.2, 0.3, 0.9], 0.0) > 0.9
    True
    """
    values = np.sort(np.asarray(benign_risks, dtype=float))[::-1]
    if len(values) == 0:
        raise ValueError("cannot calibrate a threshold without benign accounts")
    allowed = math.floor(target_fpr * len(values))  # accounts allowed at or above the threshold
    if allowed >= len(values):
        return float(values[-1])
    # flag strictly above the (allowed+1)-th highest benign risk, so ties cannot exceed the budget
    return float(np.nextafter(values[allowed], 2.0))


# Below this many rows LightGBM predicts on one thread: its OpenMP team costs ~8 ms of CPU per
# call on a 2-core machine however small the input (a cluster's pooled row, an account the gateway
# rescores), against ~0.03 ms on one thread. Rows are scored independently, so the values do not
# depend on the threads.
ONE_THREAD_BELOW = 4096


def _threads_for(rows: int) -> dict[str, int]:
    return {"num_threads": 1} if rows < ONE_THREAD_BELOW else {}


class RiskModel:
    """A LightGBM booster with its feature order and calibrated thresholds."""

    def __init__(
        self, booster: Any, feature_names: Sequence[str], thresholds: Thresholds, meta: dict[str, Any]
    ):
        self.booster = booster
        self.feature_names = list(feature_names)
        self.thresholds = thresholds
        self.meta = meta

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Risk for each row of `x` (columns in `feature_names` order)."""
        if len(x) == 0:
            return np.zeros(0)
        return np.asarray(self.booster.predict(x, **_threads_for(len(x))), dtype=float)

    def scale(self, p: np.ndarray) -> np.ndarray:
        """Model probabilities mapped monotonically onto the risk scale: the calibrated suspicious
        threshold lands on SUSPICIOUS_RISK and the distiller threshold on DISTILLER_RISK.

        >>> m = RiskModel(None, [], Thresholds(0.99, 0.9, 0.0005, 0.005, "doc"), {})
        >>> [round(float(v), 3) for v in m.scale(np.array([0.45, 0.9, 0.945, 0.99, 1.0]))]
        [0.3, 0.6, 0.75, 0.9, 1.0]
        >>> tied = RiskModel(None, [], Thresholds(0.99, 0.99, 0.0005, 0.005, "doc"), {})
        >>> [round(float(v), 3) for v in tied.scale(np.array([0.495, 0.989, 0.99, 0.995]))]
        [0.3, 0.599, 0.9, 0.95]
        """
        t_d, t_s = self.thresholds.distiller, self.thresholds.suspicious
        if not 0.0 < t_s <= t_d <= 1.0:
            raise ValueError(
                f"risk model thresholds must satisfy 0 < suspicious <= distiller <= 1: {t_s}, {t_d}"
            )
        p = np.asarray(p, dtype=float)
        low = p / t_s * SUSPICIOUS_RISK
        # equal thresholds (ties among the top benign risks) leave the model no review band
        middle = (
            SUSPICIOUS_RISK + (p - t_s) / (t_d - t_s) * (DISTILLER_RISK - SUSPICIOUS_RISK)
            if t_d > t_s
            else low
        )
        high = (
            DISTILLER_RISK + (p - t_d) / (1.0 - t_d) * (1.0 - DISTILLER_RISK)
            if t_d < 1.0
            else np.full_like(p, DISTILLER_RISK)
        )
        scaled: np.ndarray = np.where(p < t_s, low, np.where(p < t_d, middle, high))
        return np.clip(scaled, 0.0, 1.0)

    def explain(self, row: np.ndarray, top: int = 3) -> list[Reason]:
        """The features that pushed this account's risk up most, as reasons."""
        return self.explain_many(row.reshape(1, -1), top)[0]

    def explain_many(self, rows: np.ndarray, top: int = 3) -> list[list[Reason]]:
        """`explain` of each row, with one call into the booster (a call costs ~1 ms on its own)."""
        if len(rows) == 0:
            return []
        contributions = np.asarray(self.booster.predict(rows, pred_contrib=True, **_threads_for(len(rows))))[
            :, :-1
        ]
        return [self._reasons(row, c, top) for row, c in zip(rows, contributions, strict=True)]

    def _reasons(self, row: np.ndarray, contributions: np.ndarray, top: int) -> list[Reason]:
        order = np.argsort(-contributions)[:top]
        reasons = []
        for j in order:
            if contributions[j] <= 0:
                break
            name = self.feature_names[j]
            reasons.append(
                Reason(
                    signal=f"model:{name}",
                    score=float(min(1.0, contributions[j] / 10.0)),
                    detail=f"{name}={row[j]:.3g} raised the model's log-odds by {contributions[j]:.2f}",
                )
            )
        return reasons

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / MODEL_TEXT))
        meta = dict(self.meta)
        meta["feature_names"] = self.feature_names
        meta["thresholds"] = self.thresholds.__dict__
        (directory / MODEL_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path | None = None) -> RiskModel:
        import lightgbm

        if directory is None:
            base = resources.files("distillguard.scoring").joinpath("models")
            text = base.joinpath(MODEL_TEXT).read_text(encoding="utf-8")
            meta = json.loads(base.joinpath(MODEL_META).read_text(encoding="utf-8"))
        else:
            text = (directory / MODEL_TEXT).read_text(encoding="utf-8")
            meta = json.loads((directory / MODEL_META).read_text(encoding="utf-8"))
        booster = lightgbm.Booster(model_str=text)
        thresholds = Thresholds(**meta["thresholds"])
        return cls(booster, meta["feature_names"], thresholds, meta)


def train_risk_model(
    x: np.ndarray,
    labels: Sequence[int],
    feature_names: Sequence[str],
    *,
    weights: np.ndarray | None = None,
    seed: int = 7,
) -> Any:
    """A LightGBM booster fitted on feature rows with 0/1 labels; deterministic for a seed."""
    import lightgbm

    y = np.asarray(labels, dtype=float)
    params = {
        "objective": "binary",
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 2,
        "verbosity": -1,
    }
    dataset = lightgbm.Dataset(
        x, label=y, weight=weights, feature_name=list(feature_names), free_raw_data=True
    )
    return lightgbm.train(params, dataset, num_boost_round=300)
