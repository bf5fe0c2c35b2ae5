"""`distillguard demo`: the whole loop on the bundled sample, with the same commands a user runs.

simulate labelled traffic (shipped prompts, test families) → ingest it into a call store → scan
it → measure the verdicts against the labels next to two naive baselines → point at the report.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click


def _run(args: list[str]) -> None:
    from distillguard.cli import main

    click.secho("$ distillguard " + " ".join(args), fg="cyan", err=True)
    main.main(args=args, prog_name="distillguard", standalone_mode=False)


@click.command("demo")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/demo"), show_default=True
)
@click.option("--preset", default="small", show_default=True, help="Simulator preset to run on.")
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--corpus",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Development corpora instead of the shipped sample.",
)
def demo(out: Path, preset: str, seed: int, corpus: Path | None) -> None:
    """Simulate, ingest, scan and measure on the bundled sample; write everything under --out."""
    if out.exists():
        shutil.rmtree(out)  # the demo owns this folder; a rerun starts clean
    sim, store, scan = out / "sim", out / "store", out / "scan"
    sim_args = ["sim", "--preset", preset, "--seed", str(seed), "--split", "test", "--out", str(sim)]
    _run(sim_args + (["--corpus", str(corpus)] if corpus else []))
    _run(["ingest", str(sim / "events.jsonl"), "--out", str(store)])
    _run(["scan", str(store), "--accounts", str(sim / "accounts.jsonl"), "--out", str(scan)])
    _run(
        [
            "bench",
            "detect",
            "--labels",
            str(sim / "labels.jsonl"),
            "--verdicts",
            str(scan / "accounts_out.jsonl"),
            "--store",
            str(store),
            "--json",
            str(out / "bench_detect.json"),
        ]
    )
    click.echo(f"\nReport: {(scan / 'report.html').resolve()} (open it in a browser)")
