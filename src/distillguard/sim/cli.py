"""`distillguard sim`: generate a labelled scenario; `distillguard sim build-sample`: rebuild the
shipped corpus sample from the development corpora."""

from __future__ import annotations

import json
from pathlib import Path

import click

from distillguard.corpus import SPLITS
from distillguard.sim.scenario import PRESETS, ScenarioError, load_preset, load_scenario


@click.group(invoke_without_command=True)
@click.option(
    "--preset", type=click.Choice(PRESETS), default="small", show_default=True, help="Scenario size."
)
@click.option(
    "--scenario",
    "scenario_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Scenario YAML (overrides --preset).",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--split",
    type=click.Choice(SPLITS),
    default="test",
    show_default=True,
    help="Draw every prompt from families of this split.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option(
    "--corpus",
    "corpus_root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Development corpora (e.g. ../shared/data); default: the sample shipped in the package.",
)
@click.option("--gzip", "compress", is_flag=True, help="Write events.jsonl.gz.")
@click.pass_context
def sim(
    ctx: click.Context,
    preset: str,
    scenario_path: Path | None,
    seed: int,
    split: str,
    out: Path | None,
    corpus_root: Path | None,
    compress: bool,
) -> None:
    """Generate labelled traffic (events, accounts, labels) from real public prompts."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise click.UsageError("--out is required")
    from distillguard.sim.generate import format_summary, generate

    try:
        scenario = load_scenario(scenario_path) if scenario_path else load_preset(preset)
    except ScenarioError as error:
        raise click.ClickException(str(error)) from None
    result = generate(
        scenario,
        seed=seed,
        split=split,
        out=out,
        corpus_root=corpus_root,
        compress=compress,
        progress=lambda line: click.echo(f"  {line}", err=True),
    )
    click.echo(format_summary(result.summary))
    click.echo(
        f"wrote {out}/{result.summary['events_file']}, accounts.jsonl, labels.jsonl, scenario.yaml, summary.json"
    )


@sim.command("build-sample")
@click.option(
    "--corpus",
    "corpus_root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The development corpora (../shared/data).",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Default: the package's sample folder."
)
def build_sample_command(corpus_root: Path, out: Path | None) -> None:
    """Rebuild the small permissively licensed corpus sample that ships in the package."""
    from distillguard.corpus.sample_build import SAMPLE_DIR, build_sample

    target = out or SAMPLE_DIR
    written = build_sample(corpus_root, target)
    for rel, rows, licence in written:
        click.echo(f"  {rel}: {rows} rows ({licence})")
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    click.echo(json.dumps({"files": len(written), "bytes": size, "out": str(target)}))
