"""`distillguard ingest`: read API logs in one of the known formats and add them to a Parquet call
store, printing what was read, written and rejected."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from distillguard.engines.options import engine_option
from distillguard.events.readers import ReaderOptions, UnknownFormatError, iter_events, known_formats
from distillguard.events.readers.base import DEFAULT_MAX_LINE_BYTES, UnreadableInput
from distillguard.events.store import CallStore, IngestStats, StoreError

_DAYS_LISTED = 14


def _summary(stats: IngestStats, store: Path) -> str:
    lines = [
        f"ingest run {stats.run_id}: {len(stats.files)} file(s), {stats.lines} line(s) read "
        f"in {stats.seconds:.1f} s ({stats.lines / max(stats.seconds, 1e-9):,.0f} lines/s)",
        f"  events: {stats.events}",
        f"  rejects: {stats.rejects}",
    ]
    lines += [f"    {count:>8}  {reason}" for reason, count in stats.rejects_by_reason.items()]
    if stats.days:
        days = list(stats.days)
        lines.append(f"  days: {len(days)} ({days[0]} .. {days[-1]})")
        if len(days) <= _DAYS_LISTED:
            lines += [f"    {count:>8}  {day}" for day, count in stats.days.items()]
    if stats.rejects_file:
        lines.append(f"  rejected lines (file, line, reason): {stats.rejects_file}")
    if stats.committed:
        lines.append(f"  written to {store}")
    else:
        lines.append("  NOT written: some lines were rejected; fix them or pass --allow-rejects")
    return "\n".join(lines)


def _spark_ingest(
    sources: tuple[Path, ...],
    fmt: str,
    store: Path,
    options: ReaderOptions,
    allow_rejects: bool,
    master: str | None,
    spark_conf: tuple[str, ...],
) -> IngestStats:
    from distillguard.engines.spark.ingest import spark_ingest
    from distillguard.engines.spark.session import SparkJobFailed, SparkUnavailable, parse_conf

    try:
        conf = parse_conf(spark_conf)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--spark-conf") from error
    try:
        return spark_ingest(
            sources, fmt, store, options, allow_rejects=allow_rejects, master=master, conf=conf
        )
    except (SparkUnavailable, SparkJobFailed) as error:
        raise click.ClickException(str(error)) from error


@click.command("ingest")
@click.argument(
    "sources", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--format",
    "fmt",
    default="canonical",
    show_default=True,
    help="Log format of SOURCES: " + ", ".join(known_formats()) + ".",
)
@click.option(
    "--out", "store", required=True, type=click.Path(file_okay=False, path_type=Path), help="Store directory."
)
@click.option(
    "--allow-rejects", is_flag=True, help="Write the good lines even when some lines were rejected."
)
@click.option(
    "--account",
    default=None,
    help="Account of calls whose log does not name one (required for openai-batch).",
)
@click.option(
    "--account-attribute",
    default=ReaderOptions().account_attribute,
    show_default=True,
    help="otel-genai: span or resource attribute that names the account.",
)
@click.option(
    "--max-line-bytes",
    default=DEFAULT_MAX_LINE_BYTES,
    show_default=True,
    type=click.IntRange(min=1),
    help="A longer line is rejected (file, line, length) without being held in memory.",
)
@engine_option(
    "spark: read the files in parallel on Apache Spark (each executor must see them at the same path)."
)
@click.option("--spark-master", default=None, help="Spark master URL (default local[2]).")
@click.option(
    "--spark-conf", "spark_conf", multiple=True, metavar="KEY=VALUE", help="A Spark setting (repeatable)."
)
def ingest(
    sources: tuple[Path, ...],
    fmt: str,
    store: Path,
    allow_rejects: bool,
    account: str | None,
    account_attribute: str,
    max_line_bytes: int,
    engine: str,
    spark_master: str | None,
    spark_conf: tuple[str, ...],
) -> None:
    """Add the calls in SOURCES (JSONL, plain or gzip) to the Parquet call store at --out.

    Every line either becomes a call or is written, with its file, line number and reason, to
    the store's _rejects/ folder. Without --allow-rejects a run with any reject adds nothing and
    exits 1. Credentials are removed from every call (by name and by value). A run whose
    event_ids are already in the store is refused (exit 2) and the store is left unchanged.
    Everything written is readable by its owner only.
    """
    options = ReaderOptions(
        account=account, account_attribute=account_attribute, max_line_bytes=max_line_bytes
    )
    try:
        if engine == "spark":
            stats = _spark_ingest(sources, fmt, store, options, allow_rejects, spark_master, spark_conf)
        else:
            items = iter_events(sources, fmt, options)
            stats = CallStore.ingest(
                store, items, sources=[str(s) for s in sources], allow_rejects=allow_rejects
            )
    except UnknownFormatError as error:
        raise click.BadParameter(str(error), param_hint="--format") from error
    except StoreError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    except UnreadableInput as error:  # nothing was added to the store
        click.echo(f"error: {error}; nothing was written", err=True)
        sys.exit(1)
    except ValueError as error:  # a reader that cannot run with these options (e.g. no --account)
        raise click.UsageError(str(error)) from error
    click.echo(_summary(stats, store))
    if stats.rejects and not allow_rejects:
        sys.exit(1)
