"""`distillguard cases ...` (import evidence, list, manage users) and `distillguard ui`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click

from distillguard.cases.store import ROLES, CaseStore, CaseStoreError, redact_url

DB_HELP = "Case store: a SQLite file path or sqlite:///..., or postgresql://user@host/db."
DEFAULT_DB = "distillguard-cases.db"


def _open(db: str) -> CaseStore:
    try:
        return CaseStore.open(db)
    except CaseStoreError as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:  # a driver error: say which database, never its password
        raise click.ClickException(f"cannot open case store {redact_url(db)}: {error}") from None


@click.group("cases")
def cases() -> None:
    """The case store: cases per actor, their evidence, decisions and the audit log."""


@cases.command("import")
@click.option("--db", default=DEFAULT_DB, show_default=True, help=DB_HELP)
@click.option(
    "--scan",
    "scan_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Output folder of `distillguard scan` (repeatable).",
)
@click.option(
    "--gateway-log",
    "log_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Call log folder of `distillguard serve` (repeatable): accounts its policy acted on.",
)
def import_(db: str, scan_dirs: tuple[Path, ...], log_dirs: tuple[Path, ...]) -> None:
    """Open or update cases from scan verdicts and gateway flags (an account's case is updated,
    never duplicated)."""
    from distillguard.cases.evidence import EvidenceError, import_gateway, import_scan

    if not scan_dirs and not log_dirs:
        raise click.UsageError("give --scan DIR and/or --gateway-log DIR")
    store = _open(db)
    try:
        results = []
        for folder in scan_dirs:
            results += import_scan(store, folder)
        for folder in log_dirs:
            results += import_gateway(store, folder)
    except EvidenceError as error:
        raise click.ClickException(str(error)) from None
    finally:
        store.close()
    created = sum(1 for r in results if r.created)
    click.echo(
        f"{len(results)} cases from the evidence: {created} opened, {len(results) - created} updated "
        f"({sum(len(r.new_accounts) for r in results)} accounts added) in {redact_url(db)}"
    )


@cases.command("list")
@click.option("--db", default=DEFAULT_DB, show_default=True, help=DB_HELP)
@click.option(
    "--status", default="open", show_default=True, help="open, banned, throttled, allowed, cleared, all"
)
@click.option("--limit", default=20, show_default=True)
def list_(db: str, status: str, limit: int) -> None:
    """The review queue, highest risk first."""
    store = _open(db)
    try:
        rows = store.queue(status=None if status == "all" else status, limit=limit)
    except CaseStoreError as error:
        raise click.ClickException(str(error)) from None
    finally:
        store.close()
    for row in rows:
        click.echo(
            f"#{row['case_id']:<5} {row['risk']:.3f} {row['verdict']:<10} {row['status']:<9} "
            f"{row['n_accounts']:>4} accounts  {row['title']}"
        )


@cases.command("add-user")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--db", default=DEFAULT_DB, show_default=True, help=DB_HELP)
@click.option(
    "--password-env",
    default=None,
    help="Read the password from this environment variable instead of prompting (for scripts).",
)
def add_user(username: str, role: str, db: str, password_env: str | None) -> None:
    """Create or replace a local user of the review UI (only an argon2id hash is stored)."""
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise click.ClickException(f"environment variable {password_env} is not set or empty")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    store = _open(db)
    try:
        store.add_user(username, password, role)
    except CaseStoreError as error:
        raise click.ClickException(str(error)) from None
    finally:
        store.close()
    click.echo(f"user {username!r} ({role}) saved in {redact_url(db)}")


@click.command("ui")
@click.option("--db", default=DEFAULT_DB, show_default=True, help=DB_HELP)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8700, show_default=True, type=int)
@click.option(
    "--state",
    "state_url",
    default=None,
    help="The gateways' enforcement state: memory:// with --bans (default) or redis://HOST:PORT/DB.",
)
@click.option("--state-prefix", default="dg:", show_default=True)
@click.option(
    "--bans",
    "bans_file",
    type=click.Path(dir_okay=False),
    default="distillguard-bans.jsonl",
    show_default=True,
    help="Ban list file the gateways watch (memory state).",
)
@click.option(
    "--feedback-labels",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append cleared accounts here as benign labels for the next training set.",
)
@click.option("--https-only", is_flag=True, help="Send the session cookie over HTTPS only (behind TLS).")
def ui(
    db: str,
    host: str,
    port: int,
    state_url: str | None,
    state_prefix: str,
    bans_file: str,
    feedback_labels: Path | None,
    https_only: bool,
) -> None:
    """Serve the review UI: queue, cases, decisions that reach every gateway, audit log.

    Sessions are signed with DISTILLGUARD_UI_SECRET, or with a random key per start (users log in
    again after a restart)."""
    import uvicorn

    from distillguard.enforcement.state import open_state
    from distillguard.ui.app import ReviewApp

    store = _open(db)
    if not store.users():
        raise click.ClickException(
            f"no users in {redact_url(db)}: add one with `distillguard cases add-user NAME --role admin --db {db}`"
        )
    state = open_state(state_url, bans_file=Path(bans_file).resolve(), prefix=state_prefix)
    secret = os.environ.get("DISTILLGUARD_UI_SECRET") or secrets.token_urlsafe(32)
    app = ReviewApp(store, state, feedback_labels=feedback_labels).asgi(secret, https_only=https_only)
    click.echo(
        f"review UI on http://{host}:{port}/ (cases in {redact_url(db)}, enforcement via {state.name})"
    )
    uvicorn.run(app, host=host, port=port, log_level="info")
