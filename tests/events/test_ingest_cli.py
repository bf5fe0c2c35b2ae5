"""`distillguard ingest` end to end: the installed command in a subprocess, as a user runs it."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
DISTILLGUARD = Path(sys.executable).parent / "distillguard"


def _ingest(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DISTILLGUARD), "ingest", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    if not DISTILLGUARD.exists():
        pytest.fail(f"the distillguard command is not installed beside {sys.executable}")


def test_ingest_writes_store_and_refuses_a_second_run(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = _ingest(FIXTURES / "canonical.jsonl", "--format", "canonical", "--out", store)
    assert first.returncode == 0, first.stderr
    assert "3 line(s) read" in first.stdout and "events: 3" in first.stdout and "rejects: 0" in first.stdout
    assert "days: 2 (2026-02-12 .. 2026-02-13)" in first.stdout
    assert sorted(p.name for p in store.glob("day=*")) == ["day=2026-02-12", "day=2026-02-13"]
    again = _ingest(FIXTURES / "canonical.jsonl", "--out", store)
    assert again.returncode == 2 and "already in the store" in again.stderr


def test_rejected_lines_fail_the_run_unless_allowed(tmp_path: Path) -> None:
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(
        (FIXTURES / "canonical.jsonl").read_bytes() + b'{"event_id": 1}\n{"event_id": "\xff"}\n'
    )
    store = tmp_path / "store"
    blocked = _ingest(source, "--out", store)
    assert blocked.returncode == 1
    assert "rejects: 2" in blocked.stdout and "NOT written" in blocked.stdout
    assert not list(store.glob("day=*"))
    (rejects_file,) = (store / "_rejects").glob("*.jsonl")
    rejects = [json.loads(line) for line in rejects_file.read_text().splitlines()]
    assert [(r["file"], r["line"]) for r in rejects] == [(str(source), 4), (str(source), 5)]
    assert "invalid UTF-8" in rejects[1]["reason"]
    allowed = _ingest(source, "--out", store, "--allow-rejects")
    assert allowed.returncode == 0 and "events: 3" in allowed.stdout and "written to" in allowed.stdout


def test_openai_batch_with_account(tmp_path: Path) -> None:
    files = [FIXTURES / n for n in ("openai_batch_input.jsonl", "openai_batch_output.jsonl")]
    missing = _ingest(*files, "--format", "openai-batch", "--out", tmp_path / "s")
    assert missing.returncode == 2 and "--account" in missing.stderr
    done = _ingest(
        *files, "--format", "openai-batch", "--account", "acct-b", "--out", tmp_path / "s", "--allow-rejects"
    )
    assert (
        done.returncode == 0
        and "events: 2" in done.stdout
        and "no output line for this custom_id" in done.stdout
    )


def test_unknown_format_lists_the_known_ones(tmp_path: Path) -> None:
    result = _ingest(FIXTURES / "canonical.jsonl", "--format", "splunk", "--out", tmp_path / "s")
    assert result.returncode == 2
    assert "unknown log format 'splunk'" in result.stderr and "otel-genai" in result.stderr


def test_truncated_gzip_writes_nothing(tmp_path: Path) -> None:
    packed = gzip.compress((FIXTURES / "canonical.jsonl").read_bytes() * 50)
    source = tmp_path / "cut.jsonl.gz"
    source.write_bytes(packed[: len(packed) // 2])
    result = _ingest(source, "--out", tmp_path / "s")
    assert (
        result.returncode == 1
        and "cannot read past line" in result.stderr
        and "nothing was written" in result.stderr
    )
    assert not list((tmp_path / "s").glob("day=*"))


def test_a_line_over_max_line_bytes_is_a_counted_reject(tmp_path: Path) -> None:
    lines = (FIXTURES / "canonical.jsonl").read_bytes().splitlines(keepends=True)
    source = tmp_path / "long.jsonl.gz"
    source.write_bytes(gzip.compress(lines[0] + b'{"pad": "' + b"q" * 5000 + b'"}\n' + lines[2]))
    limit = str(max(len(lines[0]), len(lines[2])))
    blocked = _ingest(source, "--out", tmp_path / "s", "--max-line-bytes", limit)
    assert blocked.returncode == 1, blocked.stderr
    assert "rejects: 1" in blocked.stdout and "line too long: N bytes, over the limit of N" in blocked.stdout
    (rejects_file,) = (tmp_path / "s" / "_rejects").glob("*.jsonl")
    (reject,) = [json.loads(line) for line in rejects_file.read_text().splitlines()]
    assert (reject["file"], reject["line"]) == (str(source), 2)
    assert reject["reason"].startswith(f"line too long: 5011 bytes, over the limit of {limit}")
    allowed = _ingest(source, "--out", tmp_path / "s", "--max-line-bytes", limit, "--allow-rejects")
    assert allowed.returncode == 0 and "events: 2" in allowed.stdout
    nonsense = _ingest(source, "--out", tmp_path / "s", "--max-line-bytes", "0")
    assert nonsense.returncode == 2 and "--max-line-bytes" in nonsense.stderr
