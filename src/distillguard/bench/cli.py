"""`distillguard bench`: one subcommand per benchmark. A new benchmark adds its module:attribute to
BENCHMARKS and is loaded only when named, so `bench --help` stays cheap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from distillguard.cli import LazyGroup

# name -> ("module:attribute" of a click command, one-line help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "detect": (
        "distillguard.bench.cli:detect",
        "Detection quality of verdicts against labels, with two baselines.",
    ),
    "detect-suite": (
        "distillguard.bench.suite:detect_suite",
        "Detection on each preset: full and content-behaviour models, baselines at the same dev FPR.",
    ),
    "signals": (
        "distillguard.signals.bench:bench_signals",
        "Per-call classifiers on unseen families, and speed.",
    ),
    "scan": ("distillguard.scan.bench:bench_scan", "Scan calls/s and peak memory next to a raw DuckDB read."),
    "gateway": (
        "distillguard.gateway.bench:bench_gateway",
        "Gateway added latency and req/s next to LiteLLM and unmimic.",
    ),
    "review": (
        "distillguard.cases.bench:bench_review",
        "Review decision to gateway enforcement latency: bans file next to Redis.",
    ),
    "audit": (
        "distillguard.audit.bench:bench_audit",
        "Audit classifiers: precision and recall on the project's labelled answers.",
    ),
}


class BenchGroup(LazyGroup):
    table = BENCHMARKS


@click.group(cls=BenchGroup)
def bench() -> None:
    """Measure detection quality, speed and memory."""


_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command()
@click.option("--labels", "labels_path", type=_file, required=True, help="Ground truth (labels.jsonl).")
@click.option(
    "--verdicts", "verdicts_path", type=_file, required=True, help="Scan output (accounts_out.jsonl)."
)
@click.option("--events", "events_path", type=_file, help="Canonical events the baselines replay.")
@click.option(
    "--store",
    "store_path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Parquet call store the baselines replay (instead of --events).",
)
@click.option(
    "--accounts",
    "accounts_path",
    type=_file,
    help="Account records (accepted for symmetry with scan; the baselines do not use them).",
)
@click.option(
    "--calibration-events", type=_file, help="Events of a SEPARATE scenario to calibrate the baselines on."
)
@click.option("--calibration-labels", type=_file, help="Labels of that calibration scenario.")
@click.option(
    "--target-fpr",
    type=click.FloatRange(0.0, 1.0),
    default=0.001,
    show_default=True,
    help="False-positive rate the baselines are calibrated to.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write every metric here."
)
@click.option(
    "--baseline-verdicts",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write each baseline's accounts_out.jsonl into.",
)
def detect(
    labels_path: Path,
    verdicts_path: Path,
    events_path: Path | None,
    store_path: Path | None,
    accounts_path: Path | None,
    calibration_events: Path | None,
    calibration_labels: Path | None,
    target_fpr: float,
    json_path: Path | None,
    baseline_verdicts: Path | None,
) -> None:
    """Score VERDICTS against LABELS and print the metrics side by side with a daily rate limit and a
    PRADA-like query-distance test replayed over the same calls (--events or --store)."""
    from distillguard.bench import baselines as bl
    from distillguard.bench.detection import evaluate
    from distillguard.bench.records import BenchInputError, read_labels, read_verdicts
    from distillguard.bench.targets import comparison, render_table
    from distillguard.events.model import to_json_line

    if events_path is not None and store_path is not None:
        raise click.UsageError("give --events or --store, not both")
    if (calibration_events is None) != (calibration_labels is None):
        raise click.UsageError("--calibration-events and --calibration-labels go together")
    try:
        labels = read_labels(labels_path)
        verdicts = read_verdicts(verdicts_path)
        calibration = (
            (bl.read_event_calls(calibration_events), read_labels(calibration_labels))
            if calibration_events is not None and calibration_labels is not None
            else None
        )
    except BenchInputError as error:
        raise click.ClickException(str(error)) from error

    system = evaluate(labels, verdicts)
    result: dict[str, Any] = {
        "system": system,
        "baselines": {},
        "inputs": {
            "labels": str(labels_path),
            "verdicts": str(verdicts_path),
            "events": str(events_path) if events_path else None,
            "store": str(store_path) if store_path else None,
        },
    }
    baseline_reports: dict[str, Any] = {}
    if events_path is not None or store_path is not None:
        calls = (
            bl.read_event_calls(events_path)
            if events_path is not None
            else bl.read_store_calls(str(store_path))
        )
        if calls.rejected_lines:
            click.echo(
                f"note: {calls.rejected_lines} event lines could not be read and were left out of the "
                f"baselines, e.g. {'; '.join(calls.reject_examples)}",
                err=True,
            )
        try:
            outputs, setup = bl.run_baselines(calls, calibration=calibration, target_fpr=target_fpr)
        except BenchInputError as error:
            raise click.ClickException(str(error)) from error
        result["baseline_setup"] = {
            **setup,
            "calls": len(calls),
            "rejected_event_lines": calls.rejected_lines,
        }
        for name, produced in outputs.items():
            baseline_reports[name] = evaluate(labels, produced)
            if baseline_verdicts is not None:
                baseline_verdicts.mkdir(parents=True, exist_ok=True)
                target = baseline_verdicts / f"{name.lower().replace(' ', '_')}.accounts_out.jsonl"
                target.write_bytes(b"".join(to_json_line(v) + b"\n" for v in produced.values()))
    else:
        click.echo("note: no --events or --store given, so the baselines were not run", err=True)
    result["baselines"] = baseline_reports
    result["table"] = comparison(system, baseline_reports)

    coverage = system["coverage"]
    click.echo(render_table(system, baseline_reports))
    click.echo(
        f"\n{coverage['labelled_accounts']} labelled accounts; {coverage['missing_verdicts']} without a verdict "
        f"(counted as not flagged); {coverage['unknown_accounts']} verdicts for accounts not in the labels."
    )
    if "baseline_setup" in result:
        setup = result["baseline_setup"]
        click.echo(
            f"baselines over {setup['calls']} calls: rate-limit threshold {setup['rate-limit']['threshold']} calls/UTC day, "
            f"PRADA-like delta {setup['PRADA-like']['delta']:.3f}"
            + (
                f" (both calibrated to FPR {target_fpr:g})"
                if calibration is not None
                else " (fixed defaults)"
            )
        )
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n", encoding="utf-8")
