"""`distillguard scan`: find the accounts and actors distilling the model in API logs."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from distillguard.engines.options import engine_option

if TYPE_CHECKING:  # linking is imported where it is used, off the scan's start-up
    from distillguard.linking.actor_cluster import KnownActor


def known_actors_from(path: Path) -> list[KnownActor]:
    """Flagged actors of an earlier scan's clusters.jsonl, remembered by their static indicators."""
    from distillguard.linking.actor_cluster import STATIC_KINDS, KnownActor
    from distillguard.linking.indicator import Indicator

    actors = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if record.get("verdict") != "distiller":
                continue
            indicators = frozenset(
                Indicator(kind, str(value))
                for kind, values in record["indicators"].items()
                if kind in STATIC_KINDS
                for value in values
            )
            actors.append(
                KnownActor(actor_id=str(record["cluster_id"]), indicators=indicators, source=str(path))
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise click.ClickException(f"{path}:{number}: not a clusters.jsonl record ({exc})") from exc
    return actors


def _sources(values: tuple[str, ...], engine: str) -> tuple[Path, ...]:
    """The embedded engine reads local paths only; each must exist (the Spark engine checks its own,
    which may live on s3a://, abfss:// or hdfs://)."""
    paths = tuple(Path(v) for v in values)
    if engine == "embedded":
        for value, path in zip(values, paths, strict=True):
            if not path.exists():
                raise click.BadParameter(f"Path '{value}' does not exist.", param_hint="SOURCES")
    return paths


@click.command("scan")
@click.argument("sources", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--format", "fmt", default="canonical", show_default=True, help="Format of event files.")
@click.option(
    "--accounts", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="accounts.jsonl"
)
@click.option(
    "--known-actors",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="clusters.jsonl of an earlier scan: new accounts matching its flagged actors are linked to them.",
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@engine_option(
    "embedded: this machine (DuckDB and --workers processes); spark: Apache Spark, for call "
    "stores on any Hadoop path (s3a://, abfss://, hdfs://)."
)
@click.option(
    "--spark-master",
    default=None,
    help="Spark master URL (default local[2]; ignored under spark-submit, whose master wins).",
)
@click.option(
    "--spark-partitions",
    default=None,
    type=click.IntRange(1, 1_000_000),
    help="Partitions of accounts (default: the cluster's default parallelism).",
)
@click.option(
    "--spark-conf",
    "spark_conf",
    multiple=True,
    metavar="KEY=VALUE",
    help="A Spark setting (repeatable), e.g. spark.driver.memory=8g; docs/spark.md lists those that matter.",
)
@click.option(
    "--parquet",
    is_flag=True,
    help="Also write accounts_out.parquet beside accounts_out.jsonl (for scans of millions of accounts).",
)
@click.option("--rules-only", is_flag=True, help="Score with the heuristics alone (no learned model).")
@click.option(
    "--model",
    "model_name",
    default="full",
    show_default=True,
    help="Account model: 'full', 'content-behaviour' (no metadata or request parameters, and no rule "
    "that reads them), or a folder written by `distillguard train scorer`.",
)
@click.option(
    "--no-embeddings", is_flag=True, help="Skip prompt embeddings (faster, less diversity evidence)."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def scan(
    sources: tuple[str, ...],
    out: Path,
    fmt: str,
    accounts: Path | None,
    known_actors: Path | None,
    workers: int,
    engine: str,
    spark_master: str | None,
    spark_partitions: int | None,
    spark_conf: tuple[str, ...],
    parquet: bool,
    rules_only: bool,
    model_name: str,
    no_embeddings: bool,
    quiet: bool,
) -> None:
    """Scan SOURCES (one call store from `distillguard ingest`, or event files) and write
    accounts_out.jsonl, clusters.jsonl, report.html and scan_summary.json to --out.

    With --engine spark, SOURCES are one or more call stores on any Hadoop-compatible path."""
    from distillguard.features.catalog import FEATURES
    from distillguard.scan.outputs import write_outputs, write_verdicts_parquet
    from distillguard.scan.pipeline import ScanSource, decide, load_account_records, replay_store
    from distillguard.scoring.scorer import AccountScorer, model_folder

    paths = _sources(sources, engine)
    if engine == "embedded":
        if len(paths) == 1 and paths[0].is_dir():
            source = ScanSource(store=paths[0])
        elif any(p.is_dir() for p in paths):
            raise click.UsageError("give either one call-store folder or event files, not both")
        else:
            source = ScanSource(event_files=paths, fmt=fmt)
    elif spark_master is None and workers != 2 and "PYSPARK_GATEWAY_PORT" not in os.environ:
        spark_master = f"local[{workers}]"  # --workers N without a cluster: N local cores
    started = time.perf_counter()
    notices: list[str] = []
    out.mkdir(parents=True, exist_ok=True)
    model: str | Path = Path(model_name) if Path(model_name).is_dir() else model_name
    if not rules_only:
        try:
            model_folder(model)  # an unknown model name fails before any work
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--model") from error

    def load_scorer() -> AccountScorer:
        try:
            return AccountScorer.load(FEATURES, with_model=not rules_only, model=model)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--model") from error

    if rules_only:
        notices.append("learned model off (--rules-only): heuristics alone decide")
    if no_embeddings:
        notices.append("embeddings off (--no-embeddings): prompt-diversity features are zero")
    records = load_account_records(accounts, notices)
    actors = known_actors_from(known_actors) if known_actors else []
    engine_facts: dict[str, object] = {"engine": engine}
    scorers: list[AccountScorer] = []
    # A shipped model loads while the workers replay (~1.3 s of imports off the critical path); a
    # model folder (which may not hold a model), the rules alone and the Spark engine load first,
    # so that a bad --model fails before an ingest or a replay is spent.
    if engine == "spark" or rules_only or isinstance(model, Path):
        scorers.append(load_scorer())
    if engine == "spark":
        from distillguard.engines.spark.scan import DriverTooSmall, SourceError, spark_replay
        from distillguard.engines.spark.session import SparkJobFailed, SparkUnavailable, parse_conf

        try:
            conf = parse_conf(spark_conf)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--spark-conf") from error
        try:
            replay, engine_facts = spark_replay(
                sources,
                out,
                notices,
                master=spark_master,
                partitions=spark_partitions,
                use_embeddings=not no_embeddings,
                quiet=quiet,
                conf=conf,
            )
        except SourceError as error:
            raise click.BadParameter(str(error), param_hint="SOURCES") from error
        except (SparkUnavailable, SparkJobFailed, DriverTooSmall) as error:
            raise click.ClickException(str(error)) from error
    else:
        store = source.open(out, notices)

        def while_replaying() -> None:
            # the scorer (LightGBM, scikit-learn) and linking (datasketch, networkx) load while the
            # workers replay the calls, instead of delaying their start (~2 s of imports)
            if not scorers:
                scorers.append(load_scorer())
            importlib.import_module("distillguard.linking.actor_cluster")

        replay = replay_store(
            store,
            workers=workers,
            use_embeddings=not no_embeddings,
            progress=not quiet,
            while_replaying=while_replaying,
        )
    result = decide(replay, scorers[0], records, known_actors=actors, notices=notices)
    summary = write_outputs(result, out, source=", ".join(sources), engine=engine_facts)
    if parquet:
        write_verdicts_parquet(result, out / "accounts_out.parquet")
    seconds = time.perf_counter() - started
    verdicts = ", ".join(f"{count} {name}" for name, count in summary["verdicts"].items())
    click.echo(
        f"scanned {summary['calls']:,} calls of {summary['accounts']:,} accounts in {seconds:.1f} s "
        f"({summary['calls'] / seconds:,.0f} calls/s end to end, {engine} engine): {verdicts}; "
        f"{summary['flagged_clusters']} flagged actor cluster(s)"
    )
    for notice in result.notices:
        click.echo(f"  note: {notice}", err=True)
    written = "accounts_out.jsonl, clusters.jsonl, report.html, scan_summary.json"
    click.echo(f"  wrote {out}/{written}" + (", accounts_out.parquet" if parquet else ""))
    sys.stdout.flush()
