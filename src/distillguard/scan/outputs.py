"""What a scan writes: `accounts_out.jsonl` (the spec's verdicts), `clusters.jsonl`, `report.html`
and `scan_summary.json` (counts, thresholds, and what the scan could not use)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from distillguard.features.catalog import FEATURES
from distillguard.report.html import render_report
from distillguard.report.svg import bars, scatter
from distillguard.scan.pipeline import ScanResult, write_jsonl

REPORT_ACTORS = 25
REPORT_ACCOUNTS = 60


def cluster_record(result: ScanResult, index: int) -> dict[str, Any]:
    outcome = result.clusters[index]
    record = outcome.cluster.to_record()
    record["risk"] = round(outcome.risk, 6)
    record["verdict"] = _cluster_verdict(result, outcome.risk)
    record["reasons"] = [msgspec.to_builtins(r) for r in outcome.reasons]
    return record


def _cluster_verdict(result: ScanResult, risk: float) -> str:
    t = result.thresholds
    return "distiller" if risk >= t.distiller else "suspicious" if risk >= t.suspicious else "benign"


def write_outputs(
    result: ScanResult, out: Path, *, source: str, engine: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write the scan's files to `out`; ``engine`` (which engine ran, and its settings) goes into
    the summary."""
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "accounts_out.jsonl", result.verdicts)
    with (out / "clusters.jsonl").open("w", encoding="utf-8") as f:
        for i in range(len(result.clusters)):
            f.write(json.dumps(cluster_record(result, i), sort_keys=True, ensure_ascii=False) + "\n")
    write_evidence(result, out / "evidence.jsonl")
    summary = scan_summary(result, source)
    summary.update(engine or {"engine": "embedded"})
    (out / "scan_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    (out / "report.html").write_text(render_report(report_context(result, source, summary)), encoding="utf-8")
    return summary


def write_verdicts_parquet(result: ScanResult, path: Path) -> int:
    """`accounts_out.parquet`: the rows of accounts_out.jsonl as a Parquet table (nested reasons
    kept as a list of structs), for scans too large to read as JSON lines. Returns the rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [msgspec.to_builtins(v) for v in result.verdicts]
    table = pa.Table.from_pylist(rows) if rows else pa.table({"account_id": pa.array([], pa.string())})
    pq.write_table(table, path, compression="zstd")
    return len(rows)


FIRE_RATES = sorted(name for name in FEATURES if name.endswith("_fire_rate"))


def write_evidence(result: ScanResult, path: Path) -> int:
    """`evidence.jsonl`: for every account a reviewer may open (not benign, or in a cluster that is
    not), its activity per day and hour, per-signal rates and sample calls; `cases import` reads it."""
    wanted = {v.account_id for v in result.verdicts if v.verdict != "benign"}
    for i, outcome in enumerate(result.clusters):
        if _cluster_verdict(result, outcome.risk) != "benign":
            wanted.update(result.clusters[i].cluster.accounts)
    replays = result.replay.accounts
    with path.open("w", encoding="utf-8") as f:
        for account_id in sorted(wanted):
            replay = replays.get(account_id)
            if replay is None:
                continue
            # the fire rates alone: each read from the few states it needs (`AccountWindow.feature`),
            # not the whole feature set (~1.7 ms per packed window)
            rates = {name: replay.window.feature(name) for name in FIRE_RATES}
            record = {
                "account_id": account_id,
                "calls": replay.window.n,
                "daily": dict(sorted(replay.daily_calls.items())),
                "hours": [int(c) for c in replay.window.hour_of_day.counts],
                "signal_rates": {
                    name[: -len("_fire_rate")]: round(value, 4) for name, value in rates.items() if value > 0
                },
                "examples": replay.examples,
            }
            f.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
    return len(wanted)


def scan_summary(result: ScanResult, source: str) -> dict[str, Any]:
    verdicts = Counter(v.verdict for v in result.verdicts)
    replay = result.replay
    return {
        "source": source,
        "calls": replay.calls,
        "accounts": len(result.verdicts),
        "verdicts": dict(sorted(verdicts.items())),
        "clusters": len(result.clusters),
        "flagged_clusters": sum(1 for c in result.clusters if c.risk >= result.thresholds.distiller),
        "replay_seconds": round(replay.seconds, 2),
        "calls_per_second": round(replay.calls / replay.seconds, 1) if replay.seconds else None,
        "thresholds": dict(result.thresholds.__dict__),
        "notices": result.notices,
        # where the time went: the replay's stages summed over its workers, then the parent's
        "cpu_seconds_by_stage": {
            name: round(value, 3) for name, value in {**replay.stage_seconds, **result.stage_seconds}.items()
        },
    }


def _period(result: ScanResult) -> str:
    firsts = [r.window.first_seen for r in result.replay.accounts.values() if r.window.first_seen]
    lasts = [r.window.last_seen for r in result.replay.accounts.values() if r.window.last_seen]
    if not firsts or not lasts:
        return "no calls"
    return f"{min(firsts):%Y-%m-%d %H:%M} to {max(lasts):%Y-%m-%d %H:%M} UTC"


def _daily_series(daily: Counter[str]) -> list[int]:
    if not daily:
        return []
    days = sorted(daily)
    start = datetime.strptime(days[0], "%Y-%m-%d")
    end = datetime.strptime(days[-1], "%Y-%m-%d")
    span = (end - start).days + 1
    return [daily.get((start + timedelta(days=i)).strftime("%Y-%m-%d"), 0) for i in range(span)]


def report_context(result: ScanResult, source: str, summary: dict[str, Any]) -> dict[str, Any]:
    replays = result.replay.accounts
    order = sorted(result.verdicts, key=lambda v: -v.risk)
    flagged = [v for v in order if v.verdict != "benign"][:REPORT_ACCOUNTS]
    accounts = []
    for verdict in flagged:
        replay = replays[verdict.account_id]
        features = replay.window.features()
        rates = sorted(
            (
                (name[: -len("_fire_rate")], value)
                for name, value in features.items()
                if name.endswith("_fire_rate")
            ),
            key=lambda kv: -kv[1],
        )
        hours = replay.window.hour_of_day
        accounts.append(
            {
                "account_id": verdict.account_id,
                "verdict": verdict.verdict,
                "risk": verdict.risk,
                "cluster_id": verdict.cluster_id,
                "calls": replay.window.n,
                "calls_to_flag": verdict.calls_to_flag,
                "first_flagged_at": verdict.first_flagged_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
                if verdict.first_flagged_at
                else None,
                "reasons": verdict.reasons,
                "signal_rates": [(name, value) for name, value in rates if value > 0][:8],
                "timeline": bars(_daily_series(replay.daily_calls), title="calls per day"),
                "hours": bars([float(c) for c in hours.counts], title="calls by hour of day (UTC)"),
                "examples": replay.examples,
            }
        )
    actors = []
    for outcome in sorted(result.clusters, key=lambda c: -c.risk)[:REPORT_ACTORS]:
        cluster = outcome.cluster
        links = sorted({edge.evidence for edge in cluster.edges})[:8]
        actors.append(
            {
                "cluster_id": cluster.cluster_id,
                "verdict": _cluster_verdict(result, outcome.risk),
                "risk": outcome.risk,
                "accounts": cluster.accounts[:40]
                + ([f"… {len(cluster.accounts) - 40} more"] if len(cluster.accounts) > 40 else []),
                "n_calls": sum(replays[a].window.n for a in cluster.accounts if a in replays),
                "links": links,
                "reasons": outcome.reasons,
            }
        )
    points = []
    for verdict in result.verdicts:
        window = replays[verdict.account_id].window
        points.append(
            (
                window.feature("n_calls"),
                window.feature("embedding_dispersion"),
                verdict.verdict,
                verdict.account_id,
            )
        )
    return {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "source": source,
        "n_calls": summary["calls"],
        "n_accounts": summary["accounts"],
        "period": _period(result),
        "verdict_counts": sorted(summary["verdicts"].items()),
        "thresholds": result.thresholds,
        "n_clusters": len(result.clusters),
        "notices": result.notices,
        "scatter": scatter(points, x_label="calls", y_label="prompt dispersion"),
        "actors": actors,
        "accounts": accounts,
    }
