"""`distillguard ingest --engine spark`: the embedded ingest's contract (rejects with file and line,
all-or-nothing runs, duplicates refused, owner-only files), and the same store."""

from __future__ import annotations

import gzip
import json
import stat
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from distillguard.engines.spark.ingest import file_groups
from tests.engines.spark.conftest import invoke

FIXTURES = Path(__file__).resolve().parents[2] / "events" / "fixtures"


def _calls(store: Path) -> pa.Table:
    query = (
        f"SELECT * EXCLUDE (day) FROM read_parquet('{store.as_posix()}/day=*/*.parquet', "
        "hive_partitioning = true) ORDER BY event_id"
    )
    con = duckdb.connect()
    try:
        return con.sql(query).to_arrow_table()
    finally:
        con.close()


def _rejects(store: Path) -> list[dict]:
    (path,) = (store / "_rejects").glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_file_groups_keep_joined_files_together() -> None:
    files = [Path("a.jsonl"), Path("b.jsonl")]
    assert file_groups(files, "canonical") == [["a.jsonl"], ["b.jsonl"]]
    assert file_groups(files, "openai-batch") == [["a.jsonl", "b.jsonl"]]


def test_same_store_and_rejects_as_the_embedded_ingest(spark: object, tmp_path: Path) -> None:
    good = FIXTURES / "canonical.jsonl"
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(
        good.read_bytes().replace(b'"e-0', b'"m-0') + b'{"event_id": 1}\n{"event_id": "\xff"}\n'
    )
    blocked = invoke("ingest", mixed, "--out", tmp_path / "spark", "--engine", "spark")
    assert blocked.exit_code == 1 and "rejects: 2" in blocked.output and "NOT written" in blocked.output
    assert not list((tmp_path / "spark").glob("day=*"))
    assert [(r["file"], r["line"]) for r in _rejects(tmp_path / "spark")] == [
        (str(mixed), 4),
        (str(mixed), 5),
    ]
    assert "invalid UTF-8" in _rejects(tmp_path / "spark")[1]["reason"]

    for engine in ("embedded", "spark"):
        done = invoke(
            "ingest", good, mixed, "--out", tmp_path / f"both-{engine}", "--allow-rejects", "--engine", engine
        )
        assert done.exit_code == 0, done.output
        assert "events: 6" in done.output and "rejects: 2" in done.output and "written to" in done.output
    embedded, spark_store = tmp_path / "both-embedded", tmp_path / "both-spark"
    assert _calls(spark_store).equals(_calls(embedded))
    assert _rejects(spark_store) == _rejects(embedded)
    assert sorted(p.name for p in spark_store.glob("day=*")) == sorted(p.name for p in embedded.glob("day=*"))
    manifest = [json.loads(line) for line in (spark_store / "_ingests.jsonl").read_text().splitlines()]
    assert manifest[-1]["events"] == 6 and manifest[-1]["committed"] is True
    # owner-only, as the embedded store
    for path in spark_store.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
    assert not list(spark_store.rglob("_SUCCESS")) and not (spark_store / "_staging").exists()


def test_second_run_of_the_same_calls_is_refused(spark: object, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = invoke("ingest", FIXTURES / "canonical.jsonl", "--out", store, "--engine", "spark")
    assert first.exit_code == 0, first.output
    before = _calls(store)
    again = invoke("ingest", FIXTURES / "canonical.jsonl", "--out", store, "--engine", "spark")
    assert again.exit_code == 2 and "already in the store" in again.output
    assert _calls(store).equals(before)


def test_truncated_gzip_writes_nothing(spark: object, tmp_path: Path) -> None:
    packed = gzip.compress((FIXTURES / "canonical.jsonl").read_bytes() * 50)
    source = tmp_path / "cut.jsonl.gz"
    source.write_bytes(packed[: len(packed) // 2])
    result = invoke("ingest", source, "--out", tmp_path / "s", "--engine", "spark")
    assert result.exit_code == 1
    assert "cannot read past line" in result.output and "nothing was written" in result.output
    assert not list((tmp_path / "s").glob("day=*"))


def test_openai_batch_files_are_joined_in_one_task(spark: object, tmp_path: Path) -> None:
    files = [FIXTURES / n for n in ("openai_batch_input.jsonl", "openai_batch_output.jsonl")]
    missing = invoke(
        "ingest", *files, "--format", "openai-batch", "--out", tmp_path / "s", "--engine", "spark"
    )
    assert missing.exit_code == 2 and "--account" in missing.output
    done = invoke(
        "ingest", *files, "--format", "openai-batch", "--account", "acct-b", "--out", tmp_path / "s",
        "--allow-rejects", "--engine", "spark",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "events: 2" in done.output and "no output line for this custom_id" in done.output


@pytest.mark.parametrize("fmt", ["splunk"])
def test_unknown_format_fails_before_spark_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fmt: str
) -> None:
    from distillguard.engines.spark import session as spark_session

    def no_start(*args: object, **kwargs: object) -> None:
        raise AssertionError("Spark was started for a format that does not exist")

    monkeypatch.setattr(spark_session, "session", no_start)
    result = invoke(
        "ingest", FIXTURES / "canonical.jsonl", "--format", fmt, "--out", tmp_path / "s", "--engine", "spark"
    )
    assert result.exit_code == 2 and "unknown log format 'splunk'" in result.output
