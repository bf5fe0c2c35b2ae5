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
    """Create or replace a local user of the review UI (only an argon2id hash is stored; replacing
    a user ends its sessions). The password needs 12 characters or more and a zxcvbn strength of 3
    of 4: common passwords, keyboard walks, repeats and the user name are refused."""
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


def _anchor(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    entry, _, digest = value.partition(":")
    if not entry.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise click.BadParameter(f"expected ENTRY_ID:SHA256 (as verify-audit prints it), not {value!r}")
    return int(entry), digest


@cases.command("verify-audit")
@click.option("--db", default=DEFAULT_DB, show_default=True, help=DB_HELP)
@click.option(
    "--anchor",
    callback=_anchor,
    default=None,
    help="ENTRY_ID:SHA256 printed by an earlier run (kept outside the database): that entry must "
    "still be in the log with that hash, which catches a log rewritten from the start.",
)
def verify_audit(db: str, anchor: tuple[int, str] | None) -> None:
    """Walk the audit log's hash chain; exit 1 naming the first entry that was changed, removed or
    inserted, or when the database's append-only triggers are gone."""
    store = _open(db)
    try:
        check = store.verify_audit(anchor)
    finally:
        store.close()
    if check.problem is not None:
        raise click.ClickException(
            f"audit log of {redact_url(db)} is broken at {check.problem}"
            + ("" if check.triggers else "; and its append-only triggers are missing")
        )
    if not check.triggers:
        raise click.ClickException(
            f"audit log of {redact_url(db)}: chain intact ({check.entries} entries) but its "
            "append-only triggers are missing (dropped by the database owner?)"
        )
    head = f"head #{check.head[0]} {check.head[1]}" if check.head else "empty"
    click.echo(f"audit log intact: {check.entries} entries, {head}")
    if check.head:
        click.echo(f"record the head elsewhere; check it later with --anchor {check.head[0]}:{check.head[1]}")


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
@click.option(
    "--forwarded-allow-ips",
    default=None,
    help="Comma-separated proxies (addresses or networks) trusted to set X-Forwarded-For; the client "
    "is the right-most address they did not add. Default: none (the connecting address is the client).",
)
@click.option("--idle-minutes", default=30, show_default=True, type=click.IntRange(1, 24 * 60))
@click.option("--session-hours", default=8, show_default=True, type=click.IntRange(1, 7 * 24))
def ui(
    db: str,
    host: str,
    port: int,
    state_url: str | None,
    state_prefix: str,
    bans_file: str,
    feedback_labels: Path | None,
    https_only: bool,
    forwarded_allow_ips: str | None,
    idle_minutes: int,
    session_hours: int,
) -> None:
    """Serve the review UI: queue, cases, decisions that reach every gateway, audit log.

    Sessions are kept in the case store (they outlast a restart; logging out ends them for good) and
    end after --idle-minutes without a request or --session-hours after login. The login form's
    token is signed with DISTILLGUARD_UI_SECRET, or with a random key per start (a login page opened
    before a restart must then be reloaded)."""
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
    review = ReviewApp(
        store,
        state,
        feedback_labels=feedback_labels,
        idle_s=idle_minutes * 60,
        absolute_s=session_hours * 3600,
    )
    app = review.asgi(secret, https_only=https_only, forwarded_allow_ips=forwarded_allow_ips)
    click.echo(
        f"review UI on http://{host}:{port}/ (cases in {redact_url(db)}, enforcement via {state.name})"
    )
    # proxy headers are the app's business (--forwarded-allow-ips): uvicorn's own default trusts
    # X-Forwarded-For from 127.0.0.1, which lets anyone on the host pick their lockout address
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False)
