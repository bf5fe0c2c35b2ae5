"""Replay one worker's share of the calls as a live deployment would have seen them, in two passes.

1. `CallStage.observe_batch`, over the worker's calls in time order, one record batch at a time:
   the per-call signals over Arrow columns (each distinct input once), template fingerprints, a
   bounded per-account sample of prompt embeddings, and the catalog's measures evaluated into a
   narrow table (a few numbers and short keys per call; the text is not kept). Evidence (the
   strongest call of each signal per account, the first calls) is kept as it goes.
2. `CallStage.finish`: the narrow rows grouped by account (`features.columnar`): every account's
   final `AccountWindow`, and its feature vector at each checkpoint (`features.checkpoints`)
   computed from prefix statistics, without a Python step per call.

Workers share nothing; their results are simply concatenated.
"""

from __future__ import annotations

import gc
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.events.call_view import CallView, views_of_batch
from distillguard.features.account_window import AccountWindow
from distillguard.features.catalog import (
    ACCOUNT_SIGNALS,
    COT_PARTS,
    DAY_MS,
    EMBED_EVERY,
    EMBED_FIRST,
    EMBED_MAX,
    FEATURES,
    FIRES_AT,
    FRAME_CHARS,
    SCORED_SIGNALS,
    TEMPLATE_FRAME,
    call_columns,
    embedding_sampled,
    feature_vector,
)
from distillguard.features.checkpoints import is_checkpoint
from distillguard.features.columnar import ACCOUNT, MS, AccountColumns, measure_columns
from distillguard.features.columns import EMBEDDING, FINGERPRINT, SIGNAL_PREFIX
from distillguard.features.reducers import Dispersion, DispersionRows
from distillguard.features.segments import rank_in_run
from distillguard.signals import registry
from distillguard.signals.base import (
    TEXT_ENCODINGS,
    DistinctCalls,
    LazyResults,
    Signal,
    SignalResult,
    distinct_views,
)

EMBED_MEMO = 32_768  # distinct prompts whose embedding a worker remembers (~1 KiB each)
EXCERPT_CHARS = 600
EXAMPLES_PER_ACCOUNT = 3
EXAMPLE_COLUMNS = ("event_id", "ts", "endpoint", "system_prompt", "prompt", "client_user_agent", "end_user")
# what the scan's notices read (`pipeline.input_gaps`)
NOTICE_COLUMNS = ("endpoint", "prompt", "response_text", "completion_tokens")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def read_columns() -> list[str]:
    """The call-store columns the scan reads: what the signals, the features, the evidence and the
    notices need (wide columns no stage reads, such as the raw bodies, stay on disk)."""
    wanted = {"event_id", "ts", "account_id", *EXAMPLE_COLUMNS, *NOTICE_COLUMNS}
    wanted |= {c for c in call_columns(ACCOUNT_SIGNALS) if c not in (FINGERPRINT, EMBEDDING)}
    wanted = {c for c in wanted if not c.startswith(SIGNAL_PREFIX)}
    for name in (*SCORED_SIGNALS, "template", "embedding"):
        columns = registry.signal_class(name).reads_columns
        if not columns:
            raise ValueError(f"signal {name!r} declares no reads_columns: the scan cannot read it in columns")
        wanted |= set(columns)
    return sorted(wanted)


@dataclass
class SignalEvidence:
    """The strongest call a signal fired on for one account, kept as an example for the report."""

    fired: int = 0
    best: SignalResult | None = None
    event_id: str = ""
    excerpt: str = ""


@dataclass
class AccountReplay:
    """What the scan keeps about one account: its window, its feature vector at each checkpoint
    (one float32 row per checkpoint) and the evidence for the report. The scan's workers hand the
    window over packed (`AccountWindow.packed`: read-only, a fifth of the memory)."""

    account_id: str
    window: AccountWindow = field(default_factory=lambda: AccountWindow(ACCOUNT_SIGNALS))
    checkpoint_calls: list[int] = field(default_factory=list)
    checkpoint_ts: list[datetime] = field(default_factory=list)
    checkpoint_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    evidence: dict[str, SignalEvidence] = field(default_factory=dict)
    examples: list[dict[str, str]] = field(default_factory=list)
    daily_calls: Counter[str] = field(default_factory=Counter)
    embedded: int = 0
    # checkpoint vectors while a call-by-call replay collects them (stacked when it finishes)
    checkpoint_rows: list[np.ndarray] = field(default_factory=list, repr=False)


def _floats(results: Sequence[SignalResult | None], index: np.ndarray, part: str | None = None) -> np.ndarray:
    """Each row's score (or one of its parts), NaN where the signal abstained."""
    if isinstance(results, LazyResults):  # no result built
        known = results.scores if part is None else results.parts.get(part)
        if known is not None:
            return known[index] if len(index) else np.zeros(0)
    if part is None:
        values = [np.nan if r is None else r.score for r in results]
    else:
        values = [np.nan if r is None else r.parts.get(part, 0.0) for r in results]
    return np.asarray(values, dtype=np.float64)[index] if len(index) else np.zeros(0)


@dataclass(frozen=True)
class _Fired:
    """One signal's firing on one account within a batch."""

    order: int  # the signal's place in the signal set
    signal: str
    account: int
    count: int
    first_row: int
    best_row: int  # the strongest call (the earliest of equal scores)
    score: float  # its score
    results: Sequence[SignalResult | None] = field(repr=False)
    at: int = 0  # its result's place in `results`

    @property
    def best(self) -> SignalResult:
        """The strongest call's full result, built when read (its evidence text can be dear to
        build, and an account whose earlier call scored as high never reads it)."""
        result = self.results[self.at]
        assert result is not None  # a call fired, so the signal scored it
        return result


def _fired(
    order: int, name: str, results: Sequence[SignalResult | None], index: np.ndarray, ids: np.ndarray
) -> list[_Fired]:
    scores = _floats(results, index)
    rows = np.flatnonzero(np.nan_to_num(scores, nan=-1.0) >= FIRES_AT)
    if not len(rows):
        return []
    accounts = ids[rows]
    by_score = np.lexsort((rows, -scores[rows], accounts))
    head = np.ones(len(rows), dtype=bool)
    head[1:] = accounts[by_score][1:] != accounts[by_score][:-1]
    counts = np.bincount(accounts)
    first_rows = np.full(len(counts), len(ids))
    np.minimum.at(first_rows, accounts, rows)
    out = []
    for row in rows[by_score[head]].tolist():
        account = int(ids[row])
        score = float(scores[row])
        at = int(index[row])
        out.append(
            _Fired(
                order, name, account, int(counts[account]), int(first_rows[account]), row, score, results, at
            )
        )
    return out


class CallStage:
    """One worker's calls, batch by batch in time order, into narrow measure rows and evidence."""

    def __init__(
        self,
        signals: Sequence[Signal] | None = None,
        *,
        use_embeddings: bool = True,
        buckets: int = 1,
        spill_dir: Path | None = None,
    ) -> None:
        """``buckets`` > 1 spills the narrow rows to ``spill_dir``, one Arrow IPC stream per bucket
        of accounts, and the second pass holds one bucket at a time (memory for a store of any size)."""
        if buckets > 1 and spill_dir is None:
            raise ValueError("spilling narrow rows into buckets needs a spill_dir")
        self._buckets = buckets
        self._spill_dir = spill_dir
        self._writers: dict[int, Any] = {}
        chosen = list(signals) if signals is not None else [registry.get(n) for n in SCORED_SIGNALS]
        self.signals = [s for s in chosen if s.name in SCORED_SIGNALS]
        self.template: Any = registry.get("template")  # a Template: fingerprints over columns
        self.embedder = registry.get("embedding") if use_embeddings else None
        self.calls = 0
        self._ids: dict[str, int] = {}
        self._labels: list[str] = []
        self._seen = np.zeros(0, dtype=np.int64)  # calls of each account so far
        self._embedded = np.zeros(0, dtype=np.int64)
        # each account's embedding-vector sum so far: row `id` of one matrix where `_summed[id]`
        self._sums = np.zeros((0, 0))
        self._summed = np.zeros(0, dtype=bool)
        self._vectors: dict[str, np.ndarray] = {}  # prompt -> embedding, at most EMBED_MEMO
        self._evidence: dict[int, dict[str, SignalEvidence]] = {}
        self._examples: dict[int, list[dict[str, str]]] = {}
        self._daily: dict[int, Counter[str]] = {}
        self._day_names: dict[int, str] = {}
        self._narrow: list[pa.Table] = []
        self.seconds: defaultdict[str, float] = defaultdict(float)  # CPU seconds by stage (scan summary)
        self._last = time.process_time()

    def _clock(self, stage: str) -> None:
        now = time.process_time()
        self.seconds[stage] += now - self._last
        self._last = now

    def start_clock(self) -> None:
        """Time from here on counts towards the next stage (not the reading before it)."""
        self._last = time.process_time()

    # -- pass 1 -----------------------------------------------------------------------------------

    def observe_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        rows = len(batch)
        if rows == 0:
            return
        clock = self._clock
        ids = self._account_ids(batch.column(ACCOUNT))
        rank = rank_in_run(ids, np.zeros(rows, dtype=np.int64))  # earlier calls of the account in the batch
        position = self._seen[ids] + rank + 1
        np.add.at(self._seen, ids, 1)
        derived: dict[str, pa.Array] = {}
        fired: list[_Fired] = []
        shared: dict[tuple[str, ...], DistinctCalls] = {}
        readers = Counter(signal.reads_columns for signal in self.signals)
        for order, signal in enumerate(self.signals):
            if readers[signal.reads_columns] == 1:  # its own columns: its own batch entry point
                results, index = signal.analyze_columns(batch)
            else:  # signals that read the same columns share the distinct calls of the batch
                distinct = shared.get(signal.reads_columns)
                if distinct is None:
                    distinct = shared[signal.reads_columns] = distinct_views(batch, signal.reads_columns)
                results = signal.analyze_distinct(distinct)
                index = distinct.of_row
            derived[SIGNAL_PREFIX + signal.name] = pa.array(_floats(results, index), from_pandas=True)
            fired += _fired(order, signal.name, results, index, ids)
            if signal.name == "cot_extraction":
                for part in COT_PARTS:
                    scores = _floats(results, index, part)
                    derived[f"{SIGNAL_PREFIX}cot_extraction.{part}"] = pa.array(scores, from_pandas=True)
            clock(f"signal {signal.name}")
        self._keep_evidence(fired, batch)
        for name in ACCOUNT_SIGNALS:  # a signal left out of this run abstains on every call
            derived.setdefault(SIGNAL_PREFIX + name, pa.nulls(rows, pa.float64()))
        derived[FINGERPRINT], frames = self.template.fingerprints_and_frames(batch, FRAME_CHARS)
        clock("template fingerprints")
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        for name, array in derived.items():
            table = table.append_column(name, array)
        dispersion, embedded_rows = self._embeddings(batch, ids, position)
        clock("embeddings")
        narrow = measure_columns(
            table, ACCOUNT_SIGNALS, dispersion, embedded_rows, ((TEMPLATE_FRAME, frames),)
        )
        narrow = narrow.set_column(0, ACCOUNT, pa.array(ids.astype(np.int32)))
        self._keep_narrow(narrow, ids)
        clock("features: measure columns")
        self._keep_examples(batch, ids, position)
        self._count_days(narrow.column(MS), ids)
        self.calls += rows
        TEXT_ENCODINGS.clear()  # the batch's text columns, shared by its signals and measures
        clock("evidence, examples, days")

    def _account_ids(self, accounts: pa.Array | pa.ChunkedArray) -> np.ndarray:
        if isinstance(accounts, pa.ChunkedArray):
            accounts = accounts.combine_chunks()
        if accounts.null_count:
            raise ValueError("a call without account_id reached the scan")
        encoded = pc.dictionary_encode(accounts)
        mapping = np.empty(len(encoded.dictionary), dtype=np.int64)
        for i, account in enumerate(encoded.dictionary.to_pylist()):
            known = self._ids.get(account)
            if known is None:
                known = self._ids[account] = len(self._labels)
                self._labels.append(account)
            mapping[i] = known
        if len(self._labels) > len(self._seen):
            grow = max(len(self._labels), 2 * len(self._seen))
            self._seen = np.concatenate([self._seen, np.zeros(grow - len(self._seen), dtype=np.int64)])
            self._embedded = np.concatenate(
                [self._embedded, np.zeros(grow - len(self._embedded), dtype=np.int64)]
            )
        return mapping[np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]

    def _embeddings(
        self, batch: pa.RecordBatch | pa.Table, ids: np.ndarray, position: np.ndarray
    ) -> tuple[DispersionRows | None, np.ndarray | None]:
        """The sampled calls' prompt vectors as `Dispersion.rows` (the first calls of an account,
        then every EMBED_EVERY-th, at most EMBED_MAX: `catalog.embedding_sampled`)."""
        if self.embedder is None:
            return None, None
        prompt = batch.column("prompt")
        nonempty = np.asarray(
            pc.fill_null(pc.not_equal(prompt, ""), False).to_numpy(zero_copy_only=False), bool
        )
        eligible = np.flatnonzero(nonempty & ((position <= EMBED_FIRST) | (position % EMBED_EVERY == 0)))
        if not len(eligible):
            return None, None
        earlier = rank_in_run(ids[eligible], np.zeros(len(eligible), dtype=np.int64))
        chosen = eligible[self._embedded[ids[eligible]] + earlier < EMBED_MAX]
        if not len(chosen):
            return None, None
        np.add.at(self._embedded, ids[chosen], 1)
        taken = prompt.take(pa.array(chosen))
        if isinstance(taken, pa.ChunkedArray):
            taken = taken.combine_chunks()
        # Templated and harvesting traffic sends the same prompt many times: embed each distinct
        # prompt once (rows are pooled independently, so a prompt's vector does not depend on its
        # batch) and remember a bounded number across batches. The distinct prompts are found by
        # Arrow (only they become Python strings), each row's vector taken from theirs by index.
        encoded = pc.dictionary_encode(taken)
        distinct = encoded.dictionary.to_pylist()
        found = list(map(self._vectors.get, distinct))
        missing = [p for p, v in zip(distinct, found, strict=True) if v is None]
        fresh: dict[str, np.ndarray] = {}
        if missing:
            matrix = self.embedder.embed(missing)  # type: ignore[attr-defined]
            fresh = dict(zip(missing, matrix, strict=True))
            # a full memo starts again (the batch's own vectors are in `fresh`, not read from it)
            if len(self._vectors) + len(fresh) > EMBED_MEMO:
                self._vectors.clear()
            self._vectors.update(fresh)
        distinct_vectors = np.stack(
            [fresh[p] if v is None else v for p, v in zip(distinct, found, strict=True)]
        )
        vectors = distinct_vectors[np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.intp)]
        if len(self._summed) < len(self._labels):  # new accounts: room for theirs (2 KB each)
            grow = max(len(self._labels), 2 * len(self._summed))
            sums = np.zeros((grow, vectors.shape[1]))
            if len(self._sums):
                sums[: len(self._sums)] = self._sums
            self._sums = sums
            self._summed = np.concatenate([self._summed, np.zeros(grow - len(self._summed), dtype=bool)])
        rows = Dispersion.rows_into(ids[chosen], vectors, self._sums, self._summed)
        return rows, chosen

    def _keep_evidence(self, fired: list[_Fired], batch: pa.RecordBatch | pa.Table) -> None:
        # in the order the calls came (then signal order): the report lists equally frequent signals
        # in the order they first fired
        for item in sorted(fired, key=lambda f: (f.first_row, f.order)):
            evidence = self._evidence.setdefault(item.account, {}).setdefault(item.signal, SignalEvidence())
            evidence.fired += item.count
            if evidence.best is None or item.score > evidence.best.score:
                evidence.best = item.best
                evidence.event_id = str(batch.column("event_id")[item.best_row].as_py())
                evidence.excerpt = (batch.column("prompt")[item.best_row].as_py() or "")[:EXCERPT_CHARS]

    def _keep_examples(self, batch: pa.RecordBatch | pa.Table, ids: np.ndarray, position: np.ndarray) -> None:
        rows = np.flatnonzero(position <= EXAMPLES_PER_ACCOUNT)
        if not len(rows):
            return
        taken = {name: batch.column(name).take(pa.array(rows)).to_pylist() for name in EXAMPLE_COLUMNS}
        for k, row in enumerate(rows.tolist()):
            ts = taken["ts"][k]
            self._examples.setdefault(int(ids[row]), []).append(
                {
                    "event_id": taken["event_id"][k],
                    "ts": ts.isoformat() if isinstance(ts, datetime) else str(ts),
                    "endpoint": taken["endpoint"][k] or "",
                    "system": (taken["system_prompt"][k] or "")[:EXCERPT_CHARS],
                    "prompt": (taken["prompt"][k] or "")[:EXCERPT_CHARS],
                    "user_agent": (taken["client_user_agent"][k] or "")[:EXCERPT_CHARS],
                    "end_user": (taken["end_user"][k] or "")[:EXCERPT_CHARS],
                }
            )

    def _count_days(self, ms: pa.Array | pa.ChunkedArray, ids: np.ndarray) -> None:
        day = np.asarray(ms.to_numpy(), dtype=np.int64) // DAY_MS
        if not len(day):
            return
        # (account, day) pairs as one integer, sorted as the pairs are (by account, then day)
        first_day = int(day.min())
        span = int(day.max()) - first_day + 1
        pairs, counts = np.unique(ids.astype(np.int64) * span + (day - first_day), return_counts=True)
        daily = self._daily
        for pair, count in zip(pairs.tolist(), counts.tolist(), strict=True):
            account, number = divmod(pair, span)
            number += first_day
            name = self._day_names.get(number)
            if name is None:
                name = self._day_names[number] = (date(1970, 1, 1) + timedelta(days=number)).isoformat()
            counter = daily.get(account)
            if counter is None:
                counter = daily[account] = Counter()
            counter[name] += count

    def _keep_narrow(self, narrow: pa.Table, ids: np.ndarray) -> None:
        if self._buckets == 1:
            self._narrow.append(narrow)
            return
        bucket = ids % self._buckets
        for b in np.unique(bucket).tolist():
            writer = self._writers.get(b)
            if writer is None:
                sink = pa.OSFile(str(self._spill_path(b)), "wb")
                writer = self._writers[b] = (sink, pa.ipc.new_stream(sink, narrow.schema))
            writer[1].write_table(narrow.filter(pa.array(bucket == b)))

    # -- pass 2 -----------------------------------------------------------------------------------

    def finish(self) -> dict[str, AccountReplay]:
        """Every account's window and checkpoint vectors from the narrow rows of pass 1."""
        out: dict[str, AccountReplay] = {}
        for part in self.finish_parts():
            out.update(part)
        return out

    def finish_parts(self) -> Iterator[dict[str, AccountReplay]]:
        """`finish`, one bucket of accounts at a time (all of them at once without buckets): a
        caller that writes each part away holds one bucket's replays, not the worker's."""
        # what pass 1 remembered across batches (results, fingerprints, vectors of repeated prompts)
        # is of no use to pass 2, which needs the memory
        for signal in (*self.signals, self.template):
            signal.forget()
        self._vectors.clear()
        # pass 2 builds a few hundred thousand small objects that live until the worker ends:
        # the cyclic collector would rescan them all again and again while they are made
        enabled = gc.isenabled()  # a caller may have turned it off already (the scan's workers)
        gc.disable()
        try:
            if self._buckets == 1:
                tables, self._narrow = self._narrow, []
                if tables:
                    yield self._replays(tables)
                return
            writers, self._writers = self._writers, {}
            for _, writer in writers.values():
                writer.close()
            for _, sink in writers.values():
                sink.close()
            for b in sorted(writers):
                path = self._spill_path(b)
                with pa.OSFile(str(path), "rb") as source:
                    tables = [pa.ipc.open_stream(source).read_all()]
                path.unlink()
                yield self._replays(tables)  # which lets go of the bucket's rows once grouped
        finally:
            if enabled:
                gc.enable()

    def _spill_path(self, bucket: int) -> Path:
        if self._spill_dir is None:  # __init__ refuses buckets without a folder
            raise RuntimeError("no spill folder")
        return self._spill_dir / f"accounts-{bucket}.arrow"

    def _replays(self, tables: list[pa.Table]) -> dict[str, AccountReplay]:
        summed = np.flatnonzero(self._summed)
        totals = {
            self._labels[i]: total for i, total in zip(summed.tolist(), self._sums[summed], strict=True)
        }
        self.start_clock()
        columns = AccountColumns(tables, ACCOUNT_SIGNALS, totals, labels=self._labels)
        tables.clear()  # the grouped copy is all pass 2 needs
        rows = columns.checkpoint_rows()
        ms = columns.column(MS)[rows]
        windows, matrix = columns.build(rows)
        self._clock("features: final windows and checkpoint vectors")
        owners = columns.seg[rows]
        bounds = np.searchsorted(owners, np.arange(len(columns.accounts) + 1))
        positions = columns.position[rows]
        out = {}
        for g, account in enumerate(columns.accounts):
            lo, hi = int(bounds[g]), int(bounds[g + 1])
            index = self._ids[account]
            out[account] = AccountReplay(
                account_id=account,
                window=windows[account],
                checkpoint_calls=positions[lo:hi].tolist(),
                checkpoint_ts=[_EPOCH + timedelta(milliseconds=m) for m in ms[lo:hi].tolist()],
                checkpoint_features=matrix[lo:hi].copy(),
                evidence=self._evidence.get(index, {}),
                examples=self._examples.get(index, []),
                daily_calls=self._daily.get(index, Counter()),
                embedded=int(self._embedded[index]),
            )
        self._clock("features: final windows and checkpoint vectors")
        return out


def replay_batches(batches: Iterator[pa.RecordBatch], stage: CallStage) -> dict[str, AccountReplay]:
    for batch in batches:
        stage.observe_batch(batch)
    return stage.finish()


class CallByCall:
    """The reference the columnar stage must equal: every call through the per-call signals one
    view at a time and into its account's `AccountWindow.observe` (the gateway's path), the feature
    vector read with `features()` after each checkpoint call. Slow (~100x the columnar stage): the
    tests run it (on the accounts they choose) to hold `CallStage` to it."""

    def __init__(
        self,
        signals: Sequence[Signal] | None = None,
        *,
        use_embeddings: bool = True,
        accounts: Iterable[str] | None = None,
    ) -> None:
        chosen = list(signals) if signals is not None else [registry.get(n) for n in SCORED_SIGNALS]
        self.signals = [s for s in chosen if s.name in SCORED_SIGNALS]
        self.template: Any = registry.get("template")
        self.embedder: Any = registry.get("embedding") if use_embeddings else None
        self.only = None if accounts is None else frozenset(accounts)
        self.accounts: dict[str, AccountReplay] = {}

    def observe_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        for view in views_of_batch(batch):
            if self.only is None or view.account_id in self.only:
                self.observe(view)

    def observe(self, view: CallView) -> None:
        replay = self.accounts.get(view.account_id)
        if replay is None:
            replay = self.accounts[view.account_id] = AccountReplay(view.account_id)
        scores: dict[str, float | None] = {}
        for signal in self.signals:
            result = signal.analyze(view)
            scores[signal.name] = None if result is None else result.score
            if signal.name == "cot_extraction":
                for part in COT_PARTS:
                    scores[f"cot_extraction.{part}"] = None if result is None else result.parts.get(part, 0.0)
        vector = None
        if self.embedder is not None and embedding_sampled(replay.window.n + 1, view.prompt, replay.embedded):
            vector = self.embedder.embed([view.prompt])[0]
            replay.embedded += 1
        replay.window.observe(view, scores, self.template.fingerprint(view), vector)
        if is_checkpoint(replay.window.n):
            replay.checkpoint_calls.append(replay.window.n)
            replay.checkpoint_ts.append(view.ts)
            replay.checkpoint_rows.append(feature_vector(replay.window.features()))

    def finish(self) -> dict[str, AccountReplay]:
        for replay in self.accounts.values():
            replay.checkpoint_features = (
                np.stack(replay.checkpoint_rows)
                if replay.checkpoint_rows
                else np.zeros((0, len(FEATURES)), np.float32)
            )
            replay.checkpoint_rows = []
        return self.accounts
