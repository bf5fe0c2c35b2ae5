"""`distillguard scan --engine spark`: the scan's replay on Apache Spark.

The plan Spark runs, for a call store (`distillguard ingest`'s day-partitioned Parquet) on any
Hadoop-compatible path:

1. read the columns the scan needs (`scan.replay.read_columns`), checked against the store schema
   before any job starts;
2. calls that no stage can attribute (no event_id, time or account) are counted rejects with their
   file and reason (`scan_rejects.jsonl`), never a failed job;
3. `repartition(P, account_id)` puts all calls of an account in one partition and
   `sortWithinPartitions(ts, event_id)` orders them as the embedded engine reads them;
4. `mapInArrow` runs the embedded engine's `CallStage` over each partition's Arrow batches: pass 1
   (per-call signals on the distinct texts of each batch, template fingerprints, sampled embeddings,
   narrow measure rows) and pass 2 (every account's window and checkpoint vectors from the feature
   catalog's declarations, spilling to local disk past `BUCKET_CALLS` calls); the models load once
   per Python worker, which Spark reuses across tasks;
5. each account's replay comes back to the driver as one row, streamed partition by partition
   (`toLocalIterator`), and the driver scores, links and writes exactly what the embedded engine
   writes (`scan.pipeline.decide`, `scan.outputs.write_outputs`).

Linking runs on the driver over the collected account windows (networkx connected components over
the candidate edges). The driver therefore holds every account's replay: ~15-240 KiB per account
(its sketches), so a driver with 64 GiB handles a few hundred thousand accounts per scan; past that
the job fails on `spark.driver.maxResultSize` or driver memory, naming it (docs/spark.md).
"""

from __future__ import annotations

import gc
import json
import math
import pickle
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from distillguard.engines.spark.session import is_local, local_path
from distillguard.events.call_view import STORE_SCHEMA
from distillguard.events.store import PARTITION
from distillguard.scan.pipeline import (
    BUCKET_CALLS,
    ReplayResult,
    gap_notices,
    input_gaps,
    keep_freed_memory,
    one_blas_thread,
    warm_up_signals,
)
from distillguard.scan.replay import AccountReplay, CallStage, read_columns

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# columns without which a call cannot be placed in its account's history
REQUIRED = ("event_id", "ts", "account_id")
# reject rows written to scan_rejects.jsonl (all are counted)
REJECTS_KEPT = 100_000
# replays per Arrow batch sent back to the driver
REPLAYS_PER_BATCH = 64
RESULT_SCHEMA = "account_id string, payload binary"
# an account's replay as Python objects on the driver, per byte of its pickle (1.25 measured on the
# small preset with packed windows; the margin covers linking's and the outputs' own use)
REPLAY_MEMORY_FACTOR = 2.0
# the part of the driver machine's available memory the replays may take
DRIVER_MEMORY_SHARE = 0.8

# the Spark SQL type names each Arrow type of the store may be read as
_SPARK_TYPES: dict[str, tuple[str, ...]] = {
    "string": ("string",),
    "large_string": ("string",),
    "timestamp[ms, tz=UTC]": ("timestamp", "timestamp_ntz"),
    "int64": ("bigint", "int"),
    "int32": ("int", "bigint", "smallint"),
    "double": ("double", "float"),
    "bool": ("boolean",),
}


class DriverTooSmall(RuntimeError):
    """The accounts' replays would not fit in the driver's memory: said before they are fetched."""


def check_driver_memory(payload_bytes: int, accounts: int, available: int | None = None) -> None:
    """Refuse to fetch replays that would not fit: linking and the verdicts need every account's
    replay on the driver (docs/spark.md, "What runs where")."""
    import psutil

    free = psutil.virtual_memory().available if available is None else available
    need = payload_bytes * REPLAY_MEMORY_FACTOR
    if need > free * DRIVER_MEMORY_SHARE:
        raise DriverTooSmall(
            f"the replays of {accounts:,} accounts need ~{need / 2**30:.1f} GiB on the driver and "
            f"{free / 2**30:.1f} GiB is available: scan a shorter period per run (carry flagged actors "
            "across runs with --known-actors) or run the driver on a machine with more memory"
        )


class SourceError(ValueError):
    """A source that is missing or is not a call store: the message names the path or column."""


def check_local_sources(sources: Sequence[str]) -> None:
    """Before Spark starts: every local source exists and holds day partitions of Parquet files."""
    for source in sources:
        if not is_local(source):
            continue
        path = local_path(source)
        if not path.exists():
            raise SourceError(f"{source}: no such file or directory")
        if not path.is_dir():
            raise SourceError(
                f"{source}: not a call store folder (the Spark engine scans stores; "
                "convert event files with `distillguard ingest [--engine spark]`)"
            )
        if not any(path.glob(f"{PARTITION}=*/*.parquet")):
            raise SourceError(f"{source}: no {PARTITION}=*/ Parquet files (is it a call store?)")


def check_remote_sources(spark: SparkSession, sources: Sequence[str]) -> None:
    """Sources on other file systems (s3a://, abfss://, hdfs://), checked through Hadoop's API."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    for source in sources:
        if is_local(source):
            continue
        path = jvm.org.apache.hadoop.fs.Path(source)  # type: ignore[union-attr]
        try:
            exists = path.getFileSystem(conf).exists(path)
        except Exception as error:  # Py4JJavaError: no connector for the scheme, no credentials, ...
            cause = str(getattr(error, "java_exception", error)).splitlines()[0]
            raise SourceError(
                f"{source}: cannot open it through Hadoop ({cause}); s3a:// needs hadoop-aws and "
                "abfss:// hadoop-azure on the Spark class path (docs/spark.md)"
            ) from error
        if not exists:
            raise SourceError(f"{source}: no such path")


def read_calls(spark: SparkSession, sources: Sequence[str]) -> DataFrame:
    """The scan's columns of every source (one or more call stores), schema checked."""
    columns = read_columns()
    frames = []
    for source in sources:
        frame = spark.read.option("basePath", source).parquet(source)
        types = dict(frame.dtypes)
        for name in columns:
            if name not in types:
                raise SourceError(f"{source}: column {name!r} is missing (is it a call store?)")
            arrow = str(STORE_SCHEMA.field(name).type)
            accepted = _SPARK_TYPES.get(arrow, ())
            if types[name] not in accepted:
                raise SourceError(
                    f"{source}: column {name!r} has type {types[name]}, expected {arrow} "
                    f"(Spark: {' or '.join(accepted)})"
                )
        frames.append(frame.select(*columns))
    calls = frames[0]
    for frame in frames[1:]:
        calls = calls.unionByName(frame)
    return calls


def reject_reason() -> Column:
    """Why a call cannot be scanned, or null when it can."""
    from pyspark.sql import functions as F

    reason = F.lit(None).cast("string")
    for name in reversed(REQUIRED):
        column = F.col(name)
        empty = column.isNull() if name == "ts" else column.isNull() | (column == "")
        reason = F.when(
            empty, F.lit(f"no {name}: the call cannot be placed in an account's history")
        ).otherwise(reason)
    return reason


def write_rejects(calls: DataFrame, path: Path) -> int:
    """Count the calls that cannot be scanned; write (file, event_id, reason) of the first
    `REJECTS_KEPT` to `path` (JSON lines). Returns the count."""
    from pyspark.sql import functions as F

    rejected = calls.select(
        F.input_file_name().alias("file"), F.col("event_id"), reject_reason().alias("reason")
    ).where(F.col("reason").isNotNull())
    count = rejected.count()
    if count:
        with path.open("w", encoding="utf-8") as out:
            for row in rejected.limit(REJECTS_KEPT).toLocalIterator():
                out.write(json.dumps(row.asDict(), sort_keys=True, ensure_ascii=False) + "\n")
    return count


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A batch as Spark hands it over (large strings, its own integer widths) in the store's types."""
    if batch.schema.equals(schema):
        return batch
    arrays = [batch.column(i).cast(field.type) for i, field in enumerate(schema)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def replay_partition(
    batches: Iterator[pa.RecordBatch], *, use_embeddings: bool, buckets: int
) -> Iterator[pa.RecordBatch]:
    """One partition's calls (all calls of its accounts, in time order) through `CallStage`;
    yields one row per account (its pickled `AccountReplay`) and a last row with the partition's
    input gaps and CPU seconds by stage (account_id null)."""
    started = time.process_time()
    keep_freed_memory()
    one_blas_thread()  # Spark runs one Python worker per core
    warm_up_signals()  # once per Python worker: the registry keeps what it loaded
    schema = pa.schema([STORE_SCHEMA.field(name) for name in read_columns()])
    gaps: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="distillguard-spark-") as spill:
        stage = CallStage(use_embeddings=use_embeddings, buckets=buckets, spill_dir=Path(spill))
        for raw in batches:
            if not len(raw):
                continue
            batch = _conform(raw, schema)
            stage.start_clock()
            stage.observe_batch(batch)
            gaps.update(input_gaps(batch))
        accounts = stage.finish()
    seconds = dict(stage.seconds)
    seconds["read store, notices, start-up"] = time.process_time() - started - sum(seconds.values())
    ids = list(accounts)
    for lo in range(0, len(ids), REPLAYS_PER_BATCH):
        chunk = ids[lo : lo + REPLAYS_PER_BATCH]
        payloads = []
        for account in chunk:
            replay = accounts.pop(account)
            replay.window = replay.window.packed()  # as the embedded engine hands them over
            payloads.append(pickle.dumps(replay, protocol=pickle.HIGHEST_PROTOCOL))
        yield pa.RecordBatch.from_pydict(
            {"account_id": chunk, "payload": payloads},
            schema=pa.schema([("account_id", pa.string()), ("payload", pa.binary())]),
        )
    summary = pickle.dumps((dict(gaps), seconds), protocol=pickle.HIGHEST_PROTOCOL)
    yield pa.RecordBatch.from_pydict(
        {"account_id": [None], "payload": [summary]},
        schema=pa.schema([("account_id", pa.string()), ("payload", pa.binary())]),
    )


def replay_on_spark(
    spark: SparkSession,
    calls: DataFrame,
    *,
    partitions: int | None = None,
    use_embeddings: bool = True,
    total_calls: int | None = None,
) -> ReplayResult:
    """Every account's calls replayed in time order on Spark; the same `ReplayResult` the embedded
    engine's `replay_store` returns."""
    started = time.perf_counter()
    parts = partitions or spark.sparkContext.defaultParallelism
    total = calls.count() if total_calls is None else total_calls
    buckets = max(1, math.ceil(total / parts / BUCKET_CALLS))

    def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return replay_partition(batches, use_embeddings=use_embeddings, buckets=buckets)

    from pyspark import StorageLevel

    replayed = (
        calls.repartition(parts, "account_id")
        .sortWithinPartitions("ts", "event_id")
        .mapInArrow(task, RESULT_SCHEMA)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    accounts: dict[str, AccountReplay] = {}
    gaps: Counter[str] = Counter()
    seconds: dict[str, float] = {}
    try:
        # one job replays every partition at once, as parallel as the cluster allows (and sizes
        # the result); the driver then streams the stored results a partition at a time
        # (toLocalIterator alone would run one job per partition, one or two at a time)
        from pyspark.sql import functions as F

        totals = replayed.select(F.count("account_id"), F.sum(F.length("payload"))).first()
        check_driver_memory(int(totals[1] or 0) if totals else 0, int(totals[0] or 0) if totals else 0)
        for row in replayed.toLocalIterator():
            if row.account_id is None:
                part_gaps, part_seconds = pickle.loads(row.payload)
                gaps.update(part_gaps)
                for name, value in part_seconds.items():
                    seconds[name] = seconds.get(name, 0.0) + value
                continue
            if row.account_id in accounts:  # hash partitioning gives each account one partition
                raise RuntimeError(f"account {row.account_id!r} replayed by two partitions")
            accounts[row.account_id] = pickle.loads(row.payload)
    finally:
        replayed.unpersist()
    count = sum(r.window.n for r in accounts.values())
    gc.freeze()  # as the embedded engine: the replays live until the scan ends
    return ReplayResult(
        accounts=dict(sorted(accounts.items())),
        calls=count,
        seconds=time.perf_counter() - started,
        notices=gap_notices(gaps, count),
        stage_seconds=seconds,
    )


def spark_replay(
    sources: Sequence[str],
    out: Path,
    notices: list[str],
    *,
    master: str | None = None,
    partitions: int | None = None,
    use_embeddings: bool = True,
    quiet: bool = False,
    conf: dict[str, str] | None = None,
) -> tuple[ReplayResult, dict[str, Any]]:
    """Check the sources, start (or join) Spark, count rejects and replay. Returns the replay and
    facts for the scan summary (engine, master, partitions)."""
    from distillguard.engines.spark.session import session, spark_errors

    check_local_sources(sources)
    spark = session(master, app="distillguard-scan", partitions=partitions, quiet=quiet, conf=conf)
    check_remote_sources(spark, sources)
    with spark_errors("the scan"):
        return _replay(spark, sources, out, notices, partitions=partitions, use_embeddings=use_embeddings)


def _replay(
    spark: SparkSession,
    sources: Sequence[str],
    out: Path,
    notices: list[str],
    *,
    partitions: int | None,
    use_embeddings: bool,
) -> tuple[ReplayResult, dict[str, Any]]:
    calls = read_calls(spark, sources)
    rejects_path = out / "scan_rejects.jsonl"
    rejected = write_rejects(calls, rejects_path)
    if rejected:
        kept = min(rejected, REJECTS_KEPT)
        notices.append(
            f"{rejected:,} call(s) could not be scanned (first {kept:,} with file and reason in {rejects_path})"
        )
    good = calls.where(reject_reason().isNull())
    total = calls.count() - rejected  # a Parquet count reads the footers only
    replay = replay_on_spark(
        spark, good, partitions=partitions, use_embeddings=use_embeddings, total_calls=total
    )
    facts = {
        "engine": "spark",
        "spark_master": spark.sparkContext.master,
        "spark_partitions": partitions or spark.sparkContext.defaultParallelism,
        "rejected_calls": rejected,
    }
    return replay, facts
