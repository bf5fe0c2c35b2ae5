"""`distillguard bench scan --engine spark`: the Spark engine next to the embedded engine, same store,
same run.

Rows: the embedded engine (`--workers 2`), Spark in `local[2]`, and a real standalone cluster started
on this machine from the PySpark wheel's `spark-class` (one master; one, then two workers of one core
each). Each scan is a child process; its wall time, CPU time and peak RSS are sampled over every
process taking part (the scan, its JVM and Python workers, and the cluster's daemons and executors),
so the rows compare like with like. Every Spark scan's `accounts_out.jsonl` is compared with the
embedded engine's: a row whose verdicts differ is marked.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

CLI = [sys.executable, "-c", "from distillguard.cli import main; main()"]
START_TIMEOUT_S = 120.0


@dataclass
class EngineRun:
    name: str
    cores: int
    calls: int
    wall_s: float
    cpu_s: float
    peak_bytes: int
    same_verdicts: bool | None  # None for the reference itself

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.wall_s if self.wall_s else 0.0


class ProcessSampler:
    """Peak summed RSS and total CPU time of some process trees, sampled every `every_s`: a process
    is counted with the CPU time it had when last seen (so one that ended between samples loses at
    most `every_s` of it)."""

    def __init__(self, roots: Sequence[int], every_s: float = 0.2) -> None:
        self.roots = list(roots)
        self.every_s = every_s
        self.peak = 0
        self._cpu: dict[tuple[int, float], float] = {}  # (pid, create time) -> CPU seconds
        self._base: dict[tuple[int, float], float] = {}

    def _members(self) -> Iterator[object]:
        import psutil

        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                yield root
                yield from root.children(recursive=True)
            except psutil.NoSuchProcess:
                continue

    def sample(self, baseline: bool = False) -> None:
        import psutil

        total = 0
        for member in self._members():
            try:
                with member.oneshot():  # type: ignore[attr-defined]
                    key = (member.pid, member.create_time())  # type: ignore[attr-defined]
                    times = member.cpu_times()  # type: ignore[attr-defined]
                    total += member.memory_info().rss  # type: ignore[attr-defined]
            except psutil.NoSuchProcess:
                continue
            used = times.user + times.system
            if baseline:
                self._base[key] = used
            self._cpu[key] = used
        if not baseline:
            self.peak = max(self.peak, total)

    @property
    def cpu_s(self) -> float:
        return sum(used - self._base.get(key, 0.0) for key, used in self._cpu.items())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise click.ClickException(f"the Spark master did not listen on port {port} within {timeout:.0f} s")


def _spark_class() -> tuple[str, dict[str, str]]:
    import pyspark

    home = Path(pyspark.__file__).parent
    env = dict(
        os.environ, SPARK_HOME=str(home), PYSPARK_PYTHON=os.environ.get("PYSPARK_PYTHON", sys.executable)
    )
    return str(home / "bin" / "spark-class"), env


@contextmanager
def standalone_cluster(workers: int, work: Path, memory: str = "3g") -> Iterator[tuple[str, list[int]]]:
    """A Spark standalone cluster on this machine: one master and `workers` workers of one core.
    Yields the master URL and the daemons' process ids; stops them all on exit."""
    spark_class, env = _spark_class()
    port = _free_port()
    logs = work / "cluster-logs"
    logs.mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen[bytes]] = []

    def launch(args: list[str], log: str) -> None:
        with (logs / log).open("wb") as sink:
            started.append(
                subprocess.Popen([spark_class, *args], env=env, stdout=sink, stderr=subprocess.STDOUT)
            )

    try:
        launch(
            ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(_free_port())],
            "master.log",
        )  # fmt: skip
        _wait_port(port, START_TIMEOUT_S)
        url = f"spark://127.0.0.1:{port}"
        for i in range(workers):
            folder = Path(tempfile.mkdtemp(prefix=f"worker{i}-", dir=work))
            launch(
                ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
                 "--memory", memory, "--webui-port", str(_free_port()), "--work-dir", str(folder), url],
                f"worker-{i}.log",
            )  # fmt: skip
        _wait_workers(logs, workers)
        yield url, [p.pid for p in started]
    finally:
        for process in reversed(started):
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_workers(logs: Path, workers: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        registered = sum(
            "Successfully registered with master" in (logs / f"worker-{i}.log").read_text(errors="replace")
            for i in range(workers)
            if (logs / f"worker-{i}.log").exists()
        )
        if registered == workers:
            return
        time.sleep(0.5)
    raise click.ClickException(
        f"Spark workers did not register within {START_TIMEOUT_S:.0f} s (logs in {logs})"
    )


def run_scan(
    name: str, cores: int, store: Path, out: Path, args: list[str], daemons: Sequence[int] = ()
) -> tuple[EngineRun, Path]:
    if out.exists():
        shutil.rmtree(out)
    cmd = [*CLI, "scan", str(store), "--out", str(out), "--quiet", *args]
    click.echo(f"$ {' '.join(cmd)}", err=True)
    sampler = ProcessSampler(list(daemons))
    sampler.sample(baseline=True)
    started = time.perf_counter()
    process = subprocess.Popen(cmd)
    sampler.roots.append(process.pid)
    while process.poll() is None:
        sampler.sample()
        time.sleep(sampler.every_s)
    wall = time.perf_counter() - started
    sampler.sample()
    if process.returncode != 0:
        raise click.ClickException(f"{name} scan failed (exit {process.returncode}): {' '.join(cmd)}")
    calls = int(json.loads((out / "scan_summary.json").read_text(encoding="utf-8"))["calls"])
    return EngineRun(name, cores, calls, wall, sampler.cpu_s, sampler.peak, None), out / "accounts_out.jsonl"


def same_verdicts(a: Path, b: Path, tolerance: float = 1e-6) -> bool:
    """Same accounts, verdicts and clusters, risk equal to `tolerance`."""

    def rows(path: Path) -> dict[str, dict[str, object]]:
        return {r["account_id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}

    left, right = rows(a), rows(b)
    if left.keys() != right.keys():
        return False
    for account, x in left.items():
        y = right[account]
        if x.get("verdict") != y.get("verdict") or x.get("cluster_id") != y.get("cluster_id"):
            return False
        if abs(float(x.get("risk", 0.0)) - float(y.get("risk", 0.0))) > tolerance:  # type: ignore[arg-type]
            return False
    return True


def bench_spark(
    store: Path, work: Path, extra: list[str], cluster_workers: Sequence[int] = (1, 2)
) -> list[EngineRun]:
    """The embedded engine, Spark local[2], and a standalone cluster of each size in `cluster_workers`."""
    runs: list[EngineRun] = []
    reference, reference_out = run_scan(
        "embedded (--workers 2)", 2, store, work / "scan-embedded", ["--workers", "2", *extra]
    )
    runs.append(reference)
    local, local_out = run_scan(
        "Spark local[2]",
        2,
        store,
        work / "scan-spark-local",
        ["--engine", "spark", "--spark-master", "local[2]", *extra],
    )
    local.same_verdicts = same_verdicts(reference_out, local_out)
    runs.append(local)
    for workers in cluster_workers:
        with standalone_cluster(workers, work) as (url, daemons):
            run, out = run_scan(
                f"Spark standalone, {workers} worker(s) x 1 core",
                workers,
                store,
                work / f"scan-spark-cluster-{workers}",
                [
                    "--engine",
                    "spark",
                    "--spark-master",
                    url,
                    "--spark-partitions",
                    str(max(2, workers)),
                    *extra,
                ],
                daemons,
            )
        run.same_verdicts = same_verdicts(reference_out, out)
        runs.append(run)
    return runs


def spark_table(runs: Sequence[EngineRun]) -> str:
    reference = runs[0]
    lines = [
        "| engine | cores | calls | wall s | CPU s | calls/s | calls/s per core | time vs embedded | peak RSS | verdicts |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        same = "reference" if r.same_verdicts is None else ("equal" if r.same_verdicts else "DIFFER")
        lines.append(
            f"| {r.name} | {r.cores} | {r.calls:,} | {r.wall_s:.1f} | {r.cpu_s:.1f} | {r.calls_per_second:,.0f} | "
            f"{r.calls_per_second / r.cores:,.0f} | {r.wall_s / reference.wall_s:.2f}× | "
            f"{r.peak_bytes / 1024**3:.2f} GiB | {same} |"
        )
    return "\n".join(lines)
