"""`distillguard demo`: the whole loop on the bundled sample, with the same commands a user runs.

simulate labelled traffic (shipped prompts, test families) → ingest it into a call store → scan
it → measure the verdicts against the labels next to two naive baselines → open cases from the
scan → serve the review UI on them (a user `demo` with a fresh password printed on the terminal).
"""

from __future__ import annotations

import os
import secrets
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
@click.option("--serve/--no-serve", default=True, show_default=True, help="End by serving the review UI.")
@click.option("--ui-port", default=8700, show_default=True, type=int)
def demo(out: Path, preset: str, seed: int, corpus: Path | None, serve: bool, ui_port: int) -> None:
    """Simulate, ingest, scan, measure and open cases on the bundled sample (everything under
    --out), then serve the review UI on those cases."""
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
    db = str(out / "cases.db")
    _run(["cases", "import", "--db", db, "--scan", str(scan)])
    # a password for this demo only, shown once on the terminal, never written to a file or log
    os.environ["DISTILLGUARD_DEMO_PASSWORD"] = password = secrets.token_urlsafe(12)
    _run(
        [
            "cases",
            "add-user",
            "demo",
            "--role",
            "admin",
            "--db",
            db,
            "--password-env",
            "DISTILLGUARD_DEMO_PASSWORD",
        ]
    )
    del os.environ["DISTILLGUARD_DEMO_PASSWORD"]
    ui_args = ["ui", "--db", db, "--port", str(ui_port), "--bans", str(out / "bans.jsonl")]
    ui_args += ["--feedback-labels", str(out / "reviewed_labels.jsonl")]
    click.secho(
        f"\nReview UI: http://127.0.0.1:{ui_port}/  user: demo  password: {password}\n"
        f"Decisions go to {out / 'bans.jsonl'}; a gateway enforces them with "
        f"`distillguard serve --upstream URL --bans {out / 'bans.jsonl'}`.",
        fg="green",
    )
    if serve:
        click.echo("Serving until Ctrl-C.")
        _run(ui_args)
    else:
        click.echo("Serve it with: distillguard " + " ".join(ui_args))
