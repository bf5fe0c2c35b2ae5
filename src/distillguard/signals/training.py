"""Training of the prompt classifiers from the development corpora: `distillguard train signals`.

Each classifier learns its positive kinds against every other kind, on the TRAIN template
families only; the dev families choose the regularisation and the shipped threshold (at most 1% of
dev negatives above it, and at most 5% of any benign dev population). Test families are never read here: `distillguard bench
signals` measures on them.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from distillguard.events.call_view import CallView, request_parts
from distillguard.signals.rules_and_model import prompt_text
from distillguard.signals.text_model import MODELS_DIR, TextClassifier, feature_matrix

if TYPE_CHECKING:
    from distillguard.corpus import Corpus, CorpusItem

# classifier -> the corpus kinds it must recognise; every other kind is a negative
TARGETS: dict[str, tuple[str, ...]] = {
    "cot_extraction": ("cot_request", "cot_reveal"),
    "grading_request": ("grading",),
    "generation_request": ("generation",),
}
REGULARISATION = (0.3, 1.0, 3.0, 10.0)  # inverse strengths tried; dev TPR at 1% FPR picks one
TARGET_FPR = 0.01
# ... and at most this share of any one benign population (a dev family of a benign kind with at
# least POPULATION_MIN items): a threshold that is 1% overall can still flag a quarter of a small
# population such as non-English users, which the overall rate hides.
POPULATION_FPR = 0.05
POPULATION_MIN = 20
BENIGN_KINDS = ("chat", "non_english", "roleplay_system", "eval_question", "redteam", "bare_question")
# Items kept per template family (a fixed-seed sample): beyond a few thousand fillings a family adds
# memory, not information, and family weights would discount them anyway.
FAMILY_CAP = 3000
CHUNK = 4000  # texts hashed at a time, to bound memory
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def call_of_item(item: CorpusItem) -> CallView:
    """The call a client would have sent for a corpus item, through the same extraction as live traffic."""
    if item.messages:
        messages = [dict(m) for m in item.messages]
    else:
        messages = ([{"role": "system", "content": item.system}] if item.system else []) + [
            {"role": "user", "content": item.text}
        ]
    return CallView(
        event_id="corpus", ts=_EPOCH, account_id=item.family, **request_parts({"messages": messages})
    )


def texts_of(items: Sequence[CorpusItem]) -> list[str]:
    return [prompt_text(call_of_item(item)) for item in items]


def capped(items: Sequence[CorpusItem], cap: int = FAMILY_CAP) -> list[CorpusItem]:
    """At most `cap` items per family, the same ones on every run."""
    by_family: dict[str, list[CorpusItem]] = {}
    for item in items:
        by_family.setdefault(item.family, []).append(item)
    kept: list[CorpusItem] = []
    for family in sorted(by_family):
        members = by_family[family]
        if len(members) > cap:
            members = random.Random(family).sample(members, cap)
        kept.extend(members)
    return kept


def matrix_of(items: Sequence[CorpusItem]) -> Any:
    from scipy.sparse import vstack

    texts = texts_of(items)
    return vstack([feature_matrix(texts[i : i + CHUNK]) for i in range(0, len(texts), CHUNK)], format="csr")


def threshold_at_fpr(negative_scores: np.ndarray, fpr: float = TARGET_FPR) -> float:
    """The lowest threshold t such that at most `fpr` of the negatives score >= t."""
    if negative_scores.size == 0:
        raise ValueError("no negatives to set a threshold on")
    ordered = np.sort(negative_scores)[::-1]
    allowed = int(np.floor(fpr * ordered.size))  # negatives allowed at or above the threshold
    # strictly above the (allowed+1)-th highest negative
    return float(np.nextafter(ordered[allowed], np.inf)) if allowed < ordered.size else float(ordered[-1])


def dev_threshold(scores: np.ndarray, items: Sequence[CorpusItem], negative: np.ndarray) -> float:
    """At most TARGET_FPR of all negatives, and at most POPULATION_FPR of every benign family."""
    threshold = threshold_at_fpr(scores[negative])
    families: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if negative[i] and item.kind in BENIGN_KINDS:
            families.setdefault(item.family, []).append(i)
    for members in families.values():
        if len(members) >= POPULATION_MIN:
            threshold = max(threshold, threshold_at_fpr(scores[members], POPULATION_FPR))
    return threshold


def tpr_at_threshold(positive_scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(positive_scores >= threshold)) if positive_scores.size else float("nan")


def family_weights(items: Sequence[CorpusItem], labels: np.ndarray) -> np.ndarray:
    """Sample weights: 1/sqrt(family size), then each class summing to the same total, so one large
    family (48k ShareGPT turns) does not drown a 500-row template family."""
    sizes = Counter(item.family for item in items)
    weights = np.array([1.0 / np.sqrt(sizes[item.family]) for item in items], dtype=np.float64)
    for label in (0, 1):
        mask = labels == label
        if mask.any():
            weights[mask] *= mask.sum() / weights[mask].sum()
    return weights


@dataclass(frozen=True)
class TrainingReport:
    name: str
    regularisation: float
    threshold: float
    dev_tpr: float
    train_positives: int
    train_negatives: int
    dev_positives: int
    dev_negatives: int
    nonzero_weights: int


def train_one(name: str, corpus: Corpus, log: Any = print) -> tuple[TextClassifier, TrainingReport]:
    from sklearn.linear_model import LogisticRegression

    positive_kinds = TARGETS[name]
    train = capped(corpus.items(split="train"))
    dev = capped(corpus.items(split="dev"))
    y_train = np.array([item.kind in positive_kinds for item in train], dtype=np.int8)
    y_dev = np.array([item.kind in positive_kinds for item in dev], dtype=np.int8)
    for split, labels in (("train", y_train), ("dev", y_dev)):
        if labels.sum() == 0 or labels.sum() == labels.size:
            raise ValueError(
                f"{name}: the {split} split needs both positives ({positive_kinds}) and negatives"
            )
    x_train = matrix_of(train)
    x_dev = matrix_of(dev)
    weights = family_weights(train, y_train)
    best: tuple[float, float, float, Any] | None = None
    for c in REGULARISATION:
        model = LogisticRegression(C=c, solver="liblinear", max_iter=2000)
        model.fit(x_train, y_train, sample_weight=weights)
        dev_scores = model.predict_proba(x_dev)[:, 1]
        threshold = dev_threshold(dev_scores, dev, y_dev == 0)
        tpr = tpr_at_threshold(dev_scores[y_dev == 1], threshold)
        log(f"  {name}: C={c:<5} dev TPR {tpr:.3f} at threshold {threshold:.4f}")
        if best is None or tpr > best[0] + 1e-9:
            best = (tpr, c, threshold, model)
    assert best is not None
    tpr, c, threshold, model = best
    coef = model.coef_[0].astype(np.float32)
    report = TrainingReport(
        name=name,
        regularisation=c,
        threshold=threshold,
        dev_tpr=tpr,
        train_positives=int(y_train.sum()),
        train_negatives=int(y_train.size - y_train.sum()),
        dev_positives=int(y_dev.sum()),
        dev_negatives=int(y_dev.size - y_dev.sum()),
        nonzero_weights=int(np.count_nonzero(coef)),
    )
    classifier = TextClassifier(
        name=name,
        coef=coef,
        intercept=float(model.intercept_[0]),
        threshold=threshold,
        metadata={
            "positive_kinds": list(positive_kinds),
            "regularisation": c,
            "family_cap": FAMILY_CAP,
            "dev_tpr_at_threshold": round(tpr, 4),
            "threshold_rule": f"<= {TARGET_FPR} of dev negatives and <= {POPULATION_FPR} of every benign dev "
            f"family with >= {POPULATION_MIN} items",
            "train_families": sorted({i.family for i in train}),
            "dev_families": sorted({i.family for i in dev}),
            "counts": {
                "train_positives": report.train_positives,
                "train_negatives": report.train_negatives,
                "dev_positives": report.dev_positives,
                "dev_negatives": report.dev_negatives,
            },
        },
    )
    return classifier, report


def train_signals(
    corpus_root: Path, out: Path, names: Sequence[str] = tuple(TARGETS)
) -> list[TrainingReport]:
    from distillguard.corpus import load_corpus

    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise click.BadParameter(f"unknown classifier(s) {unknown}; known: {', '.join(TARGETS)}")
    corpus = load_corpus(corpus_root)
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for name in names:
        started = time.perf_counter()
        classifier, report = train_one(name, corpus, log=click.echo)
        path = out / f"{name}.npz"
        classifier.save(path)
        click.echo(
            f"{name}: C={report.regularisation} dev TPR {report.dev_tpr:.3f} at threshold "
            f"{report.threshold:.4f}, {report.nonzero_weights} weights, {path.stat().st_size / 1e6:.2f} MB "
            f"-> {path} ({time.perf_counter() - started:.0f} s)"
        )
        reports.append(report)
    return reports


@click.group()
def train() -> None:
    """Train the shipped models from the development corpora."""


@train.command("signals")
@click.option(
    "--corpus",
    "corpus_root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Development corpora (../shared/data).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=MODELS_DIR,
    show_default=True,
    help="Where the .npz artifacts go.",
)
@click.option("--only", multiple=True, help="Train only these classifiers (repeatable).")
def train_signals_command(corpus_root: Path, out: Path, only: tuple[str, ...]) -> None:
    """Prompt classifiers (cot_extraction, grading_request, generation_request) on TRAIN families,
    thresholds on DEV families."""
    train_signals(corpus_root, out, only or tuple(TARGETS))
