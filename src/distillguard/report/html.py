"""Render the scan report. Jinja2 with autoescaping on: every prompt, user agent and id shown
is attacker-controlled and must stay inert text; only our own SVG charts are marked safe."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_env = Environment(
    loader=PackageLoader("distillguard.report", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
)


def render_report(context: dict[str, Any]) -> str:
    return _env.get_template("report.html").render(**context)
