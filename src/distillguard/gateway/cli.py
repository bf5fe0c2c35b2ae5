"""`distillguard serve` (the inline gateway) and `distillguard replay` (the same engine over a
recorded stream of calls, one decision per call)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import msgspec

log = logging.getLogger("distillguard.gateway")

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "info") -> None:
    JsonLogFormatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger("distillguard")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


@click.command()
@click.option(
    "--upstream",
    required=True,
    help="Base URL of the OpenAI-compatible model server, e.g. http://127.0.0.1:8000",
)
@click.option(
    "--keys",
    "keys_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Keys file (hashes of callers' API keys -> accounts).",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Policy YAML (default: the packaged default policy).",
)
@click.option(
    "--state",
    "state_url",
    default=None,
    help="memory:// (default) or redis://HOST:PORT/DB to share state across replicas.",
)
@click.option(
    "--state-prefix", default="dg:", show_default=True, help="Namespace of this deployment's keys in Redis."
)
@click.option(
    "--bans",
    "bans_file",
    type=click.Path(dir_okay=False),
    help="Ban list file watched for changes (memory state).",
)
@click.option(
    "--log-dir",
    default="distillguard-log",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Durable call log directory.",
)
@click.option(
    "--log-sync",
    type=click.Choice(["write", "fsync"]),
    default="write",
    show_default=True,
    help="write: survives a killed gateway; fsync: also a power loss (group commit).",
)
@click.option("--shadow", is_flag=True, help="Decide and log everything, enforce nothing.")
@click.option(
    "--signals",
    type=click.Choice(["inline", "rules", "none"]),
    default="inline",
    show_default=True,
    help="inline: every inline signal; rules: their pattern tables only.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--server",
    type=click.Choice(["uvicorn", "granian"]),
    default="uvicorn",
    show_default=True,
    help="uvicorn (uvloop + httptools): lowest latency at low load; granian (Rust HTTP): ~1.5x req/s under load.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=int,
    help="Worker processes (more than one needs --state redis://...).",
)
@click.option(
    "--upstream-key-env",
    default="DISTILLGUARD_UPSTREAM_API_KEY",
    show_default=True,
    help="Environment variable holding the upstream API key.",
)
@click.option("--max-body-bytes", default=4 * 1024 * 1024, show_default=True, type=int)
@click.option(
    "--read-timeout", default=300.0, show_default=True, type=float, help="Seconds to wait for upstream bytes."
)
@click.option(
    "--trust-forwarded-for",
    is_flag=True,
    help="Take the client IP from X-Forwarded-For (only behind your own proxy): the right-most "
    "address that is not a --trusted-proxy.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    help="Your own proxies (CIDR or address; repeat): X-Forwarded-For entries they wrote are skipped, "
    "and the header is believed only when the connection comes from one. Default: none, so the "
    "right-most entry is the client.",
)
@click.option(
    "--tls-fingerprint-header", default=None, help="Header in which the edge passes a JA3/JA4 fingerprint."
)
@click.option(
    "--asn-header",
    default=None,
    help="Header in which the edge passes the client's ASN (TLS fingerprints are matched within an ASN).",
)
@click.option(
    "--access-log", is_flag=True, help="Log every call (otherwise only non-allow decisions and errors)."
)
@click.option("--log-level", default="info", show_default=True)
def serve(**options: Any) -> None:
    """Run the OpenAI-compatible gateway in front of a model server."""
    import uvicorn

    from distillguard.enforcement.policy import load_policy
    from distillguard.gateway.app import Gateway, GatewayConfig
    from distillguard.gateway.keys import load_keys

    setup_logging(options["log_level"])
    workers = options["workers"]
    state_url = options["state_url"]
    if workers > 1 and not (state_url or "").startswith(("redis://", "rediss://", "unix://")):
        raise click.UsageError(
            "--workers above 1 needs --state redis://... so buckets and bans hold across workers"
        )
    config = GatewayConfig(
        upstream=options["upstream"],
        keys_file=str(Path(options["keys_file"]).resolve()),
        log_dir=str(Path(options["log_dir"]).resolve()),
        policy_file=str(Path(options["policy_file"]).resolve()) if options["policy_file"] else None,
        state_url=state_url,
        state_prefix=options["state_prefix"],
        bans_file=str(Path(options["bans_file"]).resolve()) if options["bans_file"] else None,
        log_sync=options["log_sync"],
        shadow=options["shadow"],
        signals=options["signals"],
        upstream_key_env=options["upstream_key_env"],
        max_body_bytes=options["max_body_bytes"],
        read_timeout_s=options["read_timeout"],
        trust_forwarded_for=options["trust_forwarded_for"],
        trusted_proxies=list(options["trusted_proxies"]),
        tls_fingerprint_header=options["tls_fingerprint_header"],
        asn_header=options["asn_header"],
        access_log=options["access_log"],
    )
    common: dict[str, Any] = {
        "host": options["host"],
        "port": options["port"],
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        # the client address is the gateway's to decide (--trust-forwarded-for, --trusted-proxy);
        # uvicorn would otherwise rewrite it from X-Forwarded-For for loopback peers on its own
        "proxy_headers": False,
        "log_config": None,
        "timeout_graceful_shutdown": 10,
    }
    try:
        from distillguard.gateway.forwarded import parse_networks

        parse_networks(config.trusted_proxies)
        if options["server"] == "granian":
            # granian forks its workers: a parent that loaded the signal models (native thread
            # pools) would hand them a deadlock, so only the files are checked here
            load_keys(config.keys_file)
            if config.policy_file:
                load_policy(config.policy_file)
        else:
            app = Gateway(config)  # validate keys, policy and signals once, before binding the port
    except (ValueError, RuntimeError, OSError) as error:
        raise click.ClickException(str(error)) from error
    if workers == 1 and options["server"] == "uvicorn":
        uvicorn.run(app, **common)
        return
    # Workers (and granian) build the app from the environment: the configuration holds paths and
    # settings only, never a secret (the upstream key stays in its own environment variable).
    os.environ["DISTILLGUARD_GATEWAY_CONFIG"] = msgspec.json.encode(config).decode()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="distillguard-metrics-")
    if options["server"] == "granian":
        from granian import Granian

        Granian(
            "distillguard.gateway.app:app_from_env",
            factory=True,
            interface="asgi",  # type: ignore[arg-type]
            address=options["host"],
            port=options["port"],
            workers=workers,
            loop="uvloop",  # type: ignore[arg-type]
            runtime_mode="st",  # type: ignore[arg-type]
            log_access=False,
        ).serve()
        return
    uvicorn.run("distillguard.gateway.app:app_from_env", factory=True, workers=workers, **common)


@click.command()
@click.argument("events", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Policy YAML (default: packaged).",
)
@click.option(
    "--accounts", type=click.Path(exists=True, dir_okay=False), help="accounts.jsonl: tiers per account."
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write one decision per call (JSONL).",
)
@click.option(
    "--signals", type=click.Choice(["inline", "rules", "none"]), default="inline", show_default=True
)
@click.option("--shadow", is_flag=True, help="Decide as in shadow mode (nothing is banned).")
def replay(
    events: str, policy_file: str | None, accounts: str | None, out_path: str, signals: str, shadow: bool
) -> None:
    """Run the live gateway engine over recorded calls (events.jsonl) and write per-call decisions."""
    setup_logging("warning")
    summary = asyncio.run(_replay(Path(events), policy_file, accounts, Path(out_path), signals, shadow))
    click.echo(json.dumps(summary, indent=2))


async def _replay(
    events: Path, policy_file: str | None, accounts: str | None, out_path: Path, signals: str, shadow: bool
) -> dict[str, Any]:
    from distillguard.enforcement.engine import Caller, LiveEngine, load_signals
    from distillguard.enforcement.policy import default_policy, load_policy
    from distillguard.enforcement.state import MemoryState
    from distillguard.events.call_view import view_of
    from distillguard.events.model import account_decoder
    from distillguard.gateway.calllog import read_segment

    policy = load_policy(policy_file) if policy_file else default_policy()
    if shadow:
        policy = msgspec.structs.replace(policy, mode="shadow")
    tiers: dict[str, str | None] = {}
    if accounts:
        with open(accounts, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        account = account_decoder.decode(line)
                    except (msgspec.DecodeError, ValueError) as error:
                        log.warning("%s:%d: account skipped: %s", accounts, number, error)
                        continue
                    tiers[account.account_id] = account.tier
    now = [0.0]
    state = MemoryState(clock=lambda: now[0])
    engine = LiveEngine(policy, state, load_signals(signals))
    actions: Counter[str] = Counter()
    started = time.perf_counter()
    n = 0
    encoder = msgspec.json.Encoder()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("wb") as out:
        for event in read_segment(events):
            now[0] = event.ts.timestamp() if isinstance(event.ts, datetime) else 0.0
            caller = Caller(
                account_id=event.account_id, key_id=event.key_id, tier=tiers.get(event.account_id)
            )
            view = view_of(event)
            decision = await engine.decide(view, caller)
            if event.response is not None:
                engine.analyze_output(view, decision)
            engine.record(caller, decision)
            actions[decision.action] += 1
            n += 1
            out.write(
                encoder.encode(
                    {"event_id": event.event_id, "account_id": event.account_id, "decision": decision}
                )
                + b"\n"
            )
    elapsed = time.perf_counter() - started
    return {
        "calls": n,
        "seconds": round(elapsed, 3),
        "calls_per_s": round(n / elapsed, 1) if elapsed else None,
        "actions": dict(actions),
        "out": str(out_path),
    }
