"""The `distillguard` command. Subcommands live next to the stage they drive and load lazily,
so `distillguard --help` imports neither pyarrow, scikit-learn nor a model."""

from __future__ import annotations

import importlib
from typing import Any

import click

# name -> ("module:attribute" of a click command, one-line help); one line per stage of the flow.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("distillguard.events.ingest_cli:ingest", "Turn API logs into the Parquet call store."),
    "sim": ("distillguard.sim.cli:sim", "Generate labelled traffic from real public prompts."),
    "scan": ("distillguard.scan.cli:scan", "Find distilling accounts and their actors in API logs."),
    "bench": ("distillguard.bench.cli:bench", "Measure detection quality, speed and memory."),
    "demo": ("distillguard.demo:demo", "Run the whole loop on the bundled sample."),
    "serve": ("distillguard.gateway.cli:serve", "Run the OpenAI-compatible gateway that enforces live."),
    "replay": ("distillguard.gateway.cli:replay", "Run the live gateway engine over recorded calls."),
    "cases": ("distillguard.cases.cli:cases", "Cases from scans and gateway flags; review users."),
    "ui": ("distillguard.cases.cli:ui", "Serve the investigators' review UI."),
    "intel": (
        "distillguard.intel.cli:intel",
        "Share actors' indicators with peers (STIX/TAXII), hold matches.",
    ),
    "audit": (
        "distillguard.audit.cli:audit",
        "Audit a model's refusals, framing bias and withdrawn answers.",
    ),
    "train": (
        "distillguard.train_cli:train",
        "Train the shipped models from the development corpora.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are named in a table and imported only when invoked."""

    table: dict[str, tuple[str, str]] = SUBCOMMANDS

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.table))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.table.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = entry[0].split(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.table[name][1]) for name in sorted(self.table)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(package_name="distillguard")
def main() -> None:
    """Protect a language-model API from adversarial distillation."""
