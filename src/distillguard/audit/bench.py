"""`distillguard bench audit`: precision and recall of the audit classifiers on the project's
labelled answers, per language and split (TEST measures; TRAIN is what the lexicon was tuned on)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from distillguard.audit.classify import (
    HedgingClassifier,
    RefusalClassifier,
    SubjectSentimentClassifier,
    WhataboutismClassifier,
    mark_sentences,
)
from distillguard.audit.labelled import LabelledAnswer, load_labelled


@dataclass(frozen=True, slots=True)
class Predicted:
    answer: LabelledAnswer
    refusal: str
    hedged: bool
    sentiment: str
    whatabout: bool


def predict(answers: Sequence[LabelledAnswer]) -> tuple[list[Predicted], float]:
    """Run every classifier on every answer; returns the predictions and answers per second."""
    refusal, hedging = RefusalClassifier(), HedgingClassifier()
    sentiment, whatabout = SubjectSentimentClassifier(), WhataboutismClassifier()
    refusal.lex  # noqa: B018 - parse the lexicon before the clock starts
    started = time.perf_counter()
    out = []
    for answer in answers:
        marks = mark_sentences(answer.text)
        out.append(
            Predicted(
                answer,
                refusal=refusal.analyze(answer.text, marks).label,
                hedged=hedging.analyze(answer.text, marks).label == "hedged",
                sentiment=sentiment.analyze(answer.text, answer.subject_terms, marks=marks).label,
                whatabout=whatabout.analyze(answer.text, answer.subject_terms, marks=marks).label == "yes",
            )
        )
    elapsed = time.perf_counter() - started
    return out, len(answers) / elapsed if elapsed > 0 else float("inf")


# (classifier, class): (truth, prediction) as booleans
TASKS: dict[tuple[str, str], Callable[[Predicted], tuple[bool, bool]]] = {
    ("refusal", "refused"): lambda p: (p.answer.refusal != "none", p.refusal != "none"),
    ("refusal", "explicit"): lambda p: (p.answer.refusal == "explicit", p.refusal == "explicit"),
    ("refusal", "deflection"): lambda p: (p.answer.refusal == "deflection", p.refusal == "deflection"),
    ("refusal", "change_of_subject"): lambda p: (
        p.answer.refusal == "change_of_subject",
        p.refusal == "change_of_subject",
    ),
    ("hedging", "hedged"): lambda p: (p.answer.hedged, p.hedged),
    ("sentiment", "positive"): lambda p: (p.answer.sentiment == "positive", p.sentiment == "positive"),
    ("sentiment", "negative"): lambda p: (p.answer.sentiment == "negative", p.sentiment == "negative"),
    ("whataboutism", "yes"): lambda p: (p.answer.whatabout, p.whatabout),
}


def score(predictions: Sequence[Predicted]) -> list[dict[str, Any]]:
    """Precision and recall per (classifier, class, split, language), and over both languages."""
    rows: list[dict[str, Any]] = []
    for (classifier, label), task in TASKS.items():
        for split in ("test", "train"):
            for lang in ("en", "zh", "all"):
                chosen = [
                    p for p in predictions if p.answer.split == split and lang in ("all", p.answer.lang)
                ]
                pairs = [task(p) for p in chosen]
                tp = sum(1 for truth, guess in pairs if truth and guess)
                fp = sum(1 for truth, guess in pairs if guess and not truth)
                fn = sum(1 for truth, guess in pairs if truth and not guess)
                rows.append(
                    {
                        "classifier": classifier,
                        "class": label,
                        "split": split,
                        "lang": lang,
                        "answers": len(chosen),
                        "positives": tp + fn,
                        "tp": tp,
                        "fp": fp,
                        "fn": fn,
                        "precision": tp / (tp + fp) if tp + fp else None,
                        "recall": tp / (tp + fn) if tp + fn else None,
                    }
                )
    return rows


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:5.1f}%"


def render(rows: Sequence[dict[str, Any]], split: str) -> str:
    lines = [
        f"{'classifier':<13}{'class':<18}{'lang':<5}{'precision':>10}{'recall':>9}   tp/fp/fn  positives/answers",
    ]
    for row in rows:
        if row["split"] != split:
            continue
        lines.append(
            f"{row['classifier']:<13}{row['class']:<18}{row['lang']:<5}{_pct(row['precision']):>10}"
            f"{_pct(row['recall']):>9}   {row['tp']:>3}/{row['fp']:<3}/{row['fn']:<3} "
            f"{row['positives']:>4}/{row['answers']}"
        )
    return "\n".join(lines)


@click.command("audit")
@click.option(
    "--split",
    type=click.Choice(["test", "train", "both"]),
    default="both",
    show_default=True,
    help="TEST measures the lexicon; TRAIN is what it was tuned on.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write every number here."
)
@click.option("--errors", is_flag=True, help="List the TEST answers each classifier gets wrong.")
def bench_audit(split: str, json_path: Path | None, errors: bool) -> None:
    """Precision and recall of the refusal, hedging, sentiment and whataboutism classifiers on the
    project's labelled answers (English and Chinese)."""
    answers = load_labelled()
    predictions, speed = predict(answers)
    rows = score(predictions)
    counts = {s: sum(1 for a in answers if a.split == s) for s in ("train", "test")}
    click.echo(
        f"labelled answers: {len(answers)} (train {counts['train']}, test {counts['test']}; "
        f"en {sum(a.lang == 'en' for a in answers)}, zh {sum(a.lang == 'zh' for a in answers)}), "
        "written and labelled by the project"
    )
    for which in ("test", "train") if split == "both" else (split,):
        click.echo(f"\n{which.upper()} split")
        click.echo(render(rows, which))
    click.echo(f"\nspeed: {speed:,.0f} answers/s through all four classifiers (one core)")
    if errors:
        for (classifier, label), task in TASKS.items():
            wrong = [p for p in predictions if p.answer.split == "test" and task(p)[0] != task(p)[1]]
            for p in wrong:
                truth, _ = task(p)
                click.echo(
                    f"  {classifier}/{label} {'missed' if truth else 'false alarm'} {p.answer.id}: "
                    f"{p.answer.text[:140]!r}"
                )
    if json_path is not None:
        json_path.write_text(
            json.dumps(
                {"answers": len(answers), "split_sizes": counts, "answers_per_s": speed, "rows": rows},
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
