"""Tiny inline-SVG charts for the report: no plotting library, no script, nothing to fetch.

Every text that reaches the SVG goes through `html.escape`, because labels can carry
attacker-controlled strings (account ids, user agents).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

_COLORS = {"distiller": "#c0392b", "suspicious": "#e67e22", "benign": "#7f8c8d"}


def bars(values: Sequence[float], *, width: int = 360, height: int = 60, title: str = "") -> str:
    """A bar chart of a series (e.g. calls per day), scaled to its maximum.

    >>> "<rect" in bars([1, 3, 2])
    True
    """
    top = max(values, default=0) or 1
    n = max(len(values), 1)
    step = width / n
    rects = []
    for i, value in enumerate(values):
        h = height * value / top
        rects.append(
            f'<rect x="{i * step:.1f}" y="{height - h:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="#34495e"><title>{i}: {value:g}</title></rect>'
        )
    label = html.escape(title)
    return (
        f'<svg class="chart" width="{width}" height="{height + 14}" role="img" aria-label="{label}">'
        f'{"".join(rects)}<text x="0" y="{height + 12}" font-size="10">{label} (max {top:g})</text></svg>'
    )


def scatter(
    points: Sequence[tuple[float, float, str, str]],
    *,
    width: int = 480,
    height: int = 300,
    x_label: str = "",
    y_label: str = "",
    log_x: bool = True,
) -> str:
    """A scatter of (x, y, verdict, tooltip) points, coloured by verdict."""
    if not points:
        return "<p>No accounts.</p>"

    def fx(x: float) -> float:
        return math.log10(max(x, 1.0)) if log_x else x

    xs = [fx(p[0]) for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs) or 1.0
    y0, y1 = min(ys), max(ys) or 1.0
    sx = (width - 40) / ((x1 - x0) or 1.0)
    sy = (height - 30) / ((y1 - y0) or 1.0)
    dots = []
    for (x, y, verdict, tip), px in zip(points, xs, strict=True):
        color = _COLORS.get(verdict, "#2980b9")
        cx = 35 + (px - x0) * sx
        cy = height - 20 - (y - y0) * sy
        dots.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="{color}" fill-opacity="0.7">'
            f"<title>{html.escape(tip)} ({x:g}, {y:.3g})</title></circle>"
        )
    xl = html.escape(x_label + (" (log scale)" if log_x else ""))
    yl = html.escape(y_label)
    return (
        f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{yl} by {xl}">'
        f'<line x1="35" y1="{height - 20}" x2="{width}" y2="{height - 20}" stroke="#999"/>'
        f'<line x1="35" y1="0" x2="35" y2="{height - 20}" stroke="#999"/>'
        f"{''.join(dots)}"
        f'<text x="40" y="{height - 5}" font-size="11">{xl}</text>'
        f'<text x="0" y="12" font-size="11">{yl}</text></svg>'
    )


def hbars(pairs: Sequence[tuple[str, float]], *, width: int = 360, row: int = 16, title: str = "") -> str:
    """Horizontal bars of named shares in [0, 1] (e.g. per-signal fire rates), labels escaped.

    >>> "&lt;b&gt;" in hbars([("<b>", 0.5)])
    True
    """
    if not pairs:
        return "<p>No signal fired.</p>"
    label_w = 150
    rows = []
    for i, (name, value) in enumerate(pairs):
        y = i * row
        w = (width - label_w - 40) * max(0.0, min(1.0, value))
        rows.append(
            f'<text x="0" y="{y + 12}" font-size="11">{html.escape(name[:24])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 5}" fill="#34495e"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 12}" font-size="10">{value:.0%}</text>'
        )
    height = row * len(pairs) + 14
    label = html.escape(title)
    return (
        f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{label}">'
        f'{"".join(rows)}<text x="0" y="{height - 2}" font-size="10">{label}</text></svg>'
    )


def graph(nodes: Sequence[tuple[str, str]], edges: Sequence[tuple[str, str, str]], *, size: int = 420) -> str:
    """A linked-account neighbourhood: nodes (id, verdict) on a circle, edges (a, b, kind) as
    lines coloured by indicator kind; every label escaped. Layout is deterministic (sorted ids)."""
    if not nodes:
        return "<p>No accounts.</p>"
    ids = sorted({n for n, _ in nodes})
    verdict = dict(nodes)
    r = size / 2 - 70  # room for the labels
    c = size / 2
    n = len(ids)
    pos = {
        node: (c + r * math.cos(2 * math.pi * i / n), c + r * math.sin(2 * math.pi * i / n))
        if n > 1
        else (c, c)
        for i, node in enumerate(ids)
    }
    kinds = sorted({k for _, _, k in edges})
    palette = ["#2980b9", "#8e44ad", "#16a085", "#d35400", "#2c3e50", "#c0392b", "#7f8c8d"]
    color = {k: palette[i % len(palette)] for i, k in enumerate(kinds)}
    lines = []
    for a, b, kind in edges:
        if a in pos and b in pos:
            (x1, y1), (x2, y2) = pos[a], pos[b]
            lines.append(
                f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color[kind]}" '
                f'stroke-opacity="0.6"><title>{html.escape(kind)}: {html.escape(a)} – {html.escape(b)}</title></line>'
            )
    dots = []
    for node in ids:
        x, y = pos[node]
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{_COLORS.get(verdict[node], "#2980b9")}">'
            f"<title>{html.escape(node)} ({html.escape(verdict[node])})</title></circle>"
        )
        if n <= 30:
            dots.append(
                f'<text x="{x + 8:.1f}" y="{y + 4:.1f}" font-size="9">{html.escape(node[:18])}</text>'
            )
    legend = "".join(
        f'<text x="4" y="{14 + 12 * i}" font-size="10" fill="{color[k]}">— {html.escape(k)}</text>'
        for i, k in enumerate(kinds)
    )
    return (
        f'<svg class="chart" width="{size}" height="{size}" role="img" aria-label="linked accounts">'
        f"{''.join(lines)}{''.join(dots)}{legend}</svg>"
    )
