"""Training of the text classifiers from the development corpora: `distillguard train signals`.

Prompt classifiers (cot_extraction, grading_request, generation_request) learn their positive kinds
against every other kind, hard negatives included; the answer classifier of reasoning_leak learns
real reasoning (FLAN rationales, GSM8K and MATH-style worked solutions, s1K traces) against
ordinary answers. All fit on the TRAIN template families only. DEV families choose the
hyperparameters and the shipped threshold of the signal's COMBINED score (rules or model): at
most 1% of dev negatives fire, at most 5% of any benign dev population, and the rules' own false
positives count against that budget. TEST families are never read here: `distillguard bench
signals` measures on them.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from distillguard.corpus.items import CorpusItem
from distillguard.events.call_view import CallView, request_parts
from distillguard.signals.rules_and_model import prompt_text
from distillguard.signals.text_model import MODELS_DIR, TextClassifier, feature_matrix

if TYPE_CHECKING:
    from distillguard.corpus import Corpus

# prompt classifier -> the corpus kinds it must recognise; every other kind is a negative
TARGETS: dict[str, tuple[str, ...]] = {
    "cot_extraction": ("cot_request", "cot_reveal"),
    "grading_request": ("grading",),
    "generation_request": ("generation",),
}
EMBEDDED_OUTPUTS_SOURCE = "judge_request_outputs"
# reasoning_leak's trace classifier reads answers: real reasoning vs ordinary answers, by source
REASONING_SOURCES = frozenset(
    {f"flan_{n}" for n in ("aqua", "creak", "ecqa", "gsm8k", "qasc", "sensemaking", "strategyqa")}
    | {"gsm8k_train", "gsm8k_test", "minerva_math", "aime24", "amc23", "s1k_fixture"}
)
ORDINARY_SOURCES = frozenset(
    {"self_instruct_seed", "self_instruct_user_oriented", "hard_negatives", EMBEDDED_OUTPUTS_SOURCE}
)
ANSWER_TARGET = "reasoning_leak"
CLASSIFIERS = (*TARGETS, ANSWER_TARGET)

REGULARISATION = (0.3, 1.0, 3.0, 10.0)  # inverse strengths tried; dev TPR at the dev threshold picks one
# how much more a hard-negative family weighs than its size alone gives it; chosen on dev too
HARD_NEGATIVE_WEIGHTS = (1.0, 4.0)
TARGET_FPR = 0.01
# A threshold sits this far above the last dev negative it must exclude: the service scores in
# float32 (the shifted score of that negative would otherwise round to exactly 0.5 and fire).
THRESHOLD_MARGIN = 1e-6
# ... and at most this share of any one benign population (a dev family of a benign kind with at
# least POPULATION_MIN items, and the dev hard negatives pooled, whose groups are small): a threshold
# that is 1% overall can still flag a quarter of a small population such as non-English users.
POPULATION_FPR = 0.05
POPULATION_MIN = 20
BENIGN_KINDS = (
    "chat",
    "non_english",
    "roleplay_system",
    "eval_question",
    "redteam",
    "bare_question",
    "hard_negative",
)
POOLED_KINDS = ("hard_negative",)
FIRES_AT = 0.5  # the account stage counts a signal as fired at this score
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


def answered_call(item: CorpusItem) -> CallView:
    """The call with the item's answer as the visible response (what reasoning_leak reads)."""
    call = call_of_item(item)
    call.response_text = item.answer or ""
    return call


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


# AlpacaEval's evaluator requests embed the real outputs of chat models to everyday instructions
# ("output": """...""" per model): ordinary answers, by the thousand, in a TRAIN family.
_EMBEDDED_OUTPUT = re.compile(r'"output": """(.*?)"""', re.DOTALL)


def embedded_outputs(items: Sequence[CorpusItem]) -> list[CorpusItem]:
    """The model outputs inside judge requests, as answer items of the same family and split."""
    found: list[CorpusItem] = []
    seen: set[str] = set()
    for item in items:
        if item.kind != "grading":
            continue
        for output in _EMBEDDED_OUTPUT.findall(item.text):
            output = output.strip()
            if output and output not in seen:
                seen.add(output)
                found.append(
                    CorpusItem(
                        text=item.text[:200],
                        answer=output,
                        source=EMBEDDED_OUTPUTS_SOURCE,
                        family=item.family,
                        kind=item.kind,
                        split=item.split,
                        lang=item.lang,
                    )
                )
    return found


def answer_items(items: Sequence[CorpusItem]) -> list[CorpusItem]:
    """Items whose answer is labelled: real reasoning or an ordinary answer, long enough to hold
    reasoning (reasoning_leak reads no shorter answer with its classifier)."""
    from distillguard.signals.reasoning_leak import MIN_TRACE_CHARS, answer_text

    return [
        item
        for item in [*items, *embedded_outputs(items)]
        if item.answer
        and item.source in REASONING_SOURCES | ORDINARY_SOURCES
        and len(answer_text(item.answer)) >= MIN_TRACE_CHARS
    ]


@dataclass(frozen=True)
class Target:
    """What one classifier learns: which items, their labels, the text it reads, and its rules."""

    name: str
    select: Callable[[Sequence[CorpusItem]], list[CorpusItem]]
    positive: Callable[[CorpusItem], bool]
    text: Callable[[Sequence[CorpusItem]], list[str]]
    rule_scores: Callable[[Sequence[CorpusItem]], np.ndarray]


def _prompt_rule_scores(name: str) -> Callable[[Sequence[CorpusItem]], np.ndarray]:
    def scores(items: Sequence[CorpusItem]) -> np.ndarray:
        from distillguard.signals import registry

        signal = registry.signal_class(name)(mode="rules")  # type: ignore[call-arg]
        results = signal.analyze_many([call_of_item(i) for i in items])
        return np.array([r.score if r is not None else 0.0 for r in results])

    return scores


def _answer_texts(items: Sequence[CorpusItem]) -> list[str]:
    from distillguard.signals.patterns import head_and_tail
    from distillguard.signals.reasoning_leak import answer_text

    return [answer_text(head_and_tail(item.answer or "")) for item in items]


def _answer_rule_scores(items: Sequence[CorpusItem]) -> np.ndarray:
    from distillguard.signals.reasoning_leak import ReasoningLeak

    results = ReasoningLeak(mode="rules").analyze_many([answered_call(i) for i in items])
    return np.array([r.score if r is not None else 0.0 for r in results])


def target(name: str) -> Target:
    if name == ANSWER_TARGET:
        return Target(
            name=name,
            select=answer_items,
            positive=lambda item: item.source in REASONING_SOURCES,
            text=_answer_texts,
            rule_scores=_answer_rule_scores,
        )
    kinds = TARGETS[name]
    return Target(
        name=name,
        select=list,
        positive=lambda item: item.kind in kinds,
        text=texts_of,
        rule_scores=_prompt_rule_scores(name),
    )


def matrix_of(texts: Sequence[str]) -> Any:
    from scipy.sparse import vstack

    return vstack(
        [feature_matrix(list(texts[i : i + CHUNK])) for i in range(0, len(texts), CHUNK)], format="csr"
    )


def threshold_at_fpr(negative_scores: np.ndarray, fpr: float = TARGET_FPR, already: int = 0) -> float:
    """The lowest threshold t such that at most `fpr` of the negatives score >= t, when `already`
    of them fire anyway (through the rules) and are not in `negative_scores`."""
    total = negative_scores.size + already
    if total == 0:
        raise ValueError("no negatives to set a threshold on")
    allowed = int(np.floor(fpr * total)) - already  # negatives the model may add
    if negative_scores.size == 0:
        return 0.5
    ordered = np.sort(negative_scores)[::-1]
    if allowed < 0:
        return float(ordered[0]) + THRESHOLD_MARGIN  # the rules spend the budget: the model adds none
    # above the (allowed+1)-th highest negative
    return float(ordered[allowed]) + THRESHOLD_MARGIN if allowed < ordered.size else float(ordered[-1])


def populations(items: Sequence[CorpusItem], negative: np.ndarray) -> dict[str, list[int]]:
    """Benign populations of a split: each benign family with enough items, and pooled kinds."""
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if negative[i] and item.kind in BENIGN_KINDS:
            key = f"kind:{item.kind}" if item.kind in POOLED_KINDS else item.family
            groups.setdefault(key, []).append(i)
    return {key: members for key, members in groups.items() if len(members) >= POPULATION_MIN}


def dev_threshold(
    scores: np.ndarray,
    items: Sequence[CorpusItem],
    negative: np.ndarray,
    rule_fires: np.ndarray | None = None,
) -> float:
    """At most TARGET_FPR of all negatives and POPULATION_FPR of every benign population fire,
    counting those the rules already fire on (`rule_fires`) against the budget."""
    fires = np.zeros(len(items), dtype=bool) if rule_fires is None else rule_fires
    free = negative & ~fires
    threshold = threshold_at_fpr(scores[free], TARGET_FPR, int(np.sum(negative & fires)))
    for members in populations(items, negative).values():
        index = np.array(members)
        open_ = index[~fires[index]]
        threshold = max(threshold, threshold_at_fpr(scores[open_], POPULATION_FPR, int(np.sum(fires[index]))))
    return threshold


def tpr_at_threshold(positive_scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(positive_scores >= threshold)) if positive_scores.size else float("nan")


def family_weights(items: Sequence[CorpusItem], labels: np.ndarray, hard_negative: float = 1.0) -> np.ndarray:
    """Sample weights: 1/sqrt(family size) (times `hard_negative` for hard-negative families), then
    each class summing to the same total, so one large family (48k ShareGPT turns) does not drown a
    500-row template family."""
    sizes = Counter(item.family for item in items)
    weights = np.array([1.0 / np.sqrt(sizes[item.family]) for item in items], dtype=np.float64)
    weights *= np.array([hard_negative if item.kind == "hard_negative" else 1.0 for item in items])
    for label in (0, 1):
        mask = labels == label
        if mask.any():
            weights[mask] *= mask.sum() / weights[mask].sum()
    return weights


@dataclass(frozen=True)
class TrainingReport:
    name: str
    regularisation: float
    hard_negative_weight: float
    threshold: float
    dev_tpr: float
    dev_fpr: float
    train_positives: int
    train_negatives: int
    dev_positives: int
    dev_negatives: int
    nonzero_weights: int


def train_one(name: str, corpus: Corpus, log: Any = print) -> tuple[TextClassifier, TrainingReport]:
    from sklearn.linear_model import LogisticRegression

    goal = target(name)
    train = capped(goal.select(corpus.items(split="train")))
    dev = capped(goal.select(corpus.items(split="dev")))
    y_train = np.array([goal.positive(item) for item in train], dtype=np.int8)
    y_dev = np.array([goal.positive(item) for item in dev], dtype=np.int8)
    for split, labels in (("train", y_train), ("dev", y_dev)):
        if labels.sum() == 0 or labels.sum() == labels.size:
            raise ValueError(f"{name}: the {split} split needs both positives and negatives")
    x_train = matrix_of(goal.text(train))
    dev_texts = goal.text(dev)
    negative = y_dev == 0
    rule_fires = goal.rule_scores(dev) >= FIRES_AT
    best: tuple[float, float, float, float, TextClassifier] | None = None
    best_fpr = 0.0
    for weight in HARD_NEGATIVE_WEIGHTS:
        weights = family_weights(train, y_train, weight)
        for c in REGULARISATION:
            model = LogisticRegression(C=c, solver="liblinear", max_iter=2000)
            model.fit(x_train, y_train, sample_weight=weights)
            # the threshold is set on the artifact as it ships (float16 weights, the serving code's
            # hashing and sums), not on scikit-learn's float64 scores: a threshold set a hair above
            # a dev negative must stay above it
            shipped = TextClassifier(name, model.coef_[0].astype(np.float16), float(model.intercept_[0]), 0.5)
            dev_scores = np.concatenate(
                [shipped.probabilities(dev_texts[i : i + CHUNK]) for i in range(0, len(dev_texts), CHUNK)]
            ).astype(np.float64)
            threshold = dev_threshold(dev_scores, dev, negative, rule_fires)
            fires = rule_fires | (dev_scores >= threshold)
            tpr = float(np.mean(fires[~negative]))
            log(
                f"  {name}: hard-negative weight {weight:g}, C={c:<5} dev TPR {tpr:.3f} "
                f"(FPR {np.mean(fires[negative]):.4f}) at threshold {threshold:.4f}"
            )
            if best is None or tpr > best[0] + 1e-9:
                best = (tpr, c, weight, threshold, shipped)
                best_fpr = float(np.mean(fires[negative]))
    assert best is not None
    tpr, c, weight, threshold, shipped = best
    coef = shipped.coef
    dev_fpr = best_fpr
    report = TrainingReport(
        name=name,
        regularisation=c,
        hard_negative_weight=weight,
        threshold=threshold,
        dev_tpr=tpr,
        dev_fpr=dev_fpr,
        train_positives=int(y_train.sum()),
        train_negatives=int(y_train.size - y_train.sum()),
        dev_positives=int(y_dev.sum()),
        dev_negatives=int(y_dev.size - y_dev.sum()),
        nonzero_weights=int(np.count_nonzero(coef)),
    )
    classifier = TextClassifier(
        name=name,
        coef=coef,
        intercept=shipped.intercept,
        threshold=threshold,
        metadata={
            "reads": "answer" if name == ANSWER_TARGET else "prompt",
            "positive": sorted(REASONING_SOURCES) if name == ANSWER_TARGET else list(TARGETS[name]),
            "regularisation": c,
            "hard_negative_weight": weight,
            "family_cap": FAMILY_CAP,
            "dev_tpr_at_threshold": round(tpr, 4),
            "dev_fpr_at_threshold": round(dev_fpr, 4),
            "threshold_rule": f"rules or model fire on <= {TARGET_FPR} of dev negatives and <= {POPULATION_FPR} "
            f"of every benign dev population with >= {POPULATION_MIN} items",
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


def train_signals(corpus_root: Path, out: Path, names: Sequence[str] = CLASSIFIERS) -> list[TrainingReport]:
    from distillguard.corpus import load_corpus

    unknown = [n for n in names if n not in CLASSIFIERS]
    if unknown:
        raise click.BadParameter(f"unknown classifier(s) {unknown}; known: {', '.join(CLASSIFIERS)}")
    corpus = load_corpus(corpus_root)
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for name in names:
        started = time.perf_counter()
        classifier, report = train_one(name, corpus, log=click.echo)
        path = out / f"{name}.npz"
        classifier.save(path)
        click.echo(
            f"{name}: C={report.regularisation} hard-negative weight {report.hard_negative_weight:g} "
            f"dev TPR {report.dev_tpr:.3f} FPR {report.dev_fpr:.4f} at threshold {report.threshold:.4f}, "
            f"{report.nonzero_weights} weights, {path.stat().st_size / 1e6:.2f} MB -> {path} "
            f"({time.perf_counter() - started:.0f} s)"
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
    """Prompt classifiers (cot_extraction, grading_request, generation_request) and reasoning_leak's
    answer classifier on TRAIN families; hyperparameters and thresholds on DEV families."""
    train_signals(corpus_root, out, only or CLASSIFIERS)
