"""`distillguard ingest --engine spark`: API logs into the call store, file by file on a cluster.

Each task reads whole files with the embedded engine's reader for the format (so every reject has
its file, line and reason, and credentials go exactly as in the embedded ingest) and yields the
store's rows as Arrow batches; Spark writes them partitioned by day into the run's staging
folder. The driver then does what the embedded ingest does after writing: rejects into
`_rejects/<run>.jsonl`, the duplicate check, the commit into the day partitions and the
`_ingests.jsonl` line. A format whose runs join several files (OpenAI Batch: inputs to outputs)
reads them in one task.

The log files must be readable at the same path by every executor (local mode, or a file system
all nodes mount); the store folder must be on a file system the driver can rename files in.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pyarrow as pa
import pyarrow.dataset as ds

from distillguard.events.call_view import STORE_SCHEMA
from distillguard.events.readers import ReaderOptions, reader_named
from distillguard.events.readers.base import Reject, UnreadableInput
from distillguard.events.store import (
    DIR_MODE,
    FILE_MODE,
    PARTITION,
    CallStore,
    IngestStats,
    _check_view_order,
    _reason_kind,
    private_dir,
    private_file,
    redacted_reject,
    store_row,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# partition values of rows that are not calls
REJECTED = "_rejected"
FATAL = "_unreadable"
ROWS_PER_BATCH = 8192
_REJECT_FIELDS = [
    pa.field(PARTITION, pa.string()),
    pa.field("reject_file", pa.string()),
    pa.field("reject_line", pa.int64()),
    pa.field("reject_reason", pa.string()),
]
# Spark takes Arrow timestamps in microseconds; the files it writes hold milliseconds, as the store does
TASK_SCHEMA = pa.schema(
    [pa.field(f.name, pa.timestamp("us", tz="UTC")) if f.name == "ts" else f for f in STORE_SCHEMA]
    + _REJECT_FIELDS
)
_encode = msgspec.json.Encoder(order="deterministic").encode


def _batch(rows: list[tuple[object, ...]]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    arrays = [pa.array(values, type=field.type) for values, field in zip(columns, TASK_SCHEMA, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=TASK_SCHEMA)


def read_group(paths: Sequence[str], fmt: str, options: ReaderOptions) -> Iterator[pa.RecordBatch]:
    """The store rows (and reject rows) of one group of files, read by the format's reader."""
    blank_call = (None,) * len(STORE_SCHEMA)
    rows: list[tuple[object, ...]] = []
    try:
        for item in reader_named(fmt).read([Path(p) for p in paths], options):
            if isinstance(item, Reject):
                item = redacted_reject(item)
                rows.append((*blank_call, REJECTED, item.file, item.line, item.reason))
            else:
                day, row = store_row(item)
                rows.append((*row, day, None, None, None))
            if len(rows) >= ROWS_PER_BATCH:
                yield _batch(rows)
                rows = []
    except UnreadableInput as error:  # the run fails on the driver, naming the file and line
        rows.append((*blank_call, FATAL, ", ".join(paths), None, str(error)))
    if rows:
        yield _batch(rows)


def file_groups(sources: Sequence[Path], fmt: str) -> list[list[str]]:
    """One task per file, or one for all files when the format joins them."""
    if getattr(reader_named(fmt), "joins_files", False):
        return [[str(p) for p in sources]]
    return [[str(p)] for p in sources]


def _private_tree(root: Path) -> None:
    """Spark writes with the process umask: make the staged files owner-only, as the store is."""
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, DIR_MODE)
        for name in files:
            os.chmod(Path(folder) / name, FILE_MODE)
        del dirs  # walked by os.walk itself


def spark_ingest(
    sources: Sequence[Path],
    fmt: str,
    store: Path,
    options: ReaderOptions,
    *,
    allow_rejects: bool = False,
    master: str | None = None,
    quiet: bool = False,
    conf: dict[str, str] | None = None,
) -> IngestStats:
    """The embedded `CallStore.ingest`'s contract, with the reading and writing done by Spark."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from distillguard.engines.spark.session import session, spark_errors

    _check_view_order()
    groups = file_groups(sources, fmt)  # an unknown format fails here, before Spark starts
    if fmt == "openai-batch" and not options.account:
        raise ValueError("openai-batch needs --account (its logs do not name the account)")
    root = store
    root.parent.mkdir(parents=True, exist_ok=True)
    private_dir(root)
    spark = session(master, app="distillguard-ingest", quiet=quiet, conf=conf)
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MILLIS")

    def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for value in batch.column("paths").to_pylist():
                yield from read_group(json.loads(value), fmt, options)

    with CallStore.ingest_run(root, [str(s) for s in sources]) as run:
        listing = spark.sparkContext.parallelize(
            [(json.dumps(g),) for g in groups], numSlices=max(1, len(groups))
        ).toDF("paths string")
        rows = listing.mapInArrow(task, from_arrow_schema(TASK_SCHEMA)).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            day = F.col(PARTITION)
            calls = rows.where(~day.isin(REJECTED, FATAL)).select(*STORE_SCHEMA.names, PARTITION)
            with spark_errors("the ingest"):
                calls.write.partitionBy(PARTITION).option("compression", "zstd").parquet(run.staging.as_uri())
            unreadable = rows.where(day == FATAL).select("reject_reason").take(1)
            if unreadable:  # nothing is committed; the message names the file and the last good line
                raise UnreadableInput(unreadable[0][0])
            _write_rejects(rows.where(day == REJECTED), run.stats, run.rejects_path)
        finally:
            rows.unpersist()
        _private_tree(run.staging)
        _count_days(run.staging, run.stats)
        return run.commit(allow_rejects)


def _write_rejects(rejected: DataFrame, stats: IngestStats, rejects_path: Path) -> None:
    """The rejected lines, by file and line, into the run's rejects file; counted by reason."""
    by_reason: Counter[str] = Counter()
    ordered = rejected.select("reject_file", "reject_line", "reject_reason").orderBy(
        "reject_file", "reject_line"
    )
    with private_file(rejects_path) as out:
        for row in ordered.toLocalIterator():
            item = Reject(file=row[0], line=row[1], reason=row[2])
            by_reason[_reason_kind(item.reason)] += 1
            out.write(_encode(item) + b"\n")
            stats.rejects += 1
    stats.rejects_by_reason = dict(by_reason.most_common())


def _count_days(staging: Path, stats: IngestStats) -> None:
    """Calls per day of the staged run (Parquet footers only); Spark's marker files removed."""
    by_day: dict[str, int] = {}
    for folder in sorted(staging.glob(f"{PARTITION}=*")):
        files = sorted(str(p) for p in folder.glob("*.parquet"))
        if files:
            by_day[folder.name.split("=", 1)[1]] = ds.dataset(files, format="parquet").count_rows()
    stats.events = sum(by_day.values())
    stats.lines = stats.events + stats.rejects
    stats.days = by_day
