"""The `--engine` option every batch command shares (ingest, scan, bench scan)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

ENGINES = ("embedded", "spark")


def engine_option(help_text: str) -> Callable[[Any], Any]:
    """`--engine embedded|spark`, embedded by default; ``help_text`` says what spark means here."""
    return click.option(
        "--engine",
        type=click.Choice(ENGINES),
        default="embedded",
        show_default=True,
        help=help_text + " See docs/spark.md.",
    )
