"""`distillguard audit`: run a prompt suite against a model endpoint (`run`), compare runs in one
HTML report (`compare`), check a suite file (`check-suite`), rebuild the packaged deccp suite
(`build-suite`)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import click

DEFAULT_KEY_ENV = "DISTILLGUARD_AUDIT_API_KEY"


@click.group()
def audit() -> None:
    """Audit a model's refusals, framing asymmetry and withdrawn answers on sensitive topics."""


def _langs(value: str) -> tuple[str, ...]:
    from distillguard.audit.suite import LANGUAGES

    langs = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [lang for lang in langs if lang not in LANGUAGES]
    if not langs or unknown:
        raise click.BadParameter(f"{value!r}: give languages from {', '.join(LANGUAGES)}, comma-separated")
    return langs


@audit.command("run")
@click.option("--endpoint", required=True, help="OpenAI-compatible base URL (…/v1 or …/v1/chat/completions).")
@click.option("--model", required=True, help="Model name sent in each request.")
@click.option(
    "--suite",
    "suites",
    multiple=True,
    default=("default",),
    show_default=True,
    help="Packaged suite (deccp, pairs, default = both) or a suite YAML file; repeat to combine.",
)
@click.option("--lang", "lang_list", default="en,zh", show_default=True, help="Languages to ask in.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run directory.")
@click.option(
    "--api-key-env",
    default=DEFAULT_KEY_ENV,
    show_default=True,
    help="Environment variable holding the API key (never logged or written).",
)
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True)
@click.option(
    "--max-requests", type=click.IntRange(1), help="Stop after this many HTTP requests (retries count)."
)
@click.option("--retries", type=click.IntRange(0, 20), default=4, show_default=True)
@click.option(
    "--backoff", type=click.FloatRange(0), default=1.0, show_default=True, help="First retry delay, s."
)
@click.option(
    "--max-wait",
    type=click.FloatRange(0),
    default=120.0,
    show_default=True,
    help="Longest Retry-After honoured, s.",
)
@click.option(
    "--timeout", type=click.FloatRange(0.1), default=180.0, show_default=True, help="Per request, s."
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(0.1),
    default=60.0,
    show_default=True,
    help="Longest silence mid-stream, s.",
)
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1), default=1024, show_default=True)
@click.option("--seed", type=int, help="Sent to services that honour it, for repeatable sampling.")
@click.option(
    "--retry-failed", is_flag=True, help="Ask again questions whose last outcome was a transport failure."
)
@click.option(
    "--no-progress", is_flag=True, help="No progress bar (it is off anyway when stderr is not a terminal)."
)
def run(
    endpoint: str,
    model: str,
    suites: tuple[str, ...],
    lang_list: str,
    out: Path,
    api_key_env: str,
    concurrency: int,
    max_requests: int | None,
    retries: int,
    backoff: float,
    max_wait: float,
    timeout: float,
    read_timeout: float,
    temperature: float,
    max_tokens: int,
    seed: int | None,
    retry_failed: bool,
    no_progress: bool,
) -> None:
    """Ask every question of SUITE in each language, streaming and recording every answer into OUT
    (append-only answers.jsonl; run again to resume), then measure the answers (measures.json)."""
    import sys

    from distillguard.audit.measures import measure_run, measures_document, summary
    from distillguard.audit.runner import Auditor, RunError, RunOptions
    from distillguard.audit.suite import SuiteError, load_suites

    langs = _langs(lang_list)
    try:
        suite = load_suites(suites)
    except SuiteError as error:
        raise click.ClickException(str(error)) from error
    api_key = os.environ.get(api_key_env) or None
    if api_key is None:
        click.echo(f"note: ${api_key_env} is not set; requests go without an Authorization header", err=True)
    options = RunOptions(
        endpoint=endpoint,
        model=model,
        langs=langs,
        api_key=api_key,
        api_key_env=api_key_env,
        concurrency=concurrency,
        max_requests=max_requests,
        retries=retries,
        backoff_s=backoff,
        max_wait_s=max_wait,
        timeout_s=timeout,
        read_timeout_s=read_timeout,
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        retry_failed=retry_failed,
        progress=not no_progress and sys.stderr.isatty(),
    )
    try:
        auditor = Auditor(suite, options, out)
        result = asyncio.run(auditor.run(echo=lambda line: click.echo(line, err=True)))
    except RunError as error:
        raise click.ClickException(str(error)) from error
    click.echo(
        f"{result.written} answers recorded now, {result.already} from before, {result.left} left "
        f"of {result.total} ({suite.name}, {', '.join(langs)}); {result.requests} HTTP requests"
    )
    if result.statuses:
        click.echo("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(result.statuses.items())))
    measured = measure_run(out)
    (out / "measures.json").write_text(
        json.dumps(measures_document(measured), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    numbers = summary(measured)
    for lang, row in numbers["refusal_by_language"].items():
        rate = "" if row["rate"] is None else f" ({100 * row['rate']:.0f}%)"
        click.echo(f"refused ({lang}): {row['refused']}/{row['measured']}{rate}")
    if numbers["withdrawals"]:
        click.echo("withdrawn: " + ", ".join(f"{k} {v}" for k, v in sorted(numbers["withdrawals"].items())))
    click.echo(f"measures: {out / 'measures.json'}")
    if result.stopped:
        message = f"stopped: {result.stopped}"
        if "budget" in result.stopped:
            click.echo(f"{message}; run the same command again to continue", err=True)
        else:
            raise click.ClickException(message)


@audit.command("compare")
@click.argument(
    "run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("audit_report.html"),
    show_default=True,
    help="Where to write the HTML report.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write every measure."
)
def compare(run_dirs: tuple[Path, ...], out: Path, json_path: Path | None) -> None:
    """Compare audit runs (one per model) in one HTML report: refusal rate by topic and language,
    asymmetry per pair, withdrawn answers with their before and after text, answers side by side."""
    from distillguard.audit.measures import measure_run, measures_document
    from distillguard.audit.report import render_report

    runs = []
    for run_dir in run_dirs:
        try:
            runs.append(measure_run(run_dir))
        except ValueError as error:
            raise click.ClickException(str(error)) from error
    out.write_text(render_report(runs), encoding="utf-8")
    click.echo(f"report: {out} ({len(runs)} runs, {sum(len(r.measures) for r in runs)} answers)")
    if json_path is not None:
        document = {str(run.run_dir): measures_document(run) for run in runs}
        json_path.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


@audit.command("check-suite")
@click.argument("suites", nargs=-1, required=True)
@click.option("--lang", "lang_list", default="en,zh", show_default=True)
def check_suite(suites: tuple[str, ...], lang_list: str) -> None:
    """Validate suite files (or packaged names) and say what a run would ask."""
    from distillguard.audit.suite import SuiteError, load_suites

    try:
        suite = load_suites(suites)
    except SuiteError as error:
        raise click.ClickException(str(error)) from error
    items = suite.items(_langs(lang_list))
    click.echo(
        f"{suite.name}: {len(suite.prompts)} prompts, {len(suite.pairs)} pairs; {len(items)} questions in "
        f"{lang_list} ({', '.join(f'{s.name}: {s.licence}' for s in suite.sources)})"
    )


@audit.command("build-suite")
@click.option(
    "--deccp",
    "deccp_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="AUGMXNT/deccp's lists (e.g. ../shared/data/audit/deccp); default: the copy in the corpus sample.",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Default: the package's suites/deccp."
)
def build_suite_command(deccp_dir: Path | None, out: Path | None) -> None:
    """Rebuild the packaged deccp suite from the upstream prompt lists."""
    from importlib import resources

    from distillguard.audit.build import BuildError, build_suite

    source = deccp_dir or Path(str(resources.files("distillguard.corpus") / "sample" / "audit" / "deccp"))
    try:
        target, count = build_suite(source, out)
    except BuildError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"{target}: {count} prompts from {source}")
