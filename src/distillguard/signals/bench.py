"""`distillguard bench signals`: how well each text classifier separates TEST template families it
never saw, next to its keyword-only rules in the same run, and how fast the signal set runs.

By default it prints what may guide work: per-family numbers on TRAIN and DEV (what the rules and
models were written, trained and calibrated on), and TEST only aggregated per signal. Fire rates
per TEST family are printed only with `--final-report`: looking at them while changing a rule or a
model is how a benchmark stops measuring unseen families.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from distillguard.events.call_view import CallView
from distillguard.signals import registry
from distillguard.signals.base import Signal, SignalResult
from distillguard.signals.training import (
    ANSWER_TARGET,
    BENIGN_KINDS,
    CLASSIFIERS,
    FIRES_AT,
    POPULATION_MIN,
    answered_call,
    call_of_item,
    capped,
    target,
    threshold_at_fpr,
    tpr_at_threshold,
)

if TYPE_CHECKING:
    from distillguard.corpus import Corpus, CorpusItem

SPEED_SAMPLE = 5000


@dataclass(frozen=True)
class Scored:
    """One classifier over one split: labels, rule / model / final scores, and the items."""

    items: list[CorpusItem]
    labels: np.ndarray
    rules: np.ndarray
    model: np.ndarray
    final: np.ndarray
    results: list[SignalResult | None]

    def families(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for i, item in enumerate(self.items):
            found.setdefault(item.family, []).append(i)
        return found


def score(name: str, items: Sequence[CorpusItem]) -> Scored:
    """Run the shipped signal (rules and model) over the items its classifier is measured on."""
    goal = target(name)
    chosen = goal.select(items)
    cls = registry.signal_class(name)
    calls = [answered_call(i) if name == ANSWER_TARGET else call_of_item(i) for i in chosen]
    results = cls().analyze_many(calls)
    # "keywords" is the same signal with mode="rules", in the same run
    keywords = cls(mode="rules").analyze_many(calls)  # type: ignore[call-arg]
    return Scored(
        items=chosen,
        labels=np.array([goal.positive(i) for i in chosen], dtype=bool),
        rules=np.array([r.score if r is not None else 0.0 for r in keywords]),
        model=np.array([r.parts.get("model", 0.0) if r is not None else 0.0 for r in results]),
        final=np.array([r.score if r is not None else 0.0 for r in results]),
        results=results,
    )


def _rate(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else float("nan")


def _hard(scored: Scored) -> np.ndarray:
    return np.array([i.kind == "hard_negative" for i in scored.items], dtype=bool) & ~scored.labels


def summary_line(name: str, split: str, scored: Scored) -> str:
    fires = scored.final >= FIRES_AT
    hard = _hard(scored)
    return (
        f"{name:<20} {split:<5} pos {scored.labels.sum():>6} neg {(~scored.labels).sum():>6}   "
        f"fires (score >= {FIRES_AT}): TPR {_rate(fires[scored.labels]):.3f} FPR {_rate(fires[~scored.labels]):.4f}   "
        f"hard negatives: {fires[hard].sum()}/{hard.sum()} fire"
    )


def family_lines(name: str, scored: Scored, split: str) -> list[str]:
    """Fire rate per family: every positive family, and negative families where it fired."""
    fires = scored.final >= FIRES_AT
    lines = []
    for family, index in sorted(scored.families().items()):
        rate = float(fires[index].mean())
        positive = bool(scored.labels[index[0]])
        if positive or rate > 0:
            lines.append(
                f"  {name:<20} {split:<5} {'POS' if positive else 'neg'} {family:<44} n={len(index):<6} fires {rate:.3f}"
            )
    return lines


def test_aggregate(name: str, scored: Scored) -> list[str]:
    """TEST numbers aggregated per signal: nothing here names a TEST family."""
    labels = scored.labels
    cells = []
    for values in (scored.rules, scored.model, scored.final):
        threshold = threshold_at_fpr(values[~labels]) if (~labels).any() else 0.5
        cells.append(tpr_at_threshold(values[labels], threshold))
    fires = scored.final >= FIRES_AT
    hard = _hard(scored)
    lines = [
        f"{name:<20} pos {labels.sum():>6} neg {(~labels).sum():>6}   TPR at 1% FPR (threshold set on these "
        f"negatives): keywords {cells[0]:.3f} model {cells[1]:.3f} combined {cells[2]:.3f}",
        f"{'':<20} at the shipped (dev-chosen) threshold: TPR {_rate(fires[labels]):.3f} FPR {_rate(fires[~labels]):.4f}; "
        f"hard negatives {fires[hard].sum()}/{hard.sum()} fire ({_rate(fires[hard]):.3f})",
    ]
    if name == "cot_extraction":
        steps = np.array(
            [
                r is not None and r.parts.get("step_by_step", 0.0) > 0 and not positive
                for r, positive in zip(scored.results, labels, strict=True)
            ]
        )
        if steps.any():
            q = np.quantile(scored.final[steps], [0.5, 0.9, 0.99])
            lines.append(
                f"{'':<20} {steps.sum()} benign prompts with a step-by-step demand: score median {q[0]:.2f}, "
                f"p90 {q[1]:.2f}, p99 {q[2]:.2f}; fire on {np.mean(scored.final[steps] >= FIRES_AT):.3f}"
            )
    return lines


def worst_benign(scored: Scored) -> str:
    fires = scored.final >= FIRES_AT
    benign = [
        (float(fires[index].mean()), family, len(index))
        for family, index in scored.families().items()
        if scored.items[index[0]].kind in BENIGN_KINDS
        and len(index) >= POPULATION_MIN
        and not scored.labels[index[0]]
    ]
    rate, family, n = max(benign) if benign else (float("nan"), "-", 0)
    return f"  worst benign family with >= {POPULATION_MIN} items: {family} fires {rate:.3f} (n={n})"


def quality(corpus: Corpus, names: Sequence[str] = CLASSIFIERS, final_report: bool = False) -> list[str]:
    train = capped(corpus.items(split="train"))
    dev = corpus.items(split="dev")
    test = corpus.items(split="test")
    development = ["TRAIN and DEV (what the rules and models were written, trained and calibrated on):"]
    development_families: list[str] = []
    unseen = ["", "TEST (families never seen), aggregated per signal:"]
    per_test_family: list[str] = []
    for name in names:
        on_train, on_dev, on_test = score(name, train), score(name, dev), score(name, test)
        development += [summary_line(name, "train", on_train), summary_line(name, "dev", on_dev)]
        development_families += family_lines(name, on_dev, "dev")
        unseen += test_aggregate(name, on_test)
        if final_report:
            per_test_family += [*family_lines(name, on_test, "test"), worst_benign(on_test)]
    lines = [
        *development,
        "",
        "fire rate per DEV family (positives, and negatives where it fired):",
        *development_families,
    ]
    lines += unseen
    if final_report:
        lines += ["", "FINAL REPORT: fire rate per TEST family (positives, and negatives where it fired):"]
        lines += per_test_family
    else:
        lines += [
            "",
            "(per-TEST-family fire rates: only with --final-report, once, when nothing will change after it)",
        ]
    return lines


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
@click.option(
    "--final-report",
    is_flag=True,
    help="Also print fire rates per TEST family. Run it once, at the end: nothing may be tuned after it.",
)
@click.option(
    "--speed-sample", default=SPEED_SAMPLE, show_default=True, help="Calls timed for speed (0: skip)."
)
def bench_signals(corpus_root: Path, final_report: bool, speed_sample: int) -> None:
    """Text classifiers on TRAIN/DEV families and, aggregated, on unseen TEST families; and calls/s."""
    from distillguard.corpus import load_corpus

    corpus = load_corpus(corpus_root)
    test = corpus.items(split="test")
    click.echo(f"corpus {corpus_root}: {len(test)} test items in {len({i.family for i in test})} families")
    for line in quality(corpus, final_report=final_report):
        click.echo(line)
    if speed_sample <= 0:
        return
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
