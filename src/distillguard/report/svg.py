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
