"""`distillguard intel ...`: share decided actors' indicators with peers (export, serve) and hold
accounts that match a peer's (pull, import, sweep). The community key comes from the environment
(DISTILLGUARD_INTEL_KEYS_FILE or DISTILLGUARD_INTEL_KEY) and never from the command line."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from distillguard.cases.cli import DB_HELP, DEFAULT_DB, _open
from distillguard.cases.store import CaseStore
from distillguard.events.model import Account

STATE_HELP = "The gateways' enforcement state: memory:// with --bans (default) or redis://HOST:PORT/DB."
DEPLOYMENT_HELP = "This deployment's name as peers see it (the STIX identity): 1-40 of a-z 0-9 . _ -."


def _keys() -> Any:
    from distillguard.intel.community_key import KEY_ENV, KEYS_FILE_ENV, CommunityKeyError, CommunityKeys

    try:
        keys = CommunityKeys.from_env()
    except CommunityKeyError as error:
        raise click.ClickException(str(error)) from None
    if keys is None:
        raise click.ClickException(
            f"no community key: set {KEYS_FILE_ENV} to a key file (`distillguard intel new-key`) or {KEY_ENV}=ID:BASE64"
        )
    return keys


def _deployment(name: str) -> str:
    from distillguard.intel.store import PEER_NAME

    if not PEER_NAME.match(name):
        raise click.BadParameter(DEPLOYMENT_HELP, param_hint="--deployment")
    return name


def _accounts(path: Path | None) -> dict[str, Account]:
    if path is None:
        return {}
    from distillguard.events.model import account_decoder

    out: dict[str, Account] = {}
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    account = account_decoder.decode(line)
                except Exception as error:  # msgspec's errors name the field
                    raise click.ClickException(f"{path}:{number}: {error}") from None
                out[account.account_id] = account
    return out


@contextmanager
def _stores(db: str) -> Iterator[tuple[CaseStore, Any]]:
    from distillguard.intel.store import IntelStore, IntelStoreError

    cases = _open(db)
    try:
        try:
            intel = IntelStore.open(cases)
        except IntelStoreError as error:
            raise click.ClickException(str(error)) from None
        yield cases, intel
    finally:
        cases.close()


def _state(state_url: str | None, bans_file: str, prefix: str) -> Any:
    from distillguard.enforcement.state import open_state

    try:
        return open_state(state_url, bans_file=Path(bans_file).resolve(), prefix=prefix)
    except ValueError as error:
        raise click.ClickException(str(error)) from None


def state_options(command: Any) -> Any:
    for option in reversed(
        [
            click.option("--state", "state_url", default=None, help=STATE_HELP),
            click.option("--state-prefix", default="dg:", show_default=True),
            click.option(
                "--bans",
                "bans_file",
                type=click.Path(dir_okay=False),
                default="distillguard-bans.jsonl",
                show_default=True,
                help="Ban list file the gateways watch (memory state).",
            ),
        ]
    ):
        command = option(command)
    return command


@click.group("intel")
def intel() -> None:
    """Share actors' indicators with trusted peers (STIX 2.1 over TAXII 2.1, keyed hashes only)."""


@intel.command("new-key")
@click.option("--id", "key_id", required=True, help="The key id peers will see (e.g. community-2026q1).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def new_key(key_id: str, out: Path) -> None:
    """Write a new community key file (owner-only). Share it with peers out of band."""
    import yaml

    from distillguard.intel.community_key import KEY_ID, new_secret

    if not KEY_ID.match(key_id):
        raise click.BadParameter("1-64 characters of A-Z a-z 0-9 . _ -", param_hint="--id")
    if out.exists():
        raise click.ClickException(f"{out} exists; rotate by adding the new key to it (see docs/intel.md)")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"keys": [{"id": key_id, "secret": new_secret(), "current": True}]}, handle)
    click.echo(
        f"community key {key_id!r} written to {out} (mode 600); set DISTILLGUARD_INTEL_KEYS_FILE={out}"
    )


@intel.command("export")
@click.option("--db", default=DEFAULT_DB, show_default=True, help=DB_HELP)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Bundle file to write."
)
@click.option("--deployment", required=True, help=DEPLOYMENT_HELP)
@click.option(
    "--accounts",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="accounts.jsonl: adds each case account's payment fingerprint and uncommon e-mail domain.",
)
@click.option(
    "--tlp",
    type=click.Choice(["clear", "green", "amber", "amber+strict", "red"]),
    default="amber+strict",
    show_default=True,
)
def export(db: str, out: Path, deployment: str, accounts: Path | None, tlp: str) -> None:
    """Write banned and throttled cases (not withheld) as a STIX 2.1 bundle of keyed hashes."""
    from distillguard.intel.publish import export_bundle

    keys = _keys()
    with _stores(db) as (cases, _intel):
        made, actors = export_bundle(
            cases, keys, _deployment(deployment), accounts=_accounts(accounts), tlp=tlp
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(made, indent=1, sort_keys=True), encoding="utf-8")
    indicators = sum(len(a.indicators) for a in actors)
    skipped: dict[str, int] = {}
    for actor in actors:
        for reason, n in actor.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
    click.echo(f"{len(actors)} actors, {indicators} indicators (key {keys.current}) -> {out}")
    for reason, n in sorted(skipped.items()):
        click.echo(f"  skipped {n}: {reason}")


@intel.command("publish")
@click.option("--db", default=DEFAULT_DB, show_default=True, help=DB_HELP)
@click.option("--deployment", required=True, help=DEPLOYMENT_HELP)
@click.option(
    "--collection",
    "collection_id",
    default=None,
    help="Collection id (default: derived from the deployment).",
)
@click.option("--accounts", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option(
    "--tlp", type=click.Choice(["clear", "green", "amber", "amber+strict", "red"]), default="amber+strict"
)
def publish_(db: str, deployment: str, collection_id: str | None, accounts: Path | None, tlp: str) -> None:
    """Bring the TAXII collection in line with the decided cases once (`serve` does it continuously)."""
    from distillguard.intel.publish import default_collection, publish

    keys = _keys()
    deployment = _deployment(deployment)
    collection_id = collection_id or default_collection(deployment)
    with _stores(db) as (cases, intel_store):
        done = publish(
            cases, intel_store, keys, deployment, collection_id, accounts=_accounts(accounts), tlp=tlp
        )
    click.echo(
        f"collection {collection_id}: {done.added} added, {done.updated} new versions, "
        f"{done.revoked} revoked, {done.unchanged} unchanged"
    )


@intel.command("add-peer")
@click.argument("name")
@click.option("--db", default=DEFAULT_DB, show_default=True, help=DB_HELP)
@click.option("--deployment", required=True, help=DEPLOYMENT_HELP)
@click.option(
    "--collection", "collections", multiple=True, help="Collection ids it may read (default: ours)."
)
@click.option(
    "--secret-env", required=True, help="Environment variable holding the peer's secret (16+ characters)."
)
def add_peer(name: str, db: str, deployment: str, collections: tuple[str, ...], secret_env: str) -> None:
    """Let a peer read our collection over TAXII (only an argon2id hash of its secret is kept)."""
    from distillguard.intel.publish import default_collection
    from distillguard.intel.store import IntelStoreError

    secret = os.environ.get(secret_env)
    if not secret:
        raise click.ClickException(f"environment variable {secret_env} is not set or empty")
    with _stores(db) as (_cases, intel_store):
        try:
            intel_store.add_peer(
                name, secret, list(collections) or [default_collection(_deployment(deployment))]
            )
        except IntelStoreError as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"peer {name!r} may read {', '.join(collections) or default_collection(deployment)}")


@intel.command("serve")
@click.option("--db", default=DEFAULT_DB, show_default=True, help=DB_HELP)
@click.option("--deployment", required=True, help=DEPLOYMENT_HELP)
@click.option(
    "--collection",
    "collection_id",
    default=None,
    help="Collection id (default: derived from the deployment).",
)
@click.option("--api-root", default="distillguard", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8710, show_default=True, type=int)
@click.option("--accounts", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option(
    "--tlp", type=click.Choice(["clear", "green", "amber", "amber+strict", "red"]), default="amber+strict"
)
@click.option(
    "--publish-every", default=10.0, show_default=True, type=float, help="Seconds between publishes."
)
def serve(
    db: str,
    deployment: str,
    collection_id: str | None,
    api_root: str,
    host: str,
    port: int,
    accounts: Path | None,
    tlp: str,
    publish_every: float,
) -> None:
    """Serve our decided actors over TAXII 2.1 to peers (read-only), publishing every few seconds.

    Put it behind TLS (a reverse proxy): peers authenticate with HTTP Basic."""
    import uvicorn

    from distillguard.intel.publish import default_collection, publish
    from distillguard.intel.taxii import Collection, TaxiiServer

    keys = _keys()
    deployment = _deployment(deployment)
    collection_id = collection_id or default_collection(deployment)
    cases = _open(db)
    from distillguard.intel.store import IntelStore

    intel_store = IntelStore.open(cases)
    known = _accounts(accounts)
    server = TaxiiServer(
        intel_store,
        [
            Collection(
                collection_id,
                f"{deployment}: distillation actors",
                "Banned and throttled actors, keyed hashes.",
            )
        ],
        title=f"DistillGuard TAXII ({deployment})",
        api_root=api_root,
        publish=lambda: publish(cases, intel_store, keys, deployment, collection_id, accounts=known, tlp=tlp),
        publish_s=publish_every,
    )
    click.echo(
        f"TAXII 2.1 on http://{host}:{port}/taxii2/ (API root /{api_root}/, collection {collection_id})"
    )
    uvicorn.run(server.asgi(), host=host, port=port, log_level="info")


def _run_on_watch_list(db: str, state: Any, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run a pull or import (``work`` on the intel store) with the shared gateway state started
    and closed around it; print its report and return it. A refused pull is a one-line error."""
    from distillguard.intel.pull import PullError

    async def run(intel_store: Any) -> Any:
        await state.start()
        try:
            return await work(intel_store)
        finally:
            await state.close()

    with _stores(db) as (_cases, intel_store):
        try:
            report = asyncio.run(run(intel_store))
        except PullError as error:
            raise click.ClickException(str(error)) from None
    for line in report.lines():
        click.echo(line)
    return report


@intel.command("pull")
@click.argument("url")
@click.option("--collection", "collection_id", required=True, help="The peer's collection id.")
@click.option("--peer", required=True, help="What we call this peer (cases name it): a-z 0-9 . _ -.")
@click.option("--db", default=DEFAULT_DB, show_default=True, help=DB_HELP)
@state_options
@click.option("--user", default=None, help="Our name at the peer's TAXII server.")
@click.option("--password-env", default=None, help="Environment variable holding our secret at the peer.")
@click.option(
    "--full", is_flag=True, help="Ignore where the last pull stopped (objects already held are unchanged)."
)
@click.option("--min-confidence", default=50, show_default=True, type=click.IntRange(0, 100))
@click.option("--max-bytes", default=16 * 1024 * 1024, show_default=True, type=click.IntRange(1024))
@click.option(
    "--hold",
    "hold_action",
    type=click.Choice(["ban", "throttle"]),
    default="ban",
    show_default=True,
    help="What a hold does until review: refuse (403 account_held) or throttle.",
)
def pull_(
    url: str,
    collection_id: str,
    peer: str,
    db: str,
    state_url: str | None,
    state_prefix: str,
    bans_file: str,
    user: str | None,
    password_env: str | None,
    full: bool,
    min_confidence: int,
    max_bytes: int,
    hold_action: str,
) -> None:
    """Pull a peer's collection (URL: its TAXII API root) into the watch list."""
    from distillguard.intel.pull import pull

    keys = _keys()
    password = os.environ.get(password_env) if password_env else None
    if password_env and not password:
        raise click.ClickException(f"environment variable {password_env} is not set or empty")
    state = _state(state_url, bans_file, state_prefix)

    report = _run_on_watch_list(
        db,
        state,
        lambda intel_store: pull(
            intel_store,
            state,
            keys,
            api_root=url,
            collection_id=collection_id,
            peer=peer,
            user=user,
            password=password,
            full=full,
            min_confidence=min_confidence,
            max_bytes=max_bytes,
            hold_action=hold_action,
        ),
    )
    if report.error and not report.pages:
        raise click.ClickException(f"pull failed: {report.error}")


@intel.command("import")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--peer", required=True, help="The peer that sent it.")
@click.option("--db", default=DEFAULT_DB, show_default=True, help=DB_HELP)
@state_options
@click.option("--min-confidence", default=50, show_default=True, type=click.IntRange(0, 100))
@click.option(
    "--hold", "hold_action", type=click.Choice(["ban", "throttle"]), default="ban", show_default=True
)
def import_(
    bundle: Path,
    peer: str,
    db: str,
    state_url: str | None,
    state_prefix: str,
    bans_file: str,
    min_confidence: int,
    hold_action: str,
) -> None:
    """Import a peer's bundle file (exchanged out of band) into the watch list."""
    from distillguard.intel.pull import import_bundle

    keys = _keys()
    state = _state(state_url, bans_file, state_prefix)

    _run_on_watch_list(
        db,
        state,
        lambda intel_store: import_bundle(
            intel_store,
            state,
            keys,
            bundle,
            peer=peer,
            min_confidence=min_confidence,
            hold_action=hold_action,
        ),
    )


@intel.command("sweep")
@click.option("--db", default=DEFAULT_DB, show_default=True, help=DB_HELP)
@click.option("--accounts", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--scan",
    "scan_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A scan's output folder: its sample calls add template and system-prompt matches.",
)
@state_options
def sweep_(
    db: str, accounts: Path, scan_dir: Path | None, state_url: str | None, state_prefix: str, bans_file: str
) -> None:
    """Match known accounts (and a scan's sample calls) against the watch list: each match is held
    and a case naming the peer is opened."""
    from distillguard.intel.sweep import sweep

    keys = _keys()
    state = _state(state_url, bans_file, state_prefix)
    known = _accounts(accounts)

    async def run(cases: CaseStore) -> Any:
        await state.start()
        try:
            return await sweep(cases, state, keys, known, scan_dir)
        finally:
            await state.close()

    with _stores(db) as (cases, _intel):
        held = asyncio.run(run(cases))
    click.echo(f"{len(held)} account(s) held on peers' indicators")
    for account_id, reason in held:
        click.echo(f"  {account_id}: {reason}")


@intel.command("list")
@click.option("--db", default=DEFAULT_DB, show_default=True, help=DB_HELP)
def list_(db: str) -> None:
    """Peers' indicators on the watch list, our pulls, and what we published."""
    from distillguard.intel.views import overview

    with _stores(db) as (_cases, intel_store):
        seen = overview(intel_store)
    for peer, rows in seen["by_peer"].items():
        click.echo(f"from {peer}: {len(rows)} indicator(s)")
        for row in rows:
            click.echo(f"  {row['status']:<8} {row['kind']:<45} {row['confidence']:>3}  {row['actor']}")
    for pulled in seen["pulls"]:
        click.echo(f"pull {pulled['source']} ({pulled['peer']}): resumes after {pulled['added_after']}")
    for case in seen["published"]:
        click.echo(
            f"case #{case['case_id']}: {case['live']} live, {case['revoked']} revoked; fetched by {', '.join(case['peers']) or 'nobody'}"
        )


@intel.command("bench")
@click.option("--preset", default="small", show_default=True)
@click.option("--seed", "seeds", multiple=True, type=int, help="Simulator seeds (repeatable; default 1).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--corpus", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
def bench(preset: str, seeds: tuple[int, ...], out: Path, corpus: Path | None) -> None:
    """Measure: recidivists' new accounts held at B on their first call when only A saw the actor,
    against B alone, and benign accounts B holds."""
    from distillguard.intel.bench import run_bench

    results = run_bench(preset, list(seeds) or [1], out, corpus)
    click.echo(json.dumps(results, indent=2, default=str))
