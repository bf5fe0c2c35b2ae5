"""`distillguard bench scan`: end-to-end scan speed and peak memory next to the raw-read floor.

One run: simulate a preset (or reuse it), ingest it into a call store (or reuse it), run
`distillguard scan` as a child process (its RSS summed over its workers is sampled with psutil,
its CPU time read with getrusage), and read the same prompt and response text from the same
Parquet with DuckDB (the floor no scan can beat). The table goes to stdout and, as Markdown, to --report.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from distillguard.engines.options import engine_option

# Targets of issue 3 ("Performance"), on 2 cores.
TARGET_CALLS_PER_SECOND = 50_000
TARGET_FLOOR_RATIO = 5.0
TARGET_PEAK_BYTES = 4 * 1024**3
TARGET_PEAK_CALLS = 10_000_000


@dataclass
class Measurement:
    """One timed stage: how many calls it covered, wall and CPU seconds, peak RSS in bytes."""

    name: str
    calls: int
    wall_s: float
    cpu_s: float
    peak_bytes: int

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.wall_s if self.wall_s else 0.0


def _run(cmd: list[str], what: str) -> None:
    click.echo(f"$ {' '.join(cmd)}", err=True)
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        raise click.ClickException(f"{what} failed (exit {done.returncode}): {' '.join(cmd)}")


def prepare_store(preset: str, seed: int, work: Path, reuse: bool) -> Path:
    """The preset simulated and ingested under `work` (kept from an earlier run with --reuse)."""
    sim_dir, store_dir = work / f"sim-{preset}-{seed}", work / f"store-{preset}-{seed}"
    exe = [sys.executable, "-c", "from distillguard.cli import main; main()"]
    if not (reuse and (sim_dir / "events.jsonl.gz").exists()):
        if sim_dir.exists() and any(sim_dir.iterdir()):
            raise click.ClickException(f"{sim_dir} exists: pass --reuse or remove it")
        _run(
            [
                *exe,
                "sim",
                "--preset",
                preset,
                "--seed",
                str(seed),
                "--split",
                "test",
                "--out",
                str(sim_dir),
                "--gzip",
            ],
            "simulation",
        )
    if not (reuse and store_dir.is_dir()):
        if store_dir.exists():
            raise click.ClickException(f"{store_dir} exists: pass --reuse or remove it")
        _run([*exe, "ingest", str(sim_dir / "events.jsonl.gz"), "--out", str(store_dir)], "ingest")
    return store_dir


def measure_scan(store: Path, out: Path, workers: int, extra: list[str]) -> Measurement:
    """`distillguard scan` over the store as a child process: wall time, CPU time (of the scan and
    its workers, from RUSAGE_CHILDREN) and peak RSS summed over the process tree."""
    cmd = [
        sys.executable,
        "-c",
        "from distillguard.cli import main; main()",
        "scan",
        str(store),
        "--out",
        str(out),
    ]
    cmd += ["--workers", str(workers), "--quiet", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    click.echo(f"$ {' '.join(cmd)}", err=True)
    process = subprocess.Popen(cmd)
    peak = peak_tree_rss(process)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise click.ClickException(f"scan failed (exit {process.returncode}): {' '.join(cmd)}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    calls = int(json.loads((out / "scan_summary.json").read_text(encoding="utf-8"))["calls"])
    return Measurement("distillguard scan (end to end)", calls, wall, cpu, peak)


def peak_tree_rss(process: subprocess.Popen[bytes], every_s: float = 0.2) -> int:
    """Wait for `process`; the largest sum of RSS over it and its descendants, sampled every `every_s`.

    getrusage's ru_maxrss would give the largest single process only, and the scan's memory is
    the parent's plus its forked workers' at the same moment.
    """
    import psutil

    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        total = 0
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:  # exited between poll() and here
            break
        for member in tree:
            try:
                total += member.memory_info().rss
            except psutil.NoSuchProcess:  # a worker that just ended holds no memory
                continue
        peak = max(peak, total)
        time.sleep(every_s)
    process.wait()
    return peak


def measure_floor(store: Path) -> list[Measurement]:
    """DuckDB reading the prompt (and then prompt and response) text of every call in the store."""
    import duckdb

    from distillguard.events.store import CallStore

    results = []
    for name, expr in (
        ("DuckDB floor: sum(length(prompt))", "sum(length(prompt))"),
        ("DuckDB floor: prompt + response_text", "sum(length(prompt) + length(response_text))"),
    ):
        con = CallStore.open(store).connect(duckdb.connect(), memory_limit=None)
        con.execute("SET threads = 2")  # same 2 cores the scan gets
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        row = con.execute(f"SELECT count(*), {expr} FROM calls").fetchone()
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        con.close()
        if row is None:
            raise click.ClickException(f"{store}: the floor query returned nothing")
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        results.append(Measurement(name, int(row[0]), wall, cpu, r1.ru_maxrss * 1024))
    return results


def table(rows: list[Measurement]) -> str:
    lines = [
        "| stage | calls | wall s | CPU s | calls/s | peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in rows:
        lines.append(
            f"| {m.name} | {m.calls:,} | {m.wall_s:.2f} | {m.cpu_s:.2f} | {m.calls_per_second:,.0f} | "
            f"{m.peak_bytes / 1024**2:,.0f} MiB |"
        )
    return "\n".join(lines)


def verdict_lines(scan: Measurement, floor: Measurement, large_preset: bool = False) -> list[str]:
    """The targets, met or missed; the memory target is decided at 10M calls or on the `large`
    preset the issue names (its seed 1 draws ~9.1M)."""
    ratio = floor.calls_per_second / scan.calls_per_second if scan.calls_per_second else float("inf")
    ok = {True: "met", False: "MISSED"}
    return [
        f"- calls/s end to end: {scan.calls_per_second:,.0f} (target ≥ {TARGET_CALLS_PER_SECOND:,}): "
        f"{ok[scan.calls_per_second >= TARGET_CALLS_PER_SECOND]}",
        f"- scan is {ratio:,.1f}× slower than the raw read (target ≤ {TARGET_FLOOR_RATIO:g}×): "
        f"{ok[ratio <= TARGET_FLOOR_RATIO]}",
        f"- peak RSS {scan.peak_bytes / 1024**3:.2f} GiB at {scan.calls:,} calls (target ≤ 4 GiB at 10M): "
        + (
            ok[scan.peak_bytes <= TARGET_PEAK_BYTES]
            if scan.calls >= TARGET_PEAK_CALLS or scan.peak_bytes > TARGET_PEAK_BYTES or large_preset
            else "not decided below 10M calls (run --preset large)"
        ),
    ]


@click.command("scan")
@click.option(
    "--preset", type=click.Choice(["small", "default", "large"]), default="large", show_default=True
)
@click.option("--seed", default=1, show_default=True)
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/bench-scan"),
    show_default=True,
    help="Where the simulation, store and scan outputs go.",
)
@click.option("--reuse", is_flag=True, help="Reuse the simulation and store of an earlier run.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--no-embeddings", is_flag=True, help="Pass --no-embeddings to the scan.")
@engine_option(
    "spark: the embedded engine, Spark local[2] and a standalone cluster of 1 and 2 workers "
    "started here, on the same store in one run."
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the table as Markdown here (e.g. docs/performance.md).",
)
def bench_scan(
    preset: str,
    seed: int,
    work: Path,
    reuse: bool,
    workers: int,
    no_embeddings: bool,
    engine: str,
    report: Path | None,
) -> None:
    """Scan speed (calls/s end to end) and peak memory next to DuckDB reading the same text."""
    work.mkdir(parents=True, exist_ok=True)
    store = prepare_store(preset, seed, work, reuse)
    scan_out = work / f"scan-{preset}-{seed}"
    extra = ["--no-embeddings"] if no_embeddings else []
    accounts = work / f"sim-{preset}-{seed}" / "accounts.jsonl"
    if accounts.exists():  # linking reads the account records, as in a real scan
        extra += ["--accounts", str(accounts)]
    if engine == "spark":
        _bench_spark(store, work / f"engines-{preset}-{seed}", extra, report, preset, seed)
        return
    scan = measure_scan(store, scan_out, workers, extra)
    floors = measure_floor(store)
    rows = [scan, *floors]
    text = table(rows)
    verdicts = verdict_lines(scan, floors[0], large_preset=preset == "large")
    click.echo(text)
    click.echo("\n".join(verdicts))
    if report is not None:
        command = f"distillguard bench scan --preset {preset} --seed {seed} --work {work}"
        command += " --reuse" if reuse else ""
        command += " --no-embeddings" if no_embeddings else ""
        report.write_text(f"## `{command}`\n\n{text}\n\n" + "\n".join(verdicts) + "\n", encoding="utf-8")


def _bench_spark(
    store: Path, work: Path, extra: list[str], report: Path | None, preset: str, seed: int
) -> None:
    from distillguard.engines.spark.bench import bench_spark, spark_table
    from distillguard.engines.spark.session import SparkUnavailable, require_spark

    try:
        require_spark()
    except SparkUnavailable as error:
        raise click.ClickException(str(error)) from error
    work.mkdir(parents=True, exist_ok=True)
    runs = bench_spark(store, work, extra)
    text = spark_table(runs)
    click.echo(text)
    if report is not None:
        command = f"distillguard bench scan --engine spark --preset {preset} --seed {seed}"
        report.write_text(f"## `{command}`\n\n{text}\n", encoding="utf-8")
