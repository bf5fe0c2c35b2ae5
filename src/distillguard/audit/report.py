"""`distillguard audit compare`: one HTML page comparing runs side by side.

Every answer, prompt and error shown is text a model or endpoint controlled: Jinja2 autoescapes it
and nothing in the page is marked safe except our own stylesheet. Charts are inline SVG drawn by the
template from numbers computed here (so their labels are escaped like any other text). The page
carries a Content-Security-Policy that allows no script, no request and only its own hashed style.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from distillguard.audit.measures import (
    AnswerMeasure,
    RunMeasures,
    pair_asymmetry,
    refused,
    summary,
    topic_rates,
    withdrawals,
)

PALETTE = ("#1f6feb", "#d1495b", "#2a9d8f", "#e9a23b", "#6f42c1", "#6c757d")
CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #1d2433; max-width: 1200px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 4px 6px; vertical-align: top; text-align: left; }
th { background: #f5f6f8; }
.answer { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 12px; margin: 0; max-width: 520px; }
.evidence { color: #555; font-size: 12px; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.refused { color: #b00020; font-weight: 600; }
.withdrawn-before { background: #fff4e5; }
.withdrawn-after { background: #eef6ff; }
.muted { color: #777; }
svg text { font-size: 11px; fill: #1d2433; }
details summary { cursor: pointer; color: #1f6feb; }
"""

_env = Environment(
    loader=PackageLoader("distillguard.audit", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

LABEL_WIDTH = 190
BAR_WIDTH = 440


def _labels(runs: Sequence[RunMeasures]) -> list[str]:
    """Model names, with the run folder where two runs share a model."""
    names = [run.manifest.model for run in runs]
    return [
        name if names.count(name) == 1 else f"{name} ({run.run_dir.name})"
        for name, run in zip(names, runs, strict=True)
    ]


def _topic_charts(
    runs: Sequence[RunMeasures], labels: Sequence[str], langs: Sequence[str]
) -> list[dict[str, Any]]:
    per_run = [{(r["topic"], r["lang"]): r for r in topic_rates(run.measures)} for run in runs]
    charts = []
    bar_h, gap = 12, 10
    for lang in langs:
        topics = sorted({topic for rates in per_run for (topic, lg) in rates if lg == lang})
        rows = []
        y = 18
        for topic in topics:
            bars: list[dict[str, Any]] = []
            for i, rates in enumerate(per_run):
                row = rates.get((topic, lang))
                if row is None or row["rate"] is None:
                    bars.append(
                        {"y": y, "missing": True, "label": labels[i], "color": PALETTE[i % len(PALETTE)]}
                    )
                else:
                    bars.append(
                        {
                            "y": y,
                            "missing": False,
                            "width": round(BAR_WIDTH * row["rate"], 1),
                            "low": round(LABEL_WIDTH + BAR_WIDTH * row["low"], 1),
                            "high": round(LABEL_WIDTH + BAR_WIDTH * row["high"], 1),
                            "text": f"{row['refused']}/{row['measured']}",
                            "label": labels[i],
                            "color": PALETTE[i % len(PALETTE)],
                            "rate": row["rate"],
                        }
                    )
                y += bar_h + 2
            rows.append({"topic": topic, "y": bars[0]["y"] + bar_h * len(bars) / 2 + 4, "bars": bars})
            y += gap
        charts.append(
            {
                "lang": lang,
                "rows": rows,
                "height": y + 16,
                "width": LABEL_WIDTH + BAR_WIDTH + 70,
                "bar_h": bar_h,
                "left": LABEL_WIDTH,
                "ticks": [{"x": LABEL_WIDTH + BAR_WIDTH * t / 4, "text": f"{25 * t}%"} for t in range(5)],
            }
        )
    return charts


def _topic_table(runs: Sequence[RunMeasures], langs: Sequence[str]) -> list[dict[str, Any]]:
    per_run = [{(r["topic"], r["lang"]): r for r in topic_rates(run.measures)} for run in runs]
    keys = sorted({key for rates in per_run for key in rates}, key=lambda k: (k[1], k[0]))
    return [
        {"topic": topic, "lang": lang, "cells": [rates.get((topic, lang)) for rates in per_run]}
        for topic, lang in keys
        if lang in langs
    ]


def _pairs(
    runs: Sequence[RunMeasures], labels: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    per_run = [{(r["pair"], r["lang"]): r for r in pair_asymmetry(run.measures)} for run in runs]
    keys = sorted({key for rows in per_run for key in rows}, key=lambda k: (k[1], k[0]))
    table = []
    for pair, lang in keys:
        cells = [rows.get((pair, lang)) for rows in per_run]
        example = next((c for c in cells if c and c["a"] and c["b"]), None)
        sides = (example["a"].subject or "A", example["b"].subject or "B") if example else ("A", "B")
        table.append({"pair": pair, "lang": lang, "sides": sides, "cells": cells})
    charts = []
    half = BAR_WIDTH / 2
    left = 8
    centre = left + half
    for lang in sorted({lang for _, lang in keys}):
        rows = []
        y = 24
        for entry in (t for t in table if t["lang"] == lang):
            label_y = y + 10  # the pair's name sits on its own line above its bars
            y += 14
            bars = []
            for i, cell in enumerate(entry["cells"]):
                index = cell["index"] if cell else None
                if index is None:
                    bars.append(
                        {"y": y, "missing": True, "color": PALETTE[i % len(PALETTE)], "label": labels[i]}
                    )
                else:
                    length = half * abs(index)
                    bars.append(
                        {
                            "y": y,
                            "missing": False,
                            "x": round(centre if index >= 0 else centre - length, 1),
                            "width": round(max(length, 1.0), 1),
                            "text": f"{index:+.2f}",
                            "text_x": round(centre + length + 4 if index >= 0 else centre - length - 4, 1),
                            "anchor": "start" if index >= 0 else "end",
                            "color": PALETTE[i % len(PALETTE)],
                            "label": labels[i],
                        }
                    )
                y += 14
            rows.append(
                {
                    "label": f"{entry['pair']} ({entry['sides'][0]} / {entry['sides'][1]})",
                    "y": label_y,
                    "bars": bars,
                }
            )
            y += 8
        charts.append(
            {
                "lang": lang,
                "rows": rows,
                "height": y + 14,
                "width": left + BAR_WIDTH + 60,
                "centre": centre,
                "left": left,
                "right": left + BAR_WIDTH,
            }
        )
    return table, charts


def _answers(runs: Sequence[RunMeasures]) -> list[dict[str, Any]]:
    by_key: dict[str, list[AnswerMeasure | None]] = defaultdict(lambda: [None] * len(runs))
    prompts: dict[str, AnswerMeasure] = {}
    for i, run in enumerate(runs):
        for m in run.measures:
            by_key[m.key][i] = m
            prompts.setdefault(m.key, m)
    ordered = sorted(by_key, key=lambda k: (prompts[k].lang, prompts[k].topic, prompts[k].item))
    return [{"key": key, "first": prompts[key], "cells": by_key[key]} for key in ordered]


def build_context(runs: Sequence[RunMeasures]) -> dict[str, Any]:
    labels = _labels(runs)
    langs = sorted({m.lang for run in runs for m in run.measures})
    pair_table, pair_charts = _pairs(runs, labels)
    return {
        "generated": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "runs": [
            {
                "label": label,
                "color": PALETTE[i % len(PALETTE)],
                "manifest": run.manifest,
                "summary": summary(run),
                "problems": run.problems,
                "dir": run.run_dir.name,
            }
            for i, (run, label) in enumerate(zip(runs, labels, strict=True))
        ],
        "labels": labels,
        "langs": langs,
        "topic_charts": _topic_charts(runs, labels, langs),
        "topic_table": _topic_table(runs, langs),
        "pair_table": pair_table,
        "pair_charts": pair_charts,
        "withdrawals": [
            {"label": labels[i], "color": PALETTE[i % len(PALETTE)], "m": m}
            for i, run in enumerate(runs)
            for m in withdrawals(run.measures)
        ],
        "answers": _answers(runs),
        "not_measured": [
            {"label": labels[i], "m": m} for i, run in enumerate(runs) for m in run.measures if not m.measured
        ],
        "refused": refused,
    }


def csp(css: str) -> str:
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; script-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )


def render_report(runs: Sequence[RunMeasures]) -> str:
    """The comparison page for these runs (the first is the reference column)."""
    context = build_context(runs)
    # our own constant stylesheet is the only thing not escaped; its hash is in the CSP
    return _env.get_template("report.html").render(css=Markup(CSS), csp=csp(CSS), **context)
