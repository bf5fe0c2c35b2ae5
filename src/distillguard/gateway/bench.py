"""`distillguard bench gateway`: added latency and throughput of the gateway against a local
instant upstream, in one run next to the peers (LiteLLM proxy, unmimic) on the same machine.

For each target: latency at concurrency 1 (p50/p99, minus the direct p50/p99 = added latency) and
requests/s at concurrency 32. Every server and the load generator are separate processes on
loopback; counts and durations are bounded. Peers run from their own virtualenv
(`--peers-venv`, made by `--install-peers`) so their pins never touch the project's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click
import httpx

BENCH_KEY = "sk-bench-" + "0" * 24
PEER_PACKAGES = ("litellm[proxy]==1.106.2", "unmimic==0.1.0")
GUARDRAIL_PACKAGES = ("msgspec", "pyarrow", "hyperscan", "click", "scipy", "pyyaml", "numpy")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A process under test, stopped by its process id (and its process group, for workers)."""

    def __init__(
        self, name: str, args: list[str], url: str, env: dict[str, str] | None = None, log: Path | None = None
    ):
        self.name, self.url = name, url
        self.log = log
        out = log.open("wb") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def wait(self, probe: str, timeout: float, headers: dict[str, str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise click.ClickException(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            try:
                httpx.get(self.url + probe, headers=headers, timeout=2.0)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise click.ClickException(f"{self.name} did not answer on {self.url}{probe} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _load(
    url: str,
    key: str | None,
    concurrency: int,
    requests: int,
    seconds: float,
    warmup: int,
    stream: bool = False,
) -> dict[str, Any]:
    args = [
        sys.executable,
        "-m",
        "distillguard.gateway.loadgen",
        "--url",
        url,
        "--concurrency",
        str(concurrency),
    ]
    args += ["--requests", str(requests), "--seconds", str(seconds), "--warmup", str(warmup)]
    if key:
        args += ["--key", key]
    if stream:
        args.append("--stream")
    done = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=seconds + requests * (3.0 if stream else 0.05) + 120,
        check=False,
    )
    if done.returncode != 0:
        raise click.ClickException(f"load generator failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _measure(name: str, url: str, key: str | None, requests: int, seconds: float) -> dict[str, Any]:
    latency = _load(url, key, 1, requests, 0.0, 200)
    throughput = _load(url, key, 32, 0, seconds, 200)
    click.echo(
        f"  {name}: c=1 p50 {latency['p50_ms']:.3f} ms p99 {latency['p99_ms']:.3f} ms; "
        f"c=32 {throughput['rps']:.0f} req/s (errors: {latency['errors'] or throughput['errors'] or 'none'})",
        err=True,
    )
    return {"name": name, "c1": latency, "c32": throughput}


def install_peers(venv: Path) -> None:
    """A separate virtualenv with the peers at the versions NOTES.md measured."""
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = str(venv / "bin" / "pip")
    subprocess.run([pip, "install", "-q", *PEER_PACKAGES], check=True)
    # DistillGuard itself, for the LiteLLM guardrail: only what the engine imports, so LiteLLM's pins
    # stay as LiteLLM wants them
    subprocess.run([pip, "install", "-q", *GUARDRAIL_PACKAGES], check=True)
    repo = Path(__file__).resolve().parents[3]
    subprocess.run([pip, "install", "-q", "--no-deps", "-e", str(repo)], check=True)


def _litellm(venv: Path, upstream: str, work: Path) -> Server | None:
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        click.echo(f"  LiteLLM: not installed in {venv} (run with --install-peers); row left out", err=True)
        return None
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: frontier-1\n"
        "    litellm_params:\n"
        "      model: openai/frontier-1\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: sk-upstream\n"
    )
    port = _free_port()
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }
    server = Server(
        "LiteLLM",
        [str(exe), "--config", str(config), "--port", str(port), "--num_workers", "1"],
        f"http://127.0.0.1:{port}",
        env,
        work / "litellm.log",
    )
    server.wait("/health/liveliness", 180)
    return server


def _unmimic(venv: Path, upstream: str, work: Path) -> Server | None:
    exe = venv / "bin" / "unmimic"
    if not exe.exists():
        click.echo(f"  unmimic: not installed in {venv} (run with --install-peers); row left out", err=True)
        return None
    port = _free_port()
    # input guard off, as in NOTES.md; its output guards (leak detector, reasoning strip) stay on
    env = {"UNMIMIC_INPUT_GUARDS": "[]", "UNMIMIC_DATA_DIR": str(work / "unmimic-data")}
    server = Server(
        "unmimic",
        [str(exe), "serve", "--upstream", upstream + "/v1", "--port", str(port)],
        f"http://127.0.0.1:{port}",
        env,
        work / "unmimic.log",
    )
    server.wait("/v1/models", 60)
    return server


def _gateway(
    label: str,
    upstream: str,
    keys: Path,
    log_dir: Path,
    sync: str,
    workers: int,
    redis_url: str,
    server: str = "uvicorn",
) -> Server:
    port = _free_port()
    args = [
        str(Path(sys.executable).parent / "distillguard"),
        "serve",
        "--upstream",
        upstream,
        "--keys",
        str(keys),
    ]
    args += ["--log-dir", str(log_dir), "--log-sync", sync, "--port", str(port), "--signals", "inline"]
    args += ["--workers", str(workers), "--server", server]
    if workers > 1:
        args += ["--state", redis_url, "--state-prefix", f"dgbench-{uuid.uuid4().hex[:8]}:"]
    return Server(label, args, f"http://127.0.0.1:{port}", log=log_dir.parent / f"{log_dir.name}.log")


def _streaming(
    work: Path,
    keys: Path,
    servers: list[Server],
    workers: int,
    redis_url: str,
    token_rate: float,
    requests: int,
) -> list[dict[str, Any]]:
    """Streamed answers at a realistic token rate: time to the first token and to the last, c=1."""
    port = _free_port()
    paced = Server(
        "paced upstream",
        [
            sys.executable,
            "-m",
            "distillguard.gateway.local_upstream",
            "--port",
            str(port),
            "--token-rate",
            str(token_rate),
        ],
        f"http://127.0.0.1:{port}",
        log=work / "paced-upstream.log",
    )
    servers.append(paced)
    paced.wait("/v1/models", 30)
    click.echo(f"measuring streams at {token_rate:.0f} tokens/s", err=True)
    out: list[dict[str, Any]] = []
    direct = _load(paced.url + "/v1/chat/completions", None, 1, requests, 0.0, 2, stream=True)
    out.append({"name": "direct", "c1": direct})
    gateway = _gateway(
        "DistillGuard (streaming)", paced.url, keys, work / "log-stream", "write", workers, redis_url
    )
    servers.append(gateway)
    gateway.wait("/healthz", 90)
    through = _load(gateway.url + "/v1/chat/completions", BENCH_KEY, 1, requests, 0.0, 2, stream=True)
    out.append({"name": f"DistillGuard ({workers} workers, reasoning strip on)", "c1": through})
    gateway.stop()
    for row in out:
        c1 = row["c1"]
        click.echo(
            f"  {row['name']}: first token p50 {c1['first_token_p50_ms']:.2f} ms, last byte p50 {c1['p50_ms']:.2f} ms",
            err=True,
        )
    return out


def stream_table(rows: list[dict[str, Any]], token_rate: float) -> str:
    direct = rows[0]["c1"]
    lines = [
        f"| streamed at {token_rate:.0f} tokens/s, c=1 | first token p50 ms | added | last byte p50 ms | added |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        c1 = row["c1"]
        first = "" if c1 is direct else f"{c1['first_token_p50_ms'] - direct['first_token_p50_ms']:+.2f} ms"
        last = "" if c1 is direct else f"{c1['p50_ms'] - direct['p50_ms']:+.2f} ms"
        lines.append(
            f"| {row['name']} | {c1['first_token_p50_ms']:.2f} | {first} | {c1['p50_ms']:.2f} | {last} |"
        )
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    direct = rows[0]
    lines = [
        "| target | p50 ms (c=1) | added p50 | p99 ms (c=1) | added p99 | req/s (c=32) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        c1, c32 = row["c1"], row["c32"]
        added50 = "" if row is direct else f"{c1['p50_ms'] - direct['c1']['p50_ms']:+.2f} ms"
        added99 = "" if row is direct else f"{c1['p99_ms'] - direct['c1']['p99_ms']:+.2f} ms"
        lines.append(
            f"| {row['name']} | {c1['p50_ms']:.2f} | {added50} | {c1['p99_ms']:.2f} | {added99} | {c32['rps']:.0f} |"
        )
    return "\n".join(lines)


@click.command("gateway")
@click.option(
    "--out", "out_dir", default="out/bench/gateway", show_default=True, type=click.Path(file_okay=False)
)
@click.option("--requests", default=2000, show_default=True, help="Requests per target at concurrency 1.")
@click.option("--seconds", default=5.0, show_default=True, help="Seconds per target at concurrency 32.")
@click.option(
    "--workers", default=2, show_default=True, help="DistillGuard worker processes (state in Redis)."
)
@click.option("--redis", "redis_url", default="redis://127.0.0.1:6379/0", show_default=True)
@click.option("--peers-venv", default="out/venv-peers", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--install-peers",
    "install",
    is_flag=True,
    help="Create --peers-venv with LiteLLM 1.106.2 and unmimic 0.1.0.",
)
@click.option("--no-peers", is_flag=True, help="Measure direct and DistillGuard only.")
@click.option("--fsync-row", is_flag=True, help="Also measure DistillGuard with --log-sync fsync.")
@click.option(
    "--stream-requests", default=30, show_default=True, help="Streamed requests per target (0: skip)."
)
@click.option("--token-rate", default=100.0, show_default=True, help="Tokens/s of the streaming upstream.")
def bench_gateway(
    out_dir: str,
    requests: int,
    seconds: float,
    workers: int,
    redis_url: str,
    peers_venv: str,
    install: bool,
    no_peers: bool,
    fsync_row: bool,
    stream_requests: int,
    token_rate: float,
) -> None:
    """Added latency (c=1) and throughput (c=32): direct, DistillGuard, LiteLLM proxy, unmimic."""
    work = Path(out_dir).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    venv = Path(peers_venv).resolve()
    if install:
        install_peers(venv)
    port = _free_port()
    upstream = Server(
        "upstream",
        [sys.executable, "-m", "distillguard.gateway.local_upstream", "--port", str(port)],
        f"http://127.0.0.1:{port}",
        log=work / "upstream.log",
    )
    rows: list[dict[str, Any]] = []
    stream_rows: list[dict[str, Any]] = []
    servers: list[Server] = [upstream]
    try:
        upstream.wait("/v1/models", 30)
        click.echo("measuring (instant upstream, non-streaming chat completions)", err=True)
        rows.append(_measure("direct", upstream.url + "/v1/chat/completions", None, requests, seconds))
        keys = work / "keys.yaml"
        keys.write_text(
            "keys:\n"
            f"  - sha256: {hashlib.sha256(BENCH_KEY.encode()).hexdigest()}\n"
            "    key_id: key-bench\n    account_id: acct-bench\n    tier: enterprise\n"
        )
        variants = [
            ("write", "uvicorn", f"DistillGuard ({workers} uvicorn workers, all inline signals, Redis)"),
            ("write", "granian", f"DistillGuard ({workers} granian workers, all inline signals, Redis)"),
        ]
        if fsync_row:
            variants.append(("fsync", "uvicorn", f"DistillGuard, fsync'd log ({workers} uvicorn workers)"))
        for sync, server, label in variants:
            log_dir = work / f"log-{sync}-{server}"
            gateway = _gateway(label, upstream.url, keys, log_dir, sync, workers, redis_url, server)
            servers.append(gateway)
            gateway.wait("/healthz", 90)
            rows.append(_measure(label, gateway.url + "/v1/chat/completions", BENCH_KEY, requests, seconds))
            gateway.stop()
        if not no_peers:
            for name, start in (
                ("LiteLLM proxy 1.106.2 (1 worker, default config)", _litellm),
                ("unmimic 0.1.0 (no ml extra, input guard off)", _unmimic),
            ):
                peer = start(venv, upstream.url, work)
                if peer is None:
                    continue
                servers.append(peer)
                key = "sk-anything" if "LiteLLM" in name else None
                rows.append(_measure(name, peer.url + "/v1/chat/completions", key, requests, seconds))
                peer.stop()
        if stream_requests:
            stream_rows = _streaming(work, keys, servers, workers, redis_url, token_rate, stream_requests)
    finally:
        for running in reversed(servers):
            running.stop()
    result = table(rows)
    if stream_rows:
        result += "\n\n" + stream_table(stream_rows, token_rate)
    (work / "results.json").write_text(json.dumps({"instant": rows, "streaming": stream_rows}, indent=2))
    (work / "results.md").write_text(result + "\n")
    click.echo(result)
