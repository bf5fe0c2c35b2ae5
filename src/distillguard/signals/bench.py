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
from distillguard.signals.base import Signal, SignalResult
from distillguard.signals.rules_and_model import RulesAndModelSignal
from distillguard.signals.training import (
    BENIGN_KINDS,
    POPULATION_MIN,
    TARGETS,
    call_of_item,
    threshold_at_fpr,
    tpr_at_threshold,
)

if TYPE_CHECKING:
    from distillguard.corpus import CorpusItem

SPEED_SAMPLE = 5000
FIRES_AT = 0.5  # the account stage counts a signal as fired at this score


def _scores(results: Sequence[SignalResult | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rule score, model score and final score of every call."""
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
        f"{'classifier':<20} {'pos':>5} {'neg':>6}  TPR at 1% FPR: {'keywords':>8} {'model':>6} {'combined':>8}"
        f"   fires (score >= 0.5): {'TPR':>5} {'FPR':>6}  worst benign family FPR"
    ]
    details: list[str] = []
    for name, kinds in TARGETS.items():
        signal = registry.signal_class(name)()
        assert isinstance(signal, RulesAndModelSignal)
        labels = np.array([item.kind in kinds for item in items])
        results = signal.analyze_many(calls)
        rules, model, final = _scores(results)
        cells = []
        for scores in (rules, model, final):
            threshold = threshold_at_fpr(scores[~labels])
            cells.append(tpr_at_threshold(scores[labels], threshold))
        fires = final >= FIRES_AT
        families: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            families.setdefault(item.family, []).append(i)
        benign = [
            (float(fires[idx].mean()), family, len(idx))
            for family, idx in families.items()
            if items[idx[0]].kind in BENIGN_KINDS and len(idx) >= POPULATION_MIN
        ]
        worst = max(benign) if benign else (float("nan"), "-", 0)
        lines.append(
            f"{name:<20} {labels.sum():>5} {(~labels).sum():>6}  {'':>14} {cells[0]:>8.3f} {cells[1]:>6.3f}"
            f" {cells[2]:>8.3f}   {'':>21} {fires[labels].mean():>5.3f} {fires[~labels].mean():>6.3f}"
            f"  {worst[0]:.3f} ({worst[1]}, n={worst[2]})"
        )
        for family, idx in sorted(families.items()):
            kind = items[idx[0]].kind
            rate = float(fires[idx].mean())
            if kind in kinds or rate > 0:
                role = "POS" if kind in kinds else "neg"
                details.append(f"  {name:<20} {role} {family:<42} n={len(idx):<6} fires {rate:.3f}")
        if name == "cot_extraction":
            steps = np.array(
                [
                    r is not None and r.parts.get("step_by_step", 0.0) > 0 and not positive
                    for r, positive in zip(results, labels, strict=True)
                ]
            )
            if steps.any():
                q = np.quantile(final[steps], [0.5, 0.9, 0.99])
                details.append(
                    f"  cot_extraction on {steps.sum()} benign test prompts with a step-by-step demand: score "
                    f"median {q[0]:.2f}, p90 {q[1]:.2f}, p99 {q[2]:.2f}; fires on {np.mean(final[steps] >= FIRES_AT):.3f}"
                )
    return [*lines, "", "fire rate per test family (positives, and negatives where it fired):", *details]


def speed(calls: Sequence[CallView], signals: Sequence[Signal], batch: int = 256) -> list[str]:
    """µs per call of each signal, run as the gateway runs them (every signal on one call, then the
    next call) and as the scan runs them (every signal on one batch, then the next batch), so the
    prompt classifiers share their hashing as they do in production. Per-signal costs are CPU time of
    this process (the machine is shared: wall time would count other processes); the per-call
    latency percentiles are wall time."""
    for signal in signals:
        signal.analyze_many(list(calls[:batch]))  # load models, compile pattern tables
    single = dict.fromkeys((s.name for s in signals), 0.0)
    latencies = []
    for call in calls:
        call_started = time.perf_counter()
        for signal in signals:
            started = time.process_time()
            signal.analyze(call)
            single[signal.name] += time.process_time() - started
        latencies.append(time.perf_counter() - call_started)
    batched = dict.fromkeys((s.name for s in signals), 0.0)
    for i in range(0, len(calls), batch):
        chunk = list(calls[i : i + batch])
        for signal in signals:
            started = time.process_time()
            signal.analyze_many(chunk)
            batched[signal.name] += time.process_time() - started
    n = len(calls)
    lines = [f"{'signal (CPU µs/call)':<20} {'one call at a time':>29} {f'batches of {batch}':>26}"]
    for name in single:
        lines.append(f"{name:<20} {single[name] / n * 1e6:>29.1f} {batched[name] / n * 1e6:>26.1f}")
    total_single = sum(single.values()) / n * 1e6
    total_batch = sum(batched.values()) / n * 1e6
    p50, p99 = np.quantile(latencies, [0.5, 0.99]) * 1e6
    lines.append(f"{'all inline signals':<20} {total_single:>29.1f} {total_batch:>26.1f}")
    lines.append(
        f"=> one call at a time (gateway): wall p50 {p50:.0f} µs, p99 {p99:.0f} µs per call; "
        f"in batches (scan): {1e6 / total_batch:,.0f} calls/s per core"
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
