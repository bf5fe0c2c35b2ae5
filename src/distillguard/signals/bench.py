"""`distillguard bench signals`: how well each prompt classifier separates TEST template families
it never saw (true-positive rate at 1% false-positive rate), next to its keyword-only rules in the
same run, and how fast the whole signal set runs on one core."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from distillguard.events.call_view import CallView
from distillguard.signals import registry
from distillguard.signals.base import Signal
from distillguard.signals.rules_and_model import RulesAndModelSignal
from distillguard.signals.training import TARGETS, call_of_item, threshold_at_fpr, tpr_at_threshold

if TYPE_CHECKING:
    from distillguard.corpus import CorpusItem

SPEED_SAMPLE = 5000


def _scores(
    signal: RulesAndModelSignal, calls: Sequence[CallView]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rule score, model probability and final score of every call."""
    results = signal.analyze_many(calls)
    rules, model, final = [], [], []
    for result in results:
        assert result is not None
        rule = max((v for k, v in result.parts.items() if k != "model"), default=0.0)
        rules.append(rule)
        model.append(result.parts.get("model", 0.0))
        final.append(result.score)
    return np.array(rules), np.array(model), np.array(final)


def quality(items: Sequence[CorpusItem]) -> list[str]:
    calls = [call_of_item(item) for item in items]
    lines = [
        f"{'classifier':<20} {'pos':>5} {'neg':>6}  {'TPR@1%FPR keywords':>18} {'model':>6} {'combined':>8}"
        f"  {'at shipped threshold: TPR':>26} {'FPR':>6}"
    ]
    per_kind: list[str] = []
    for name, kinds in TARGETS.items():
        signal = registry.signal_class(name)()
        assert isinstance(signal, RulesAndModelSignal)
        labels = np.array([item.kind in kinds for item in items])
        rules, model, final = _scores(signal, calls)
        cells = []
        for scores in (rules, model, final):
            threshold = threshold_at_fpr(scores[~labels])
            cells.append(tpr_at_threshold(scores[labels], threshold))
        shipped = signal.model.threshold
        tpr_shipped = tpr_at_threshold(model[labels], shipped)
        fpr_shipped = float(np.mean(model[~labels] >= shipped))
        lines.append(
            f"{name:<20} {labels.sum():>5} {(~labels).sum():>6}  {cells[0]:>18.3f} {cells[1]:>6.3f} {cells[2]:>8.3f}"
            f"  {tpr_shipped:>26.3f} {fpr_shipped:>6.3f}"
        )
        kinds_seen = sorted({item.kind for item in items})
        for kind in kinds_seen:
            mask = np.array([item.kind == kind for item in items])
            per_kind.append(
                f"  {name:<20} {kind:<22} n={mask.sum():<6} combined score mean {final[mask].mean():.3f}"
                f"  >= shipped threshold {np.mean(model[mask] >= shipped):.3f}"
            )
        if name == "cot_extraction":
            results = signal.analyze_many(calls)
            benign_steps = np.array(
                [
                    r is not None and r.parts.get("step_by_step", 0.0) > 0 and not lab
                    for r, lab in zip(results, labels, strict=True)
                ]
            )
            if benign_steps.any():
                values = final[benign_steps]
                q = np.quantile(values, [0.5, 0.9, 0.99])
                per_kind.append(
                    f"  cot_extraction on {benign_steps.sum()} benign prompts with a step-by-step demand: "
                    f"median {q[0]:.2f}, p90 {q[1]:.2f}, p99 {q[2]:.2f} (part 'step_by_step' flags them, "
                    "'reveal_hidden'/'distill_template' stay 0)"
                )
    return [*lines, "", "score per test kind:", *per_kind]


def speed(calls: Sequence[CallView], signals: Sequence[Signal]) -> list[str]:
    lines = [f"{'signal':<20} {'µs/call (one at a time)':>24} {'µs/call (batch of 256)':>24}"]
    total_single = total_batch = 0.0
    for signal in signals:
        signal.analyze_many(list(calls[:256]))  # load models, compile tables
        started = time.perf_counter()
        for call in calls:
            signal.analyze(call)
        single = (time.perf_counter() - started) / len(calls) * 1e6
        started = time.perf_counter()
        for i in range(0, len(calls), 256):
            signal.analyze_many(list(calls[i : i + 256]))
        batch = (time.perf_counter() - started) / len(calls) * 1e6
        total_single += single
        total_batch += batch
        lines.append(f"{signal.name:<20} {single:>24.1f} {batch:>24.1f}")
    lines.append(f"{'all inline signals':<20} {total_single:>24.1f} {total_batch:>24.1f}")
    lines.append(
        f"=> {1e6 / total_single:,.0f} calls/s one at a time, {1e6 / total_batch:,.0f} calls/s in batches (one core)"
    )
    return lines


@click.command("signals")
@click.option(
    "--corpus",
    "corpus_root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Development corpora (../shared/data).",
)
@click.option("--speed-sample", default=SPEED_SAMPLE, show_default=True, help="Calls timed for speed.")
def bench_signals(corpus_root: Path, speed_sample: int) -> None:
    """TPR at 1% FPR on TEST families per classifier (keywords vs model vs combined), and calls/s."""
    from distillguard.corpus import load_corpus

    corpus = load_corpus(corpus_root)
    test = corpus.items(split="test")
    click.echo(f"corpus {corpus_root}: {len(test)} test items in {len({i.family for i in test})} families")
    for line in quality(test):
        click.echo(line)
    rng = random.Random(0)
    sample = rng.sample(test, min(speed_sample, len(test)))
    calls = [call_of_item(item) for item in sample]
    for call, item in zip(calls, sample, strict=True):
        call.response_text = item.answer or ""
    click.echo("")
    click.echo(
        f"speed on {len(calls)} test calls (mean prompt {np.mean([len(c.prompt) for c in calls]):.0f} chars):"
    )
    for line in speed(calls, registry.inline_signals()):
        click.echo(line)
    embedding = registry.get("embedding")
    texts = [c.prompt for c in calls]
    embed = getattr(embedding, "embed")  # noqa: B009 - the embedding is a vector provider
    embed(texts[:64])
    started = time.perf_counter()
    embed(texts)
    click.echo(
        f"embedding: {len(texts) / (time.perf_counter() - started):,.0f} prompts/s (truncated, batched)"
    )
