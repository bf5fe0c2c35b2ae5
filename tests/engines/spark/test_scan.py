"""`distillguard scan --engine spark`: the embedded engine's outputs, from Spark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard.engines.spark.bench import same_verdicts
from distillguard.events.call_view import STORE_SCHEMA
from distillguard.events.model import Account, to_json_line
from distillguard.events.store import CallStore
from tests.engines.spark.conftest import invoke
from tests.scan.test_scan_cli import CHAT, QUESTIONS, REVEAL, _call

CLI = [sys.executable, "-m", "distillguard"]


def _run(*args: object, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _rows(path: Path) -> dict[str, dict]:
    return {r["account_id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


@pytest.mark.slow
def test_spark_engine_equals_the_embedded_engine_on_the_small_preset(tmp_path: Path) -> None:
    """Same verdicts, clusters and evidence on the `small` preset (46k calls, 816 accounts, actors
    of several accounts): the engines share the per-call and per-account code, so they must agree."""
    _run("sim", "--preset", "small", "--seed", "7", "--out", tmp_path / "sim")
    _run("ingest", tmp_path / "sim" / "events.jsonl", "--out", tmp_path / "store")
    common = ["--accounts", tmp_path / "sim" / "accounts.jsonl", "--quiet"]
    _run("scan", tmp_path / "store", "--out", tmp_path / "embedded", "--workers", "2", *common)
    spark = _run("scan", tmp_path / "store", "--out", tmp_path / "spark", "--engine", "spark", *common)
    assert "spark engine" in spark.stdout
    embedded, on_spark = tmp_path / "embedded", tmp_path / "spark"
    left, right = _rows(embedded / "accounts_out.jsonl"), _rows(on_spark / "accounts_out.jsonl")
    assert len(left) > 500 and left.keys() == right.keys()
    assert sum(r["verdict"] == "distiller" for r in left.values()) > 20  # something to agree on
    for account, expected in left.items():
        got = right[account]
        assert got["verdict"] == expected["verdict"], account
        assert got["cluster_id"] == expected["cluster_id"], account
        assert got["risk"] == pytest.approx(expected["risk"], abs=1e-6), account
        assert got.get("first_flagged_at") == expected.get("first_flagged_at"), account
        assert got.get("calls_to_flag") == expected.get("calls_to_flag"), account
    assert same_verdicts(embedded / "accounts_out.jsonl", on_spark / "accounts_out.jsonl")
    clusters = [(embedded / "clusters.jsonl").read_text(), (on_spark / "clusters.jsonl").read_text()]
    assert clusters[0] == clusters[1] and clusters[0].count("\n") >= 3
    assert (embedded / "evidence.jsonl").read_text() == (on_spark / "evidence.jsonl").read_text()
    summary = json.loads((on_spark / "scan_summary.json").read_text())
    assert summary["engine"] == "spark" and summary["spark_master"] == "local[2]"
    assert summary["calls"] == json.loads((embedded / "scan_summary.json").read_text())["calls"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two reasoning harvesters sharing a card and a chat user, ingested by the embedded engine,
    plus one Parquet file written by another tool: two of its calls name no account, one no id."""
    root = tmp_path_factory.mktemp("spark-store")
    events = []
    for account, ip in (("acct-reveal-1", "198.51.100.7"), ("acct-reveal-2", "198.51.100.9")):
        events += [_call(i, account, REVEAL[i % 4].format(q=QUESTIONS[i % 10]), ip) for i in range(30)]
    events += [_call(i, "acct-chat", CHAT[i % 5] + f" (take {i})", "203.0.113.5") for i in range(30)]
    stats = CallStore.ingest(root / "store", events, sources=["test"])
    assert stats.committed and stats.events == 90
    accounts = [
        Account(account_id="acct-reveal-1", payment_fingerprint="pf-shared-77"),
        Account(account_id="acct-reveal-2", payment_fingerprint="pf-shared-77"),
        Account(account_id="acct-chat", payment_fingerprint="pf-own-1"),
    ]
    (root / "accounts.jsonl").write_bytes(b"".join(to_json_line(a) + b"\n" for a in accounts))
    first = pq.read_table(next((root / "store").glob("day=*/*.parquet")))
    foreign = first.slice(0, 3).to_pylist()
    for row, (event_id, account) in zip(
        foreign, [("x-1", None), ("x-2", ""), (None, "acct-chat")], strict=True
    ):
        row["event_id"], row["account_id"] = event_id, account
    day = next((root / "store").glob("day=*"))
    pq.write_table(pa.Table.from_pylist(foreign, schema=STORE_SCHEMA), day / "part-other-tool.parquet")
    return root


def test_malformed_calls_are_counted_rejects_and_the_scan_completes(
    spark: object, store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = invoke(
        "scan", store / "store", "--engine", "spark", "--accounts", store / "accounts.jsonl",
        "--out", out, "--quiet", "--parquet", "--spark-partitions", "5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "scanned 90 calls of 3 accounts" in result.output
    assert "3 call(s) could not be scanned" in result.output
    rejects = [json.loads(line) for line in (out / "scan_rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == 3
    assert all(r["file"].endswith("part-other-tool.parquet") for r in rejects)
    assert sorted(r["reason"].split(":")[0] for r in rejects) == [
        "no account_id",
        "no account_id",
        "no event_id",
    ]
    summary = json.loads((out / "scan_summary.json").read_text())
    assert (
        summary["rejected_calls"] == 3 and summary["engine"] == "spark" and summary["spark_partitions"] == 5
    )
    verdicts = _rows(out / "accounts_out.jsonl")
    assert set(verdicts) == {"acct-reveal-1", "acct-reveal-2", "acct-chat"}
    assert (
        verdicts["acct-reveal-1"]["verdict"] == "distiller" and verdicts["acct-chat"]["verdict"] == "benign"
    )
    assert verdicts["acct-reveal-1"]["cluster_id"] == verdicts["acct-reveal-2"]["cluster_id"] is not None
    # the Parquet copy holds the same rows
    table = pq.read_table(out / "accounts_out.parquet").to_pylist()
    assert {r["account_id"]: (r["verdict"], r["risk"]) for r in table} == {
        a: (r["verdict"], r["risk"]) for a, r in verdicts.items()
    }


def test_missing_source_is_an_error_before_spark_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from distillguard.engines.spark import session as spark_session

    def no_start(*args: object, **kwargs: object) -> None:
        raise AssertionError("Spark was started for a source that does not exist")

    monkeypatch.setattr(spark_session, "session", no_start)
    result = invoke("scan", tmp_path / "nowhere", "--engine", "spark", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "nowhere: no such file or directory" in result.output
    (tmp_path / "empty").mkdir()
    result = invoke("scan", tmp_path / "empty", "--engine", "spark", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "no day=*/ Parquet files" in result.output
    (tmp_path / "events.jsonl").write_text("{}\n")
    result = invoke("scan", tmp_path / "events.jsonl", "--engine", "spark", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "not a call store folder" in result.output


def test_embedded_engine_still_refuses_missing_paths(tmp_path: Path) -> None:
    result = invoke("scan", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_store_without_a_column_names_it(spark: object, store: Path, tmp_path: Path) -> None:
    day = tmp_path / "odd" / "day=2026-02-12"
    day.mkdir(parents=True)
    table = pq.read_table(next((store / "store").glob("day=*/part-*.parquet"))).drop_columns(["prompt"])
    pq.write_table(table, day / "part-0.parquet")
    result = invoke("scan", tmp_path / "odd", "--engine", "spark", "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 2 and "column 'prompt' is missing" in result.output


def test_store_with_a_wrong_type_names_it(spark: object, store: Path, tmp_path: Path) -> None:
    day = tmp_path / "odd" / "day=2026-02-12"
    day.mkdir(parents=True)
    table = pq.read_table(next((store / "store").glob("day=*/part-*.parquet")))
    index = table.schema.get_field_index("ts")
    table = table.set_column(index, "ts", pa.array([str(v) for v in table.column("ts").to_pylist()]))
    pq.write_table(table, day / "part-0.parquet")
    result = invoke("scan", tmp_path / "odd", "--engine", "spark", "--out", tmp_path / "out", "--quiet")
    assert (
        result.exit_code == 2
        and "column 'ts' has type string, expected timestamp[ms, tz=UTC]" in result.output
    )


@pytest.mark.slow
def test_spark_submit_runs_the_package_with_the_submitters_master(store: Path, tmp_path: Path) -> None:
    """The documented cluster path: `spark-submit .../distillguard/__main__.py scan ...`; the master
    given to spark-submit (not DistillGuard's local[2] default) runs the scan."""
    import os

    import distillguard.__main__ as entry

    submit = Path(sys.executable).parent / "spark-submit"
    assert submit.exists(), f"spark-submit is not installed beside {sys.executable} (pyspark)"
    out = tmp_path / "out"
    done = subprocess.run(
        [str(submit), "--master", "local[1]", entry.__file__, "scan", str(store / "store"),
         "--engine", "spark", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, PYSPARK_PYTHON=sys.executable),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "scanned 90 calls of 3 accounts" in done.stdout
    summary = json.loads((out / "scan_summary.json").read_text())
    assert summary["spark_master"] == "local[1]" and summary["rejected_calls"] == 3


def test_remote_source_without_a_connector_is_a_clear_error(spark: object, tmp_path: Path) -> None:
    result = invoke("scan", "s3a://bucket/calls", "--engine", "spark", "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 2
    assert (
        "s3a://bucket/calls: cannot open it through Hadoop" in result.output and "hadoop-aws" in result.output
    )


def test_a_file_that_is_not_parquet_fails_the_scan_naming_it(
    spark: object, store: Path, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store / "store", copy)
    bad = next(copy.glob("day=*")) / "part-truncated.parquet"
    bad.write_bytes(b"PAR1 this is not a Parquet file")
    result = invoke("scan", copy, "--engine", "spark", "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 1
    assert "the scan failed on Spark" in result.output and "part-truncated.parquet" in result.output
    assert "\tat " not in result.output  # Spark's reason, not the JVM stack
    assert not (tmp_path / "out" / "accounts_out.jsonl").exists()


def test_replays_that_would_not_fit_the_driver_are_refused_before_fetching() -> None:
    from distillguard.engines.spark.scan import DriverTooSmall, check_driver_memory

    check_driver_memory(payload_bytes=1 << 30, accounts=50_000, available=8 << 30)
    with pytest.raises(DriverTooSmall, match=r"the replays of 200,000 accounts need ~8.0 GiB on the driver"):
        check_driver_memory(payload_bytes=4 << 30, accounts=200_000, available=8 << 30)
