"""Account risk: the heuristics and the learned model side by side, combined by taking the larger.

A rule is a precise, explainable statement ("a third of this account's calls ask for hidden
reasoning"); the model catches combinations no rule names. Either can raise the risk; the
reasons list both, so every verdict carries evidence a human can read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from distillguard.events.model import Reason
from distillguard.features.provenance import FAKEABLE, provenance_of
from distillguard.scoring.risk_model import DISTILLER_RISK, SUSPICIOUS_RISK, RiskModel, Thresholds
from distillguard.scoring.rules import AccountRule, load_rules

FULL = "full"
CONTENT_BEHAVIOUR = "content-behaviour"
# shipped models by name: the full model reads every feature; the content-behaviour model was
# trained without metadata and request parameters (what a careful adversary copies from users)
SHIPPED_MODELS = {FULL: "", CONTENT_BEHAVIOUR: "content_behaviour"}


def model_folder(model: str | Path) -> Path | None:
    """The folder of a model given by shipped name or path (None: the package's default model)."""
    if isinstance(model, Path):
        return model
    if model not in SHIPPED_MODELS:
        raise ValueError(f"unknown model {model!r}: choose one of {sorted(SHIPPED_MODELS)} or give a folder")
    if not SHIPPED_MODELS[model]:
        return None
    return Path(str(resources.files("distillguard.scoring").joinpath("models", SHIPPED_MODELS[model])))


# Used when no model is loaded: rules alone, on the same fixed risk scale.
RULES_ONLY = Thresholds(
    distiller=DISTILLER_RISK,
    suspicious=SUSPICIOUS_RISK,
    target_fpr_distiller=0.0,
    target_fpr_suspicious=0.0,
    calibrated_on="rules only (no model)",
)


@dataclass
class AccountScorer:
    rules: list[AccountRule]
    model: RiskModel | None
    feature_names: tuple[str, ...]

    def __post_init__(self) -> None:
        index = {name: j for j, name in enumerate(self.feature_names)}
        self._index = index
        self._model_columns = np.zeros(0, dtype=int)
        if self.model is not None:
            missing = [name for name in self.model.feature_names if name not in index]
            if missing:
                raise ValueError(
                    "the risk model reads features this build does not compute "
                    f"({missing[:5]}); retrain it with `distillguard train scorer`"
                )
            self._model_columns = np.array([index[name] for name in self.model.feature_names], dtype=int)

    @classmethod
    def load(
        cls, feature_names: Sequence[str], *, with_model: bool = True, model: str | Path = FULL
    ) -> AccountScorer:
        """Rules and a model: a shipped one by name (`full`, `content-behaviour`) or a folder.

        The content-behaviour scorer also drops every rule that reads a feature of a fakeable
        provenance (metadata, request parameters), so it stands on content and behaviour alone."""
        rules = load_rules(known_features=feature_names)
        if model == CONTENT_BEHAVIOUR:
            rules = [
                rule
                for rule in rules
                if not any(provenance_of(c.feature) in FAKEABLE for c in rule.conditions)
            ]
        if not with_model:
            return cls(rules, None, tuple(feature_names))
        return cls(rules, RiskModel.load(model_folder(model)), tuple(feature_names))

    @property
    def thresholds(self) -> Thresholds:
        """Cut-offs on the risk scale (fixed; the model's calibration is folded into its scaling)."""
        if self.model is None:
            return RULES_ONLY
        calibrated = self.model.thresholds
        return Thresholds(
            distiller=DISTILLER_RISK,
            suspicious=SUSPICIOUS_RISK,
            target_fpr_distiller=calibrated.target_fpr_distiller,
            target_fpr_suspicious=calibrated.target_fpr_suspicious,
            calibrated_on=calibrated.calibrated_on,
        )

    def rule_risk(self, x: np.ndarray) -> np.ndarray:
        """The strongest firing rule's score for each row (0 where none fires)."""
        risk = np.zeros(len(x))
        for rule in self.rules:
            mask = np.ones(len(x), dtype=bool)
            for condition in rule.conditions:
                column = x[:, self._index[condition.feature]]
                mask &= condition.holds_array(column)
            risk = np.where(mask, np.maximum(risk, rule.score), risk)
        return risk

    def model_risk(self, x: np.ndarray) -> np.ndarray:
        """The model's probabilities on the risk scale (calibrated thresholds at fixed points)."""
        if self.model is None:
            return np.zeros(len(x))
        return self.model.scale(self.model.predict(x[:, self._model_columns]))

    def risk(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0)
        return np.maximum(self.rule_risk(x), self.model_risk(x))

    def reasons(self, row: np.ndarray) -> list[Reason]:
        """Why this feature vector scores as it does: firing rules, then the model's top features."""
        return self.reasons_many(row.reshape(1, -1))[0]

    def reasons_many(self, rows: np.ndarray) -> list[list[Reason]]:
        """`reasons` of each row, the model consulted once for all of them."""
        x = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        probabilities = self.model_risk(x) if self.model is not None else None
        explanations = self.model.explain_many(x[:, self._model_columns]) if self.model is not None else None
        out = []
        for i, row in enumerate(x):
            features = {name: float(row[j]) for name, j in self._index.items()}
            fired = [reason for rule in self.rules if (reason := rule.evaluate(features)) is not None]
            fired.sort(key=lambda r: -r.score)
            if probabilities is not None and explanations is not None and explanations[i]:
                probability = float(probabilities[i])
                fired.append(
                    Reason(
                        signal="model:risk",
                        score=probability,
                        detail=f"learned model gives risk {probability:.3f}; "
                        + "; ".join(r.detail for r in explanations[i]),
                    )
                )
            out.append(fired)
        return out
