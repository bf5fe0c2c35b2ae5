"""The detection targets of issue 3 as data, and the side-by-side table of `bench detect`: the system
under test, its 'distiller or suspicious' reading, and the baselines, with a check against each
target and against the baselines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Report = Mapping[str, Any]  # one system's `detection.evaluate` output


@dataclass(frozen=True)
class Row:
    """One line of the table: how to read its value (and denominator) from a report, whether higher
    is better, and the target it must meet (None: shown for context, no target)."""

    title: str
    value: Callable[[Report, str], float | None]
    counts: Callable[[Report, str], str]
    higher_is_better: bool
    target: float | None = None
    percent: bool = True

    def meets(self, value: float | None) -> bool | None:
        if self.target is None or value is None:
            return None
        return value >= self.target if self.higher_is_better else value <= self.target


def _rate(
    *path: str, reading_override: str | None = None
) -> tuple[Callable[[Report, str], float | None], Callable[[Report, str], str]]:
    def block(report: Report, reading: str) -> Any:
        reading = reading_override or reading
        node: Any = report["readings"][reading] if path[0] != "clusters" else report
        for key in path:
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
        return node

    def value(report: Report, reading: str) -> float | None:
        node = block(report, reading)
        return node.get("value") if isinstance(node, Mapping) else node

    def counts(report: Report, reading: str) -> str:
        node = block(report, reading)
        if isinstance(node, Mapping) and "total" in node:
            return f"{node['hits']}/{node['total']}"
        return ""

    return value, counts


def _row(
    title: str,
    path: tuple[str, ...],
    higher: bool,
    target: float | None = None,
    percent: bool = True,
    reading: str | None = None,
) -> Row:
    value, counts = _rate(*path, reading_override=reading)
    return Row(title, value, counts, higher, target, percent)


def table_rows(report: Report) -> list[Row]:
    """The rows for a report: fixed lines plus one per tactic, router share and benign population
    present in the labels. Targets are those of issue 3 (see docs/bench.md)."""
    reading = report["readings"]["distiller"]
    rows = [
        _row("recall, campaign accounts", ("recall_campaigns",), True, 0.99),
        _row("recall, all distillers", ("recall",), True),
        _row("precision", ("precision",), True),
        _row("FPR, all benign", ("false_positive_rate",), False, 0.001),
    ]
    rows += [_row(f"  recall: {t}", ("recall_by_tactic", t), True) for t in reading["recall_by_tactic"]]
    rows += [
        _row(
            f"  router recall @ share {s}", ("router_recall_by_share", s), True, 0.90 if s == "0.05" else None
        )
        for s in reading["router_recall_by_share"]
    ]
    if reading["router_recall_by_share"]:
        rows.append(_row("router recall, mean over shares", ("router_recall_mean_over_shares",), True, 0.97))
    rows += [
        _row(f"  FPR: {p}", ("fpr_by_population", p), False, 0.005) for p in reading["fpr_by_population"]
    ]
    # review load: benign accounts a human must look at (suspicious or worse), per population
    rows += [
        _row(
            f"  review load: {p}",
            ("fpr_by_population", p),
            False,
            0.02,
            reading="distiller_or_suspicious",
        )
        for p in reading["fpr_by_population"]
    ]
    rows += [
        _row("calls to flag, median (campaigns)", ("calls_to_flag", "median"), False, 50, percent=False),
        _row("calls to flag, p90 (campaigns)", ("calls_to_flag", "p90"), False, percent=False),
        _row("hydra recovery, mean over actors", ("clusters", "hydra_recovery", "mean"), True, 0.95),
        _row("hydra accounts in their actor's cluster", ("clusters", "hydra_recovery", "accounts"), True),
        _row("cluster recovery, all linkable actors", ("clusters", "recovery", "mean"), True),
        _row("actors with recovery >= 95%", ("clusters", "recovery", "actors_at_95"), True),
        _row("cluster precision (size-weighted)", ("clusters", "precision", "size_weighted"), True, 0.99),
        _row("recidivists linked", ("clusters", "recidivists_linked"), True, 0.95),
    ]
    return rows


def _cell(row: Row, report: Report, reading: str) -> str:
    value = row.value(report, reading)
    if value is None:
        return "n/a"
    if not row.percent:
        text = f"{value:g}"
    elif value == 0 or value >= 0.01:
        text = f"{100 * value:.1f}%"
    else:  # a small false-positive rate needs the second decimal to be compared with 0.1%
        text = f"{100 * value:.2f}%"
    counts = row.counts(report, reading)
    return f"{text} {counts}" if counts else text


def _target_text(row: Row) -> str:
    if row.target is None:
        return ""
    sign = ">=" if row.higher_is_better else "<="
    return f"{sign} {100 * row.target:g}%" if row.percent else f"{sign} {row.target:g}"


def _beats(row: Row, ours: float | None, theirs: list[float | None]) -> bool | None:
    """At least as good as every baseline on this line. A baseline with no value on the line is
    never counted as beaten: the check is then left open (None), not passed."""
    if ours is None or not theirs or any(t is None for t in theirs):
        return None
    return all(ours >= t if row.higher_is_better else ours <= t for t in theirs if t is not None)


def _mark(flag: bool | None) -> str:
    return "" if flag is None else ("✓" if flag else "✗")


def comparison(system: Report, baselines: Mapping[str, Report]) -> list[dict[str, Any]]:
    """The table as data: per row its target, every value and the two checks (on the 'distiller'
    reading of the system under test)."""
    out = []
    for row in table_rows(system):
        ours = row.value(system, "distiller")
        theirs = {name: row.value(report, "distiller") for name, report in baselines.items()}
        out.append(
            {
                "metric": row.title.strip(),
                "target": _target_text(row) or None,
                "system": ours,
                "system_with_suspicious": row.value(system, "distiller_or_suspicious"),
                "baselines": theirs,
                "meets_target": row.meets(ours),
                "beats_baselines": _beats(row, ours, list(theirs.values()))
                if row.target is not None
                else None,
            }
        )
    return out


def render_table(
    system: Report,
    baselines: Mapping[str, Report],
    system_name: str = "DistillGuard",
    variants: Mapping[str, Report] | None = None,
) -> str:
    """The printed table: one line per row, columns aligned. ``variants`` are other readings of the
    system under test (e.g. its content+behaviour-only model), shown beside it, never as baselines."""
    variants = variants or {}
    header = [
        "metric",
        "target",
        system_name,
        "+suspicious",
        *variants,
        *baselines,
        "target",
        "beats baselines",
    ]
    lines = [header]
    for row in table_rows(system):
        ours = row.value(system, "distiller")
        theirs = [row.value(report, "distiller") for report in baselines.values()]
        lines.append(
            [
                row.title,
                _target_text(row),
                _cell(row, system, "distiller"),
                _cell(row, system, "distiller_or_suspicious"),
                *(_cell(row, report, "distiller") for report in variants.values()),
                *(_cell(row, report, "distiller") for report in baselines.values()),
                _mark(row.meets(ours)),
                _mark(_beats(row, ours, theirs)) if row.target is not None else "",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    rendered.insert(1, "-" * len(rendered[0]))
    return "\n".join(rendered)
