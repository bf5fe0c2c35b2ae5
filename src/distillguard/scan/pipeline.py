"""`distillguard scan`: API logs in, per-account verdicts, actor clusters and a report out.

Stages, in the order of DESIGN.md: the call store (event files are ingested into one first, so
there is a single ordered reading path), replay of every account's calls through signals and
mergeable features (two workers over hash partitions of the accounts), scoring at checkpoints,
linking into actor clusters, propagation of actor evidence, verdicts and the outputs.
"""

from __future__ import annotations

import ctypes
import gc
import math
import multiprocessing
import pickle
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from distillguard.events.accounts import read_accounts
from distillguard.events.call_view import CallView
from distillguard.events.model import Account, AccountVerdict, Reason, to_json_line
from distillguard.events.readers import ReaderOptions, iter_events
from distillguard.events.store import PARTITION, CallStore
from distillguard.features.catalog import FEATURES, SCORED_SIGNALS, feature_vector
from distillguard.scan.replay import AccountReplay, CallStage, read_columns
from distillguard.scoring.scorer import AccountScorer
from distillguard.signals import registry
from distillguard.signals.embedding import Embedding
from distillguard.signals.rules_and_model import prompt_tables

if TYPE_CHECKING:  # linking (datasketch, networkx, SciPy) is imported when the replay's workers run
    from distillguard.linking.actor_cluster import ActorCluster, KnownActor

BATCH_ROWS = 8192
# batches between two collections of the young objects in a worker (the cyclic collector is off
# while it reads): most of what a batch leaves alive (results in the signals' memos) is freed by
# reference counting within a few batches, and a collection only ever finds a few cycles; after
# every batch, collections cost ~2 us per call on the default preset
COLLECT_EVERY = 64
# calls a worker groups by account at once; beyond this it spills its narrow rows (~370 bytes a
# call) to buckets of accounts on disk and takes them one bucket at a time. Pass 2 holds one bucket's
# grouped rows and its accounts' windows until they are packed (~400 MiB above pass 1 for buckets of
# ~240,000 calls and ~3,400 accounts of the large population); the rows' round trip through disk
# costs well under a second per million calls.
BUCKET_CALLS = 250_000
# what the signals were built for; other endpoints are scanned on their text alone
KNOWN_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/responses")


class ReplayJob(NamedTuple):
    """What one replay worker is given: the store, which hash partition of its accounts is its own,
    and the file its replays are written to for the parent."""

    store: str
    worker: int
    workers: int
    use_embeddings: bool
    progress: bool
    buckets: int
    handover: str


def input_gaps(batch: pa.RecordBatch) -> Counter[str]:
    """Calls in this batch that some signal cannot read: no response, no prompt text, other endpoints."""
    no_response = pc.and_(
        pc.equal(batch.column("response_text"), ""), pc.is_null(batch.column("completion_tokens"))
    )
    other_endpoint = pc.invert(pc.is_in(batch.column("endpoint"), value_set=pa.array(KNOWN_ENDPOINTS)))
    return Counter(
        {
            "no_response": pc.sum(no_response).as_py() or 0,
            "no_prompt": pc.sum(pc.equal(batch.column("prompt"), "")).as_py() or 0,
            "other_endpoint": pc.sum(other_endpoint).as_py() or 0,
        }
    )


def gap_notices(gaps: Counter[str], calls: int) -> list[str]:
    """What the report says about the calls some signals could not read."""
    notices = []
    if gaps["no_response"]:
        notices.append(
            f"{gaps['no_response']:,} of {calls:,} calls have no response body: reasoning_leak and the "
            "output-length features abstained on them"
        )
    if gaps["no_prompt"]:
        notices.append(
            f"{gaps['no_prompt']:,} calls carry no prompt text: the prompt signals, template and embedding "
            "abstained on them"
        )
    if gaps["other_endpoint"]:
        notices.append(
            f"{gaps['other_endpoint']:,} calls went to endpoints other than {', '.join(KNOWN_ENDPOINTS)}: "
            "they count toward volume and timing; prompt signals read whatever text they carry"
        )
    return notices


@dataclass
class ScanSource:
    """Where the calls come from: a call store, or event files in a known format."""

    store: Path | None = None
    event_files: Sequence[Path] = ()
    fmt: str = "canonical"

    def open(self, workdir: Path, notices: list[str]) -> CallStore:
        if self.store is not None:
            return CallStore.open(self.store)
        staging = workdir / "_store"
        if staging.exists():
            raise FileExistsError(
                f"{staging} exists from an earlier scan; remove it or scan the store directly"
            )
        stats = CallStore.ingest(
            staging,
            iter_events(self.event_files, self.fmt, ReaderOptions()),
            sources=[str(p) for p in self.event_files],
            allow_rejects=True,
        )
        if stats.rejects:
            notices.append(
                f"{stats.rejects} malformed line(s) could not be used (file, line and reason in {stats.rejects_file})"
            )
        return CallStore.open(staging)


@dataclass
class ReplayResult:
    accounts: dict[str, AccountReplay]
    calls: int
    seconds: float
    notices: list[str] = field(default_factory=list)
    # CPU seconds by stage, summed over the workers (reading the store included)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse instead of returning it to the system.

    Each batch allocates the same large NumPy temporaries (hashed n-grams of thousands of prompts,
    tens of MB); by default glibc maps blocks that large afresh and unmaps them on free, so every
    batch pays its page faults again (measured here at ~4 µs per 4 KiB page, which made first-touch
    memory the largest cost of some stages). No effect where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1 << 30)
    # up to this much free memory stays mapped for the next batch; beyond it goes back
    mallopt(m_trim_threshold, 256 << 20)


def one_blas_thread() -> Any:
    """Limit NumPy's BLAS to one thread in this process (a scan worker). Each worker already has a
    core; OpenBLAS's own threads (two per worker on two cores) would compete with the other worker
    and spin while they wait. Matrix products split their output, not their sums, across threads,
    so the values do not depend on the count (outputs compared on the default preset). Returns the
    limiter: `restore_original_limits()` lifts it (`--workers 1` replays in the parent itself)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def warm_up_signals(use_embeddings: bool = False) -> None:
    """Compile the pattern tables and load the text models once, before the workers fork (they
    share the result copy-on-write instead of each paying ~1 s of start-up). With
    ``use_embeddings`` the embedding model's weights load too (~0.5 s a worker); nothing is
    tokenised, so the tokenizer's thread pool does not start before the fork."""
    probe = CallView(
        event_id="warm-up",
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        account_id="warm-up",
        prompt="warm up",
        n_user_turns=1,
        response_text="warm up",
    )
    for name in SCORED_SIGNALS:
        registry.get(name).analyze_many([probe])
    registry.get("template").analyze(probe)
    prompt_tables().hits_each([probe.prompt])  # the prompt tables' joint database (scan path)
    embedder = registry.get("embedding")
    if use_embeddings and isinstance(embedder, Embedding):
        embedder.model  # noqa: B018  (the property loads the weights)


def _replay_partition(
    job: ReplayJob,
) -> tuple[Counter[str], dict[str, float]]:
    """One worker's accounts replayed; their replays are pickled one by one into ``handover``
    (windows packed), one bucket of accounts at a time, for the parent to read once this ends."""
    store_path, worker, workers, use_embeddings, progress, buckets, handover = job
    started = time.process_time()
    keep_freed_memory()
    blas = one_blas_thread()
    # The signals' memos keep hundreds of thousands of small objects alive across batches, and the
    # cyclic collector, left to run on its own, rescans them again and again (~13% of pass 1's CPU,
    # measured on two days of the default preset). Instead: what the worker inherited (modules,
    # compiled tables, models) is frozen out of its sight, the young objects are collected every
    # COLLECT_EVERY batches, and pass 2 runs without the collector (`CallStage.finish_parts`), so no
    # full collection runs in the worker. Pass 1 makes almost no reference cycles (a few dozen per store).
    enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        store = CallStore.open(store_path)
        with tempfile.TemporaryDirectory(prefix="distillguard-scan-") as spill:
            stage = CallStage(use_embeddings=use_embeddings, buckets=buckets, spill_dir=Path(spill))
            gaps = _read_partition(store, stage, worker, workers, progress)
            packing = 0.0
            with open(handover, "wb") as out:
                for part in stage.finish_parts():
                    began = time.process_time()
                    for replay in part.values():
                        replay.window = replay.window.packed()
                        pickle.dump(replay, out, protocol=pickle.HIGHEST_PROTOCOL)
                    packing += time.process_time() - began
                    del part
    finally:
        if enabled:
            gc.enable()
        blas.restore_original_limits()
    seconds = dict(stage.seconds)
    seconds["pack and hand over replays"] = packing
    seconds["read store, notices, start-up"] = time.process_time() - started - sum(seconds.values())
    return gaps, seconds


def _worker_main(job: ReplayJob, results: Connection) -> None:
    try:
        outcome: tuple[str, Any] = ("done", _replay_partition(job))
    except BaseException:
        outcome = ("failed", traceback.format_exc())
    results.send(outcome)
    results.close()


def _run_workers(
    jobs: Sequence[ReplayJob],
    while_running: Callable[[], None] | None = None,
) -> list[tuple[Counter[str], dict[str, float]]]:
    """One forked process per job, each ended (its memory returned) before the parent reads the
    replays: a pool would keep finished workers, or fork fresh ones from the parent, meanwhile.
    ``while_running`` runs here once every worker has forked (no thread of it can be inherited)."""
    context = multiprocessing.get_context("fork")
    running = []
    results = []
    try:
        for job in jobs:
            receive, send = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker_main, args=(job, send), name=f"distillguard-replay-{job.worker}", daemon=True
            )
            process.start()
            send.close()
            running.append((process, receive))
        if while_running is not None:
            while_running()
        for process, receive in running:
            try:
                status, payload = receive.recv()
            except EOFError:
                process.join()
                raise RuntimeError(
                    f"scan worker {process.name} ended without a result (exit code {process.exitcode}; "
                    "-9 is usually the system running out of memory)"
                ) from None
            process.join()
            if status != "done":
                raise RuntimeError(f"scan worker {process.name} failed:\n{payload}")
            results.append(payload)
    finally:
        for process, _ in running:
            if process.is_alive():
                process.terminate()
                process.join()
    return results


def _read_replays(path: Path) -> Iterator[AccountReplay]:
    with open(path, "rb") as source:
        while True:
            try:
                yield pickle.load(source)
            except EOFError:
                return


def _read_partition(
    store: CallStore, stage: CallStage, worker: int, workers: int, progress: bool
) -> Counter[str]:
    columns = read_columns()
    partition = f" AND hash(account_id) % {workers} = {worker}" if workers > 1 else ""
    bar = tqdm(
        desc=f"replay {worker + 1}/{workers}",
        unit=" calls",
        position=worker,
        disable=not progress,
        leave=False,
    )
    gaps: Counter[str] = Counter()
    batches = 0
    # one DuckDB thread per worker: the workers already use the cores, and DuckDB's own threads
    # only add coordination (~15% of the reading CPU, measured on the default preset); one
    # connection for all days (a connection per day cost ~35% of the reading CPU)
    con = store.connect(threads=1)
    try:
        # one day at a time: DuckDB sorts a day's calls, not the whole store (wide text columns make
        # a full sort memory-hungry); days are partitions, so concatenating them keeps time order. A
        # day stored in time order already is read as it lies (the sort was ~30% of the reading CPU).
        for day in store.days():
            where = f"{PARTITION} = '{day}'{partition}"
            order_by = None if store.in_time_order(day) else "ts, event_id"
            for batch in store.iter_batches(
                columns=columns, batch_size=BATCH_ROWS, order_by=order_by, where=where, connection=con
            ):
                stage.start_clock()
                stage.observe_batch(batch)
                gaps.update(input_gaps(batch))
                bar.update(len(batch))
                batches += 1
                if batches % COLLECT_EVERY == 0:
                    gc.collect(1)  # the cyclic garbage of the last batches (see _replay_partition)
    finally:
        con.close()
    bar.close()
    return gaps


def replay_store(
    store: CallStore,
    *,
    workers: int = 2,
    use_embeddings: bool = True,
    progress: bool = True,
    while_replaying: Callable[[], None] | None = None,
) -> ReplayResult:
    """Every account's calls replayed in time order; accounts are split over `workers` processes.
    The replays' windows come back packed (`AccountWindow.packed`): read-only, a fifth the memory.

    ``while_replaying`` runs in this process once the workers have started (the scan loads its
    scorer and the linking code there, off the critical path); should it raise, the workers are
    stopped and the error goes up."""
    started = time.perf_counter()
    buckets = max(1, math.ceil(store.count() / workers / BUCKET_CALLS))
    accounts: dict[str, AccountReplay] = {}
    gaps: Counter[str] = Counter()
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="distillguard-replays-") as handover:
        jobs = [
            ReplayJob(
                str(store.path),
                w,
                workers,
                use_embeddings,
                progress,
                buckets,
                str(Path(handover) / f"worker-{w}"),
            )
            for w in range(workers)
        ]
        cpu = time.process_time()
        warm_up_signals(use_embeddings)
        parent = {"parent: pattern tables and text models": time.process_time() - cpu}
        # forked workers inherit the compiled pattern tables and text models; no thread pool
        # (DuckDB, the embedding tokenizer) is started before this point
        if workers == 1:
            if while_replaying is not None:
                while_replaying()
            parts = [_replay_partition(jobs[0])]
        else:
            parts = _run_workers(jobs, while_replaying)
        # unpickling the replays makes millions of small objects that live until the scan ends
        # (frozen below), which the cyclic collector would otherwise rescan while they arrive
        enabled = gc.isenabled()
        gc.disable()
        cpu = time.process_time()
        for job, (part_gaps, part_seconds) in zip(jobs, parts, strict=True):
            gaps.update(part_gaps)
            for name, value in part_seconds.items():
                seconds[name] = seconds.get(name, 0.0) + value
            for replay in _read_replays(Path(job.handover)):
                # the hash partition guarantees disjoint accounts; anything else is a bug
                if replay.account_id in accounts:
                    raise RuntimeError(f"account replayed by two workers: {replay.account_id}")
                accounts[replay.account_id] = replay
        parent["parent: receive the workers' replays"] = time.process_time() - cpu
        gc.freeze()
        if enabled:
            gc.enable()
    calls = sum(r.window.n for r in accounts.values())
    # the replays live until the scan ends: keep the cyclic collector from rescanning them in every
    # later stage (linking and the outputs create many objects of their own)
    gc.freeze()
    return ReplayResult(
        accounts=dict(sorted(accounts.items())),
        calls=calls,
        seconds=time.perf_counter() - started,
        notices=gap_notices(gaps, calls),
        stage_seconds={**seconds, **parent},
    )


def checkpoint_matrix(replays: Sequence[AccountReplay]) -> tuple[np.ndarray, np.ndarray]:
    """All checkpoint feature vectors stacked, and the account index of each row."""
    rows = [
        np.asarray(r.checkpoint_features, dtype=np.float32) for r in replays if len(r.checkpoint_features)
    ]
    owners = [
        np.full(len(r.checkpoint_features), i) for i, r in enumerate(replays) if len(r.checkpoint_features)
    ]
    if not rows:
        return np.zeros((0, len(FEATURES)), dtype=np.float32), np.zeros(0, dtype=int)
    return np.concatenate(rows), np.concatenate(owners)


@dataclass
class AccountOutcome:
    """Scoring of one account's replay: its risk over time and when it would have been flagged."""

    account_id: str
    risk: float
    risks: np.ndarray
    first_flag_index: int | None  # index into the account's checkpoints
    reasons: list[Reason]


def first_at_or_above(values: np.ndarray, threshold: float) -> int | None:
    """Index of the first value ≥ threshold, or None.

    >>> first_at_or_above(np.array([0.1, 0.7, 0.9]), 0.5)
    1
    >>> first_at_or_above(np.array([0.1]), 0.5) is None
    True
    """
    hits = np.flatnonzero(values >= threshold)
    return int(hits[0]) if len(hits) else None


def account_summary_reasons(replay: AccountReplay) -> list[Reason]:
    """Per-signal evidence: how often each signal fired on the account, with its strongest call."""
    reasons = []
    n = replay.window.n
    for name, evidence in sorted(replay.evidence.items(), key=lambda kv: -kv[1].fired):
        if evidence.best is None:
            continue
        share = evidence.fired / n if n else 0.0
        matched = "; ".join(evidence.best.matched[:3]) or evidence.best.detail
        reasons.append(
            Reason(
                signal=name,
                score=round(share, 4),
                detail=f"fired on {evidence.fired} of {n} calls ({share:.0%}); strongest on {evidence.event_id}: "
                f"{matched}",
            )
        )
    return reasons


ProgressFn = Callable[[str], None]


def write_jsonl(path: Path, records: Sequence[Any]) -> None:
    with path.open("wb") as out:
        for record in records:
            out.write(to_json_line(record) + b"\n")


def load_account_records(path: Path | None, notices: list[str]) -> dict[str, Account]:
    if path is None:
        notices.append(
            "no account records given: payment-fingerprint, sign-up-IP and sanctioned-programme checks are off"
        )
        return {}
    return read_accounts(path)


def verdict_of(risk: float, distiller: float, suspicious: float) -> str:
    if risk >= distiller:
        return "distiller"
    if risk >= suspicious:
        return "suspicious"
    return "benign"


def account_verdict(
    account_id: str,
    risk: float,
    verdict: str,
    cluster_id: str | None,
    flagged: tuple[datetime, int] | None,
    reasons: list[Reason],
) -> AccountVerdict:
    return AccountVerdict(
        account_id=account_id,
        risk=round(float(min(max(risk, 0.0), 1.0)), 6),
        verdict=verdict,
        cluster_id=cluster_id,
        first_flagged_at=flagged[0] if flagged else None,
        calls_to_flag=flagged[1] if flagged else None,
        reasons=reasons,
    )


# -- scoring, linking, verdicts ---------------------------------------------------------------


@dataclass
class ScoredAccounts:
    """Risk of every account at each of its checkpoints (own calls only) and at the end."""

    ids: list[str]
    checkpoint_risks: list[np.ndarray]
    own_risk: np.ndarray  # max over checkpoints: an account flagged once stays flagged


def score_replays(
    replays: Sequence[AccountReplay], scorer: AccountScorer, chunk: int = 200_000
) -> ScoredAccounts:
    """The scorer applied to every checkpoint of every account, in bounded chunks."""
    matrix, owners = checkpoint_matrix(replays)
    risks = np.zeros(len(matrix))
    for start in range(0, len(matrix), chunk):
        risks[start : start + chunk] = scorer.risk(matrix[start : start + chunk].astype(np.float64))
    per_account = _split(risks, owners, len(replays))
    own = np.array([r.max() if len(r) else 0.0 for r in per_account])
    return ScoredAccounts([r.account_id for r in replays], per_account, own)


def _split(values: np.ndarray, owners: np.ndarray, n: int) -> list[np.ndarray]:
    # owners is sorted (rows were stacked account by account), so one pass of boundaries suffices
    bounds = np.searchsorted(owners, np.arange(n + 1))
    return [values[bounds[i] : bounds[i + 1]] for i in range(n)]


def merged_window(replays: Sequence[AccountReplay]) -> Any:
    """One window over all the calls of a cluster's accounts (windows are mergeable)."""
    merged = replays[0].window.unpacked()
    for replay in replays[1:]:
        merged.merge(replay.window)
    return merged


@dataclass
class ClusterOutcome:
    cluster: ActorCluster
    risk: float
    reasons: list[Reason]
    flagged_at: datetime | None  # earliest time a member was flagged on its own calls


def cluster_outcomes(
    clusters: Sequence[ActorCluster],
    replays: dict[str, AccountReplay],
    scored: ScoredAccounts,
    scorer: AccountScorer,
) -> list[ClusterOutcome]:
    """Each cluster scored as one actor: its members' calls pooled into one merged window."""
    index = {aid: i for i, aid in enumerate(scored.ids)}
    threshold = scorer.thresholds.distiller
    outcomes = []
    for cluster in clusters:
        members = [replays[aid] for aid in cluster.accounts if aid in replays]
        if not members:
            continue
        pooled = feature_vector(merged_window(members).features()).astype(np.float64)
        pooled_risk = float(scorer.risk(pooled.reshape(1, -1))[0])
        member_risks = [float(scored.own_risk[index[m.account_id]]) for m in members]
        own_max = max(member_risks)
        if own_max >= scorer.thresholds.suspicious:
            risk = max(pooled_risk, own_max)
        else:
            # pooled behaviour alone (no member even suspicious on its own calls) sends the actor to
            # human review, never to enforcement: a merged window of many quiet accounts is not a
            # shape the model was trained on, and a false link would flag every member at once
            risk = max(own_max, min(pooled_risk, float(np.nextafter(threshold, 0.0))))
        reasons = [
            Reason(
                signal="linking:actor",
                score=round(risk, 4),
                detail=f"{len(cluster.accounts)} linked accounts scored together: pooled risk {pooled_risk:.3f}"
                + (
                    ""
                    if own_max >= scorer.thresholds.suspicious
                    else " (review only: no member suspicious alone)"
                )
                + ", "
                f"highest member {max(member_risks):.3f}, members flagged on their own: "
                f"{sum(r >= threshold for r in member_risks)}",
            )
        ]
        if pooled_risk >= threshold:
            reasons += [r for r in scorer.reasons(pooled) if r.signal.startswith("rule:")][:3]
        flagged_times = []
        for member in members:
            risks = scored.checkpoint_risks[index[member.account_id]]
            first = first_at_or_above(risks, threshold)
            if first is not None:
                flagged_times.append(member.checkpoint_ts[first])
        outcomes.append(ClusterOutcome(cluster, risk, reasons, min(flagged_times) if flagged_times else None))
    return outcomes


def calls_before(replay: AccountReplay, when: datetime) -> tuple[datetime, int]:
    """The first checkpoint of the account at or after `when` (or its last one): (time, calls)."""
    for ts, n in zip(replay.checkpoint_ts, replay.checkpoint_calls, strict=True):
        if ts >= when:
            return ts, n
    return replay.checkpoint_ts[-1], replay.checkpoint_calls[-1]


@dataclass
class ScanResult:
    verdicts: list[AccountVerdict]
    clusters: list[ClusterOutcome]
    replay: ReplayResult
    scored: ScoredAccounts
    notices: list[str]
    thresholds: Any
    accounts: dict[str, Account]
    # CPU seconds of the stages after the replay (in the parent process)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def decide(
    replay: ReplayResult,
    scorer: AccountScorer,
    accounts: dict[str, Account],
    *,
    known_actors: Sequence[KnownActor] = (),
    notices: list[str] | None = None,
) -> ScanResult:
    """Score, link, propagate actor evidence and give every account its verdict."""
    from distillguard.linking.actor_cluster import link

    notices = (notices if notices is not None else []) + replay.notices
    seconds: dict[str, float] = {}
    replays = list(replay.accounts.values())
    # Scoring and the model's reasons (LightGBM, which lets go of the GIL while it predicts) run in
    # a thread of their own while this one links the accounts (Python): neither reads the other's
    # result, and the second core would otherwise sit idle through linking. CPU seconds are each
    # thread's own.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="distillguard-score") as pool:
        scoring = pool.submit(_score_and_explain, replays, scorer)
        started = time.thread_time()
        windows = {r.account_id: r.window for r in replays}
        clusters = link(windows, accounts, known_actors=known_actors)
        seconds["link accounts"] = time.thread_time() - started
        scored, explained, scoring_seconds = scoring.result()
    seconds.update(scoring_seconds)
    started = time.thread_time()
    outcomes = cluster_outcomes(clusters, replay.accounts, scored, scorer)
    cluster_of = {aid: outcome for outcome in outcomes for aid in outcome.cluster.accounts}
    seconds["actor evidence"] = time.thread_time() - started
    started = time.thread_time()
    t = scorer.thresholds
    verdicts = []
    for i, r in enumerate(replays):
        own = float(scored.own_risk[i])
        outcome = cluster_of.get(r.account_id)
        risk = max(own, outcome.risk) if outcome else own
        reasons = _reasons_for(r, explained.get(i, []), outcome, own)
        flagged = None
        first = first_at_or_above(scored.checkpoint_risks[i], t.distiller)
        if first is not None:
            flagged = (r.checkpoint_ts[first], r.checkpoint_calls[first])
        elif outcome is not None and outcome.risk >= t.distiller:
            # flagged through its actor: once a linked account was flagged, or when linking ran
            flagged = calls_before(r, outcome.flagged_at or r.checkpoint_ts[-1])
        account = accounts.get(r.account_id)
        verdict = verdict_of(risk, t.distiller, t.suspicious)
        if account is not None and account.sanctioned_distillation and verdict != "benign":
            reasons.insert(
                0,
                Reason(
                    signal="policy:sanctioned",
                    score=0.0,
                    detail=f"enrolled in the sanctioned distillation programme; would otherwise be {verdict} "
                    f"(risk {risk:.3f})",
                ),
            )
            verdict, flagged = "benign", None
        if verdict == "benign":
            flagged = None
        cluster_id = outcome.cluster.cluster_id if outcome else None
        verdicts.append(account_verdict(r.account_id, risk, verdict, cluster_id, flagged, reasons))
    seconds["verdicts"] = time.thread_time() - started
    return ScanResult(verdicts, outcomes, replay, scored, notices, t, accounts, seconds)


def _score_and_explain(
    replays: Sequence[AccountReplay], scorer: AccountScorer
) -> tuple[ScoredAccounts, dict[int, list[Reason]], dict[str, float]]:
    """Every checkpoint scored, then the model's reasons where each account looked worst, with the
    CPU seconds of this thread for each."""
    started = time.thread_time()
    scored = score_replays(replays, scorer)
    seconds = {"score checkpoints": time.thread_time() - started}
    started = time.thread_time()
    explained = _worst_checkpoint_reasons(replays, scored, scorer)
    seconds["model reasons (SHAP)"] = time.thread_time() - started
    return scored, explained, seconds


def _worst_checkpoint_reasons(
    replays: Sequence[AccountReplay], scored: ScoredAccounts, scorer: AccountScorer
) -> dict[int, list[Reason]]:
    """The scorer's reasons at the checkpoint where each account looked worst (accounts whose own
    risk is above 0.05), all rows explained in one call to the model."""
    wanted = [
        i
        for i, r in enumerate(replays)
        if float(scored.own_risk[i]) > 0.05 and len(r.checkpoint_features) and len(scored.checkpoint_risks[i])
    ]
    if not wanted:
        return {}
    rows = np.stack(
        [replays[i].checkpoint_features[int(np.argmax(scored.checkpoint_risks[i]))] for i in wanted]
    ).astype(np.float64)
    return dict(zip(wanted, scorer.reasons_many(rows), strict=True))


def _reasons_for(
    replay: AccountReplay, explained: list[Reason], outcome: ClusterOutcome | None, own: float
) -> list[Reason]:
    # the evidence at the checkpoint where the account looked worst
    reasons: list[Reason] = list(explained)
    if outcome is not None and outcome.risk > own:
        reasons = outcome.reasons + reasons
    reasons += account_summary_reasons(replay)
    return reasons[:8]
