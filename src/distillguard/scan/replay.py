"""Replay calls in time order through per-account mergeable state, as a live deployment would.

For each call: every per-call signal, the template fingerprint, and (for a bounded sample per
account) a prompt embedding; then `AccountWindow.observe`. At checkpoints (see `checkpoints`)
the account's feature vector is captured, so scoring can later tell after how many calls the
account would have been flagged. One worker handles a hash-partition of the accounts; workers
share nothing and their results are simply concatenated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa

from distillguard.events.call_view import VIEW_SCHEMA, CallView, views_of_batch
from distillguard.features.account_window import AccountWindow
from distillguard.features.catalog import (
    ACCOUNT_SIGNALS,
    COT_PARTS,
    EMBED_EVERY,
    EMBED_FIRST,
    EMBED_MAX,
    SCORED_SIGNALS,
    feature_vector,
)
from distillguard.features.checkpoints import is_checkpoint
from distillguard.signals import registry
from distillguard.signals.base import Signal, SignalResult

EMBED_MEMO = 8192  # distinct prompts whose embedding a worker remembers
EXCERPT_CHARS = 600
EXAMPLES_PER_ACCOUNT = 3
READ_COLUMNS = list(VIEW_SCHEMA.names)


@dataclass
class SignalEvidence:
    """The strongest call a signal fired on for one account, kept as an example for the report."""

    fired: int = 0
    best: SignalResult | None = None
    event_id: str = ""
    excerpt: str = ""


@dataclass
class AccountReplay:
    """What the scan keeps about one account while replaying its calls."""

    account_id: str
    window: AccountWindow = field(default_factory=lambda: AccountWindow(ACCOUNT_SIGNALS))
    checkpoint_calls: list[int] = field(default_factory=list)
    checkpoint_ts: list[datetime] = field(default_factory=list)
    checkpoint_features: list[np.ndarray] = field(default_factory=list)
    evidence: dict[str, SignalEvidence] = field(default_factory=dict)
    examples: list[dict[str, str]] = field(default_factory=list)
    daily_calls: Counter[str] = field(default_factory=Counter)
    embedded: int = 0


class Replayer:
    """Runs the signals over batches of calls and folds them into per-account state."""

    def __init__(self, signals: Sequence[Signal] | None = None, *, use_embeddings: bool = True):
        chosen = list(signals) if signals is not None else [registry.get(n) for n in SCORED_SIGNALS]
        self.signals = [s for s in chosen if s.name in SCORED_SIGNALS]
        self.template = registry.get("template")
        self.embedder = registry.get("embedding") if use_embeddings else None
        self.accounts: dict[str, AccountReplay] = {}
        self.calls = 0
        self._vectors: dict[str, np.ndarray] = {}  # prompt -> embedding, at most EMBED_MEMO

    def observe_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        views = views_of_batch(batch)
        self.observe_views(views)

    def observe_views(self, views: Sequence[CallView]) -> None:
        results = {signal.name: signal.analyze_many(views) for signal in self.signals}
        fingerprint = self.template.fingerprint  # type: ignore[attr-defined]
        # the fingerprint is a function of (system prompt, prompt), which templated traffic repeats
        by_text: dict[tuple[str, str], str] = {}
        fingerprints = [
            by_text[key]
            if (key := (view.system_prompt, view.prompt)) in by_text
            else by_text.setdefault(key, fingerprint(view))
            for view in views
        ]
        replays = [self._replay_of(view.account_id) for view in views]
        vectors = self._embeddings(views, replays)
        for i, (view, replay) in enumerate(zip(views, replays, strict=True)):
            scores: dict[str, float | None] = {
                name: None if (result := res[i]) is None else result.score for name, res in results.items()
            }
            cot = results.get("cot_extraction")
            cot_result = cot[i] if cot else None
            for part in COT_PARTS:
                scores[f"cot_extraction.{part}"] = cot_result.parts.get(part, 0.0) if cot_result else None
            replay.window.observe(view, scores, fingerprints[i], vectors.get(i))
            self._keep_evidence(replay, view, results, i)
            replay.daily_calls[view.ts.date().isoformat()] += 1  # strftime is ~10x slower
            if is_checkpoint(replay.window.n):
                replay.checkpoint_calls.append(replay.window.n)
                replay.checkpoint_ts.append(view.ts)
                replay.checkpoint_features.append(feature_vector(replay.window.features()))
        self.calls += len(views)

    def _replay_of(self, account_id: str) -> AccountReplay:
        replay = self.accounts.get(account_id)
        if replay is None:
            replay = self.accounts[account_id] = AccountReplay(account_id)
        return replay

    def _embeddings(
        self, views: Sequence[CallView], replays: Sequence[AccountReplay]
    ) -> dict[int, np.ndarray]:
        if self.embedder is None:
            return {}
        chosen: list[int] = []
        seen: Counter[str] = Counter()  # calls of each account earlier in this batch
        picked: Counter[str] = Counter()
        for i, (view, replay) in enumerate(zip(views, replays, strict=True)):
            account = view.account_id
            seen[account] += 1
            n = replay.window.n + seen[account]  # this call's position in the account's history
            if not view.prompt or replay.embedded + picked[account] >= EMBED_MAX:
                continue
            if n <= EMBED_FIRST or n % EMBED_EVERY == 0:
                chosen.append(i)
                picked[account] += 1
        if not chosen:
            return {}
        # Templated and harvesting traffic sends the same prompt many times: embed each distinct
        # prompt once (rows are pooled independently, so a prompt's vector does not depend on its
        # batch) and remember a bounded number across batches.
        prompts = dict.fromkeys(views[i].prompt for i in chosen)
        known = {p: v for p in prompts if (v := self._vectors.get(p)) is not None}
        missing = [p for p in prompts if p not in known]
        if missing:
            matrix = self.embedder.embed(missing)  # type: ignore[attr-defined]
            fresh = dict(zip(missing, matrix, strict=True))
            known.update(fresh)
            if len(self._vectors) + len(fresh) > EMBED_MEMO:
                self._vectors.clear()
            self._vectors.update(fresh)
        for i in chosen:
            replays[i].embedded += 1
        return {i: known[views[i].prompt] for i in chosen}

    @staticmethod
    def _keep_evidence(
        replay: AccountReplay, view: CallView, results: dict[str, list[SignalResult | None]], i: int
    ) -> None:
        if len(replay.examples) < EXAMPLES_PER_ACCOUNT:
            replay.examples.append(_example(view))
        for name, res in results.items():
            result = res[i]
            if result is None or result.score < 0.5:
                continue
            evidence = replay.evidence.setdefault(name, SignalEvidence())
            evidence.fired += 1
            if evidence.best is None or result.score > evidence.best.score:
                evidence.best = result
                evidence.event_id = view.event_id
                evidence.excerpt = view.prompt[:EXCERPT_CHARS]


def _example(view: CallView) -> dict[str, str]:
    return {
        "event_id": view.event_id,
        "ts": view.ts.isoformat(),
        "endpoint": view.endpoint,
        "system": view.system_prompt[:EXCERPT_CHARS],
        "prompt": view.prompt[:EXCERPT_CHARS],
        "user_agent": (view.client_user_agent or "")[:EXCERPT_CHARS],
        "end_user": (view.end_user or "")[:EXCERPT_CHARS],
    }


def replay_batches(batches: Iterator[pa.RecordBatch], replayer: Replayer) -> Replayer:
    for batch in batches:
        replayer.observe_batch(batch)
    return replayer
