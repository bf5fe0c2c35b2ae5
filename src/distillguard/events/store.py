"""The Parquet call store every later stage reads: one hive-style partition per UTC day
(`day=YYYY-MM-DD/`), columns of `call_view.STORE_SCHEMA`, written in bounded batches and read
through DuckDB or pyarrow record-batch streams so memory stays flat however many calls it holds.

Layout of a store directory:
    day=2026-02-12/part-<run>-<n>.parquet   the calls
    _rejects/<run>.jsonl                    lines that could not be ingested (file, line, reason)
    _ingests.jsonl                          one line per committed ingest run (sources, counts)

Re-ingesting never duplicates silently: a run writes into `_staging/<run>/` first, and commits
(moves its files into the day partitions) only when none of its event_ids is already in the
store or repeated within the run; otherwise the store is left as it was and the run is refused.

The store holds prompts and answers (personal data): every file it writes is created owner-only
(0600, folders 0700) whatever the umask, and credentials are removed from each call before it is
written even when the reader did so already (a third-party reader may not).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import duckdb
import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from distillguard.events.call_view import STORE_SCHEMA, VIEW_SCHEMA, view_of
from distillguard.events.credentials import may_hold_secret, redact_text, strip_event_credentials
from distillguard.events.model import CallEvent
from distillguard.events.readers.base import Reject

PARTITION = "day"
REJECTS_DIR = "_rejects"
STAGING_DIR = "_staging"
MANIFEST = "_ingests.jsonl"
DEFAULT_BATCH_ROWS = 8_192
_ROWS_PER_FILE = 1_000_000
_VIEW_NAMES = VIEW_SCHEMA.names
_encode = msgspec.json.Encoder(order="deterministic").encode
FILE_MODE = 0o600
DIR_MODE = 0o700


def rebatch(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """`batches` cut and joined into batches of exactly `size` rows (zero-copy slices where a batch
    holds them), the last one shorter; empty batches are dropped.

    >>> parts = [pa.record_batch({"x": pa.array(range(n), pa.int64())}) for n in (5, 0, 2, 4)]
    >>> [len(b) for b in rebatch(parts, 3)]
    [3, 3, 3, 2]
    """
    pending: pa.RecordBatch | None = None
    for batch in batches:
        if not len(batch):
            continue
        if pending is not None:
            batch = pa.concat_batches([pending, batch])
            pending = None
        if len(batch) == size:
            yield batch
            continue
        start = 0
        while len(batch) - start >= size:
            yield batch.slice(start, size)
            start += size
        if start < len(batch):
            pending = batch.slice(start)
    if pending is not None:
        yield pending


def private_dir(path: Path) -> None:
    """Create `path` and any missing parents below an existing folder with DIR_MODE; the mode is
    set after creation because the umask would otherwise narrow (or a umask of 0 widen) it."""
    missing: list[Path] = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # created meanwhile by a concurrent run: not ours to change
            continue
        os.chmod(folder, DIR_MODE)


def private_file(path: Path, mode: str = "wb") -> IO[bytes]:
    """Open `path` for writing ("wb", "ab" or "xb"), created with FILE_MODE and set to it."""
    flags = {"wb": os.O_TRUNC, "ab": os.O_APPEND, "xb": os.O_EXCL}[mode]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode.replace("x", "w"))
    except BaseException:
        os.close(fd)
        raise


class StoreError(RuntimeError):
    """The store cannot be read, or an ingest into it was refused (the store is unchanged)."""


class IngestStats(msgspec.Struct, kw_only=True):
    """What one ingest run saw and wrote; printed as the command's summary.

    `lines` counts calls plus rejects: the input lines for formats with one call per line
    (canonical, litellm); OTLP lines may hold several spans and Batch files join two lines.
    """

    run_id: str
    files: list[str]
    lines: int = 0
    events: int = 0
    rejects: int = 0
    rejects_by_reason: dict[str, int] = {}
    days: dict[str, int] = {}
    committed: bool = False
    rejects_file: str | None = None
    seconds: float = 0.0


_NUMBER = re.compile(r"\d+")


def _reason_kind(reason: str) -> str:
    """The reason with its numbers (byte offsets, span indices, earlier line numbers) replaced by
    N, so the summary counts one row per kind of problem rather than one per line.

    >>> _reason_kind("invalid JSON: JSON is malformed: invalid character (byte 17)")
    'invalid JSON: JSON is malformed: invalid character (byte N)'
    """
    return _NUMBER.sub("N", reason)[:160]


_WRITE_SCHEMA = STORE_SCHEMA  # the day is in the directory name, not a column of the files


def _batch_of(rows: list[tuple[Any, ...]]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    arrays = [pa.array(values, type=field.type) for values, field in zip(columns, _WRITE_SCHEMA, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=_WRITE_SCHEMA)


class _DayFiles:
    """One open Parquet file per day, fed in row groups of `batch_rows`, so memory holds at most
    a few batches of rows whatever the input size or order."""

    def __init__(self, root: Path, run_id: str, batch_rows: int) -> None:
        self.root = root
        self.run_id = run_id
        self.batch_rows = batch_rows
        self.buffers: dict[str, list[tuple[Any, ...]]] = {}
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.rows_in_file: Counter[str] = Counter()
        self.file_counts: Counter[str] = Counter()
        self.buffered = 0

    def add(self, day: str, row: tuple[Any, ...]) -> None:
        buffer = self.buffers.setdefault(day, [])
        buffer.append(row)
        self.buffered += 1
        if len(buffer) >= self.batch_rows:
            self._flush(day)
        elif self.buffered >= 4 * self.batch_rows:  # input not in time order: many days at once
            self._flush(max(self.buffers, key=lambda d: len(self.buffers[d])))

    def _flush(self, day: str) -> None:
        rows = self.buffers.pop(day, [])
        if not rows:
            return
        self.buffered -= len(rows)
        writer = self.writers.get(day)
        if writer is not None and self.rows_in_file[day] >= _ROWS_PER_FILE:
            writer.close()
            writer = None
        if writer is None:
            folder = self.root / f"{PARTITION}={day}"
            private_dir(folder)
            name = f"part-{self.run_id}-{self.file_counts[day]}.parquet"
            self.file_counts[day] += 1
            self.rows_in_file[day] = 0
            private_file(folder / name, "xb").close()  # pyarrow truncates it, keeping the mode
            writer = pq.ParquetWriter(folder / name, _WRITE_SCHEMA, compression="zstd")
            self.writers[day] = writer
        writer.write_batch(_batch_of(rows))
        self.rows_in_file[day] += len(rows)

    def close(self) -> None:
        for day in list(self.buffers):
            self._flush(day)
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


def _write(
    items: Iterable[CallEvent | Reject],
    stats: IngestStats,
    rejects_out: Any,
    files: _DayFiles,
) -> None:
    """Write calls into day files and rejects to `rejects_out`, counting both into `stats`."""
    by_reason: Counter[str] = Counter()
    by_day: Counter[str] = Counter()
    try:
        for item in items:
            stats.lines += 1
            if isinstance(item, Reject):
                stats.rejects += 1
                item = redacted_reject(item)
                by_reason[_reason_kind(item.reason)] += 1
                rejects_out.write(_encode(item) + b"\n")
                continue
            day, row = store_row(item)
            files.add(day, row)
            by_day[day] += 1
            stats.events += 1
    finally:
        files.close()
    stats.rejects_by_reason = dict(by_reason.most_common())
    stats.days = dict(sorted(by_day.items()))


def redacted_reject(item: Reject) -> Reject:
    """A reject as written to `_rejects/`: a reason may quote a field of the line (an OTel
    operation name, say), so file and reason lose anything that looks like a credential."""
    return Reject(file=redact_text(item.file)[0], line=item.line, reason=redact_text(item.reason)[0])


def store_row(event: CallEvent) -> tuple[str, tuple[Any, ...]]:
    """The UTC day partition of a call and its row of `STORE_SCHEMA`, credentials removed (the
    one place both engines' ingest build rows)."""
    request_json, response_json = _bodies_without_credentials(event)
    day = event.ts.astimezone(UTC).strftime("%Y-%m-%d")
    return day, (*msgspec.structs.astuple(view_of(event)), request_json.decode(), response_json)


def _bodies_without_credentials(event: CallEvent) -> tuple[bytes, str | None]:
    """The request and response JSON to write. Credentials are removed from the event first when
    its encoded parts show any hint of one; most calls show none and cost three Hyperscan passes."""
    request_json = _encode(event.request)
    response_json = _encode(event.response) if event.response is not None else None
    client = event.client
    scalars = _encode(
        [event.event_id, event.account_id, event.key_id, event.end_user, event.endpoint,
         client.ip, client.user_agent, client.router]
    )  # fmt: skip
    hinted = (
        may_hold_secret(request_json)
        or (response_json is not None and may_hold_secret(response_json))
        or may_hold_secret(scalars)
    )
    if hinted and strip_event_credentials(event):
        request_json = _encode(event.request)
        response_json = _encode(event.response) if event.response is not None else None
    return request_json, response_json.decode() if response_json is not None else None


def _check_view_order() -> None:
    # astuple() follows CallView's field order; the store schema must list the same names in it.
    from distillguard.events.call_view import CallView

    if tuple(CallView.__struct_fields__) != tuple(_VIEW_NAMES):
        raise StoreError("CallView fields and VIEW_SCHEMA columns differ in name or order")


@dataclass
class IngestRun:
    """An ingest run in progress: its calls are written under `staging`, its rejects to
    `rejects_path` (counted in `stats`), until `commit` decides what reaches the store."""

    root: Path
    stats: IngestStats
    staging: Path
    rejects_path: Path
    started: float

    def commit(self, allow_rejects: bool) -> IngestStats:
        """Add the staged calls to the store, unless a line was rejected (and `allow_rejects` is
        off) or an event_id is already in the store or repeated (StoreError); the rejects file
        stays when it lists anything, so the lines can be fixed."""
        stats = self.stats
        if stats.rejects:
            stats.rejects_file = str(self.rejects_path)
        elif self.rejects_path.exists():
            self.rejects_path.unlink()
        if stats.rejects and not allow_rejects:
            return stats
        if stats.events:
            CallStore._refuse_duplicates(self.root, self.staging)
            CallStore._commit(self.root, self.staging)
        stats.committed = True
        stats.seconds = time.perf_counter() - self.started
        with private_file(self.root / MANIFEST, "ab") as manifest:
            manifest.write(_encode(stats) + b"\n")
        return stats


class CallStore:
    """A Parquet call store on disk. `CallStore.open(path)` reads one; `ingest` writes one."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # ---- reading -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> CallStore:
        store = cls(path)
        if not store.path.is_dir():
            raise StoreError(f"no call store at {store.path} (create one with `distillguard ingest`)")
        return store

    def files(self) -> list[str]:
        return sorted(str(p) for p in self.path.glob(f"{PARTITION}=*/*.parquet"))

    def in_time_order(self, day: str) -> bool:
        """Whether the calls of `day`, as DuckDB reads them without ORDER BY (its files in `files()`
        order, each front to back: insertion order is preserved), are already in strictly
        increasing (ts, event_id) order; a reader sorted by those keys can then skip the sort.

        Ingest writes a day's calls in arrival order, in time order for a gateway's or simulator's
        log; reading the two key columns costs ~1/30 of a day's sort of the scan's wide rows."""
        folder = str(self.path / f"{PARTITION}={day}") + os.sep
        files = [f for f in self.files() if f.startswith(folder)]
        try:
            keys = pa.concat_tables(
                [pq.read_table(f, columns=["ts", "event_id"], use_threads=False) for f in files]
            )
        except (pa.ArrowInvalid, KeyError):  # files of different layouts: let DuckDB sort
            return False
        ts, event_id = keys.column("ts"), keys.column("event_id")
        if ts.null_count or event_id.null_count or not pa.types.is_timestamp(ts.type):
            return False
        step = np.diff(ts.combine_chunks().cast(pa.int64()).to_numpy())
        if (step < 0).any():
            return False
        ties = pa.array(np.flatnonzero(step == 0))
        ids = event_id.combine_chunks()
        before, after = ids.take(ties).to_pylist(), pc.add(ties, 1)
        return all(a < b for a, b in zip(before, ids.take(after).to_pylist(), strict=True))

    def _dataset(self) -> ds.Dataset:
        schema = STORE_SCHEMA.append(pa.field(PARTITION, pa.string()))
        return ds.dataset(
            self.files(),
            schema=schema,
            format="parquet",
            partitioning="hive",
            partition_base_dir=str(self.path),
        )

    def connect(
        self,
        connection: duckdb.DuckDBPyConnection | None = None,
        *,
        memory_limit: str | None = "2GB",
        threads: int | None = None,
    ) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with a view named `calls` over the whole store.

        A new connection gets `memory_limit` (None: DuckDB's default of most of the RAM) and a
        spill directory, so sorts and joins over months of calls go to disk instead of failing;
        `threads` (None: one per core) bounds its threads.
        """
        con = connection
        if con is None:
            con = duckdb.connect()
            if memory_limit:
                con.execute(f"SET memory_limit = '{memory_limit}'")
            if threads is not None:
                con.execute(f"SET threads = {int(threads)}")
            # One spill folder per connection (DuckDB creates it on the first spill and removes it
            # on close); scan workers in parallel processes must not share temp files.
            spill = Path(tempfile.gettempdir()) / f"distillguard-duckdb-{uuid.uuid4().hex}"
            con.execute(f"SET temp_directory = '{spill.as_posix()}'")
            # callers draw their own progress (tqdm); DuckDB's bar would interleave with it
            con.execute("SET enable_progress_bar = false")
        files = self.files()
        if files:
            listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(
                f"CREATE OR REPLACE VIEW calls AS SELECT * FROM read_parquet([{listing}], hive_partitioning = true, hive_types = {{'day': VARCHAR}})"
            )
        else:  # an empty store still answers queries, with no rows
            con.register("_empty_calls", self._dataset().to_table())
            con.execute("CREATE OR REPLACE VIEW calls AS SELECT * FROM _empty_calls")
        return con

    def iter_batches(
        self,
        columns: Sequence[str] | None = None,
        batch_size: int = 65_536,
        order_by: str | Sequence[str] | None = None,
        where: str | None = None,
        threads: int | None = None,
        connection: duckdb.DuckDBPyConnection | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream the store as record batches of at most `batch_size` rows.

        Without `order_by` (or `where`) pyarrow scans the files directly (fastest); with them
        DuckDB sorts or filters out of core and streams the result, in batches of exactly
        `batch_size` rows but the last. `where` is a SQL condition; `threads` bounds DuckDB's
        threads (a process that is one of several workers wants 1). `connection` (from `connect`,
        left open) serves a caller that queries many times: a new connection per query costs ~0.1 s
        of CPU (a scan worker's query per day).
        """
        if order_by is None and where is None:
            # Read-ahead is kept small: each batch of a wide scan holds the prompt, answer and raw
            # bodies of batch_size calls, and the defaults (16 batches x 4 files) keep about 1 GB
            # in flight on a 200k-call store instead of a few batches.
            scanner = self._dataset().scanner(
                columns=list(columns) if columns else None,
                batch_size=batch_size,
                batch_readahead=2,
                fragment_readahead=1,
            )
            for batch in scanner.to_batches():
                if len(batch):
                    yield batch
            return
        con = connection if connection is not None else self.connect(threads=threads)
        select = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        sql = f"SELECT {select} FROM calls"
        if where:
            sql += f" WHERE {where}"
        if order_by:
            keys = [order_by] if isinstance(order_by, str) else list(order_by)
            sql += " ORDER BY " + ", ".join(keys)
        # batches of exactly batch_size rows but the last, whatever DuckDB's own vector sizes: a scan
        # worker's batch boundaries are the same with and without the sort (a larger read, 65,536
        # rows cut here, cost more CPU and ~150 MB more memory per worker)
        reader: pa.RecordBatchReader = con.sql(sql).to_arrow_reader(batch_size)
        try:
            yield from rebatch(reader, batch_size)
        finally:
            if connection is None:
                con.close()

    def count(self) -> int:
        return int(self._dataset().count_rows())

    def days(self) -> list[str]:
        return sorted(
            p.name.split("=", 1)[1] for p in self.path.glob(f"{PARTITION}=*") if any(p.glob("*.parquet"))
        )

    def ingests(self) -> list[dict[str, Any]]:
        manifest = self.path / MANIFEST
        if not manifest.exists():
            return []
        return [msgspec.json.decode(line) for line in manifest.read_bytes().splitlines() if line.strip()]

    # ---- writing -------------------------------------------------------------------------
    @classmethod
    def ingest(
        cls,
        path: str | Path,
        items: Iterable[CallEvent | Reject],
        *,
        sources: Sequence[str],
        allow_rejects: bool = False,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> IngestStats:
        """Write `items` into the store at `path` (created if absent) and return the run's stats.

        The run is committed when it has no rejects (or `allow_rejects`) and none of its
        event_ids is already in the store or repeated within it; otherwise nothing is added to
        the store (`stats.committed` is False, or StoreError for duplicates). The rejects file is
        kept either way so the lines can be fixed.
        """
        _check_view_order()
        root = Path(path)
        root.parent.mkdir(parents=True, exist_ok=True)
        private_dir(root)
        with cls.ingest_run(root, sources) as run:
            with private_file(run.rejects_path) as rejects_out:
                _write(items, run.stats, rejects_out, _DayFiles(run.staging, run.stats.run_id, batch_rows))
            return run.commit(allow_rejects)

    @staticmethod
    @contextmanager
    def ingest_run(root: Path, sources: Sequence[str]) -> Iterator[IngestRun]:
        """One ingest run's staging folder, rejects file and stats (both engines' ingest write into
        it, then `IngestRun.commit`); the staging folder is removed on the way out, committed or not."""
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
        private_dir(root / REJECTS_DIR)
        run = IngestRun(
            root=root,
            stats=IngestStats(run_id=run_id, files=list(sources)),
            staging=root / STAGING_DIR / run_id,
            rejects_path=root / REJECTS_DIR / f"{run_id}.jsonl",
            started=time.perf_counter(),
        )
        try:
            yield run
        finally:
            run.stats.seconds = time.perf_counter() - run.started
            shutil.rmtree(run.staging, ignore_errors=True)
            staging_root = root / STAGING_DIR
            if staging_root.is_dir() and not any(staging_root.iterdir()):
                staging_root.rmdir()

    @staticmethod
    def _refuse_duplicates(root: Path, staging: Path) -> None:
        new = f"read_parquet('{staging.as_posix()}/{PARTITION}=*/*.parquet', hive_partitioning = false)"
        con = duckdb.connect()
        try:
            repeated = con.execute(
                f"SELECT event_id, count(*) AS n FROM {new} GROUP BY event_id HAVING n > 1 LIMIT 3"
            ).fetchall()
            if repeated:
                total = con.execute(
                    f"SELECT count(*) FROM (SELECT event_id FROM {new} GROUP BY event_id HAVING count(*) > 1)"
                ).fetchone()
                raise StoreError(
                    f"refused: {total[0] if total else '?'} event_ids occur more than once in this input "
                    f"(e.g. {', '.join(repr(r[0]) for r in repeated)}); the store is unchanged"
                )
            existing = CallStore(root).files()
            if existing:
                listing = ", ".join("'" + f.replace("'", "''") + "'" for f in existing)
                clash = con.execute(
                    f"SELECT count(*) FROM {new} AS n WHERE n.event_id IN "
                    f"(SELECT event_id FROM read_parquet([{listing}], hive_partitioning = false))"
                ).fetchone()
                if clash and clash[0]:
                    raise StoreError(
                        f"refused: {clash[0]} event_ids of this input are already in the store "
                        "(was it ingested before?); the store is unchanged"
                    )
        finally:
            con.close()

    @staticmethod
    def _commit(root: Path, staging: Path) -> None:
        for part in sorted(staging.glob(f"{PARTITION}=*")):
            target = root / part.name
            private_dir(target)
            for file in sorted(part.glob("*.parquet")):
                os.replace(file, target / file.name)
