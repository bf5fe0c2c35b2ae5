"""The Parquet call store: day partitions, streaming reads, refusal of duplicate ingests, and
runs with rejects that add nothing unless allowed."""

from __future__ import annotations

import doctest
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from distillguard.events import store as store_module
from distillguard.events.call_view import STORE_SCHEMA, views_of_batch
from distillguard.events.model import CallEvent, Client
from distillguard.events.readers import Reject, iter_events
from distillguard.events.store import CallStore, StoreError

FIXTURES = Path(__file__).parent / "fixtures"
START = datetime(2026, 2, 10, 22, 0, tzinfo=UTC)


def _event(i: int, *, hours: float = 0.0, account: str = "acct-1") -> CallEvent:
    return CallEvent(
        event_id=f"e-{i}",
        ts=START + timedelta(hours=hours),
        account_id=account,
        client=Client(ip="192.0.2.1"),
        endpoint="/v1/chat/completions",
        request={"model": "m", "messages": [{"role": "user", "content": f"question {i}"}]},
        response={"choices": [{"message": {"role": "assistant", "content": f"answer {i}"}}]},
        status=200,
        latency_ms=10.0,
    )


def _events(n: int) -> list[CallEvent]:
    # shuffled in time across three UTC days, so the writer sees days out of order
    return [_event(i, hours=((i * 7) % n) * 50 / n, account=f"acct-{i % 3}") for i in range(n)]


def test_partitions_by_utc_day_and_reads_back(tmp_path: Path) -> None:
    events = _events(300)
    stats = CallStore.ingest(tmp_path / "s", events, sources=["mem"], batch_rows=16)
    store = CallStore.open(tmp_path / "s")
    expected_days = sorted({e.ts.strftime("%Y-%m-%d") for e in events})
    assert store.days() == expected_days == list(stats.days) == ["2026-02-10", "2026-02-11", "2026-02-12"]
    assert store.count() == 300 == sum(stats.days.values())
    for day in store.days():
        names = {p.name for p in (tmp_path / "s" / f"day={day}").iterdir()}
        assert names and all(n.endswith(".parquet") for n in names)
    con = store.connect()
    per_day = dict(con.execute("SELECT day, count(*) FROM calls GROUP BY day").fetchall())
    assert per_day == stats.days
    wrong_day = con.execute(
        "SELECT count(*) FROM calls WHERE strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%d') <> day"
    )
    assert wrong_day.fetchone() == (0,)


def test_iter_batches_bounded_size_columns_and_order(tmp_path: Path) -> None:
    CallStore.ingest(tmp_path / "s", _events(300), sources=["mem"], batch_rows=16)
    store = CallStore.open(tmp_path / "s")
    batches = list(store.iter_batches(columns=["event_id", "prompt"], batch_size=50))
    assert all(len(b) <= 50 for b in batches) and sum(len(b) for b in batches) == 300
    assert batches[0].schema.names == ["event_id", "prompt"]
    ordered = pa.Table.from_batches(
        list(store.iter_batches(columns=["account_id", "ts"], order_by=["account_id", "ts"]))
    )
    keys = list(zip(ordered["account_id"].to_pylist(), ordered["ts"].to_pylist(), strict=True))
    assert keys == sorted(keys)
    filtered = list(store.iter_batches(columns=["event_id"], where="account_id = 'acct-1'"))
    assert sum(len(b) for b in filtered) == 100


def test_store_rows_are_the_call_view_plus_raw_bodies(tmp_path: Path) -> None:
    CallStore.ingest(tmp_path / "s", [_event(1)], sources=["mem"])
    batch = next(CallStore.open(tmp_path / "s").iter_batches())
    assert STORE_SCHEMA.names == batch.schema.names[: len(STORE_SCHEMA.names)]
    (view,) = views_of_batch(batch)
    assert (view.event_id, view.prompt, view.response_text, view.ts) == (
        "e-1",
        "question 1",
        "answer 1",
        START,
    )
    assert '"question 1"' in batch.column("request_json")[0].as_py()


def test_reingest_is_refused_and_leaves_the_store_unchanged(tmp_path: Path) -> None:
    CallStore.ingest(tmp_path / "s", _events(30), sources=["a"])
    files_before = sorted(p.name for p in (tmp_path / "s").rglob("*.parquet"))
    with pytest.raises(StoreError, match="already in the store"):
        CallStore.ingest(tmp_path / "s", [_event(5), _event(1000)], sources=["b"])
    assert sorted(p.name for p in (tmp_path / "s").rglob("*.parquet")) == files_before
    assert CallStore.open(tmp_path / "s").count() == 30
    assert not (tmp_path / "s" / "_staging").exists()
    stats = CallStore.ingest(tmp_path / "s", [_event(1000)], sources=["c"])  # new ids are welcome
    assert stats.committed and CallStore.open(tmp_path / "s").count() == 31
    assert [run["files"] for run in CallStore.open(tmp_path / "s").ingests()] == [["a"], ["c"]]


def test_ids_repeated_within_one_input_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="more than once"):
        CallStore.ingest(tmp_path / "s", [_event(1), _event(2), _event(1)], sources=["a"])
    assert CallStore.open(tmp_path / "s").count() == 0


def test_rejects_block_the_run_unless_allowed(tmp_path: Path) -> None:
    items: list[CallEvent | Reject] = [
        _event(1),
        Reject(file="f.jsonl", line=2, reason="invalid JSON: x"),
        _event(3),
    ]
    blocked = CallStore.ingest(tmp_path / "s", items, sources=["f.jsonl"])
    assert (blocked.committed, blocked.events, blocked.rejects) == (False, 2, 1)
    assert CallStore.open(tmp_path / "s").count() == 0
    assert blocked.rejects_file is not None
    assert (
        Path(blocked.rejects_file).read_text() == '{"file":"f.jsonl","line":2,"reason":"invalid JSON: x"}\n'
    )
    allowed = CallStore.ingest(tmp_path / "s", items, sources=["f.jsonl"], allow_rejects=True)
    assert allowed.committed and CallStore.open(tmp_path / "s").count() == 2
    assert allowed.rejects_by_reason == {"invalid JSON: x": 1}


def test_empty_store_answers_with_no_rows(tmp_path: Path) -> None:
    CallStore.ingest(tmp_path / "s", [], sources=[])
    store = CallStore.open(tmp_path / "s")
    assert (store.count(), store.days(), list(store.iter_batches())) == (0, [], [])
    assert store.connect().execute("SELECT count(*) FROM calls").fetchone() == (0,)


def test_open_missing_store_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no call store at"):
        CallStore.open(tmp_path / "missing")


def test_fixture_files_round_trip_through_the_store(tmp_path: Path) -> None:
    stats = CallStore.ingest(
        tmp_path / "s", iter_events([FIXTURES / "canonical.jsonl"]), sources=["canonical"]
    )
    assert stats.days == {"2026-02-12": 2, "2026-02-13": 1}  # 23:59:59.999Z stays on its day
    rows = (
        CallStore.open(tmp_path / "s")
        .connect()
        .execute("SELECT event_id, status FROM calls ORDER BY event_id")
    )
    assert rows.fetchall() == [("e-000001", 200), ("e-000002", 500), ("e-000003", 200)]


def test_summary_reasons_group_by_kind() -> None:
    assert doctest.testmod(store_module, raise_on_error=True).attempted >= 1


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_everything_the_store_writes_is_owner_only_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    items: list[CallEvent | Reject] = [
        _event(1),
        Reject(file="f.jsonl", line=2, reason="x"),
        _event(3, hours=30),
    ]
    root = tmp_path / "parent" / "store"
    previous = os.umask(umask)
    try:
        CallStore.ingest(root, items, sources=["f.jsonl"], allow_rejects=True)
        CallStore.ingest(root, [_event(4, hours=60)], sources=["g.jsonl"])  # into an existing store
    finally:
        os.umask(previous)
    written = [root, *root.rglob("*")]
    assert {p.name for p in written} >= {"store", "_rejects", "_ingests.jsonl", "day=2026-02-10"}
    assert any(p.suffix == ".parquet" for p in written) and any(p.parent.name == "_rejects" for p in written)
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in written}
    expected = {name: (0o700 if (tmp_path / name).is_dir() else 0o600) for name in modes}
    assert modes == expected


def test_rebatch_cuts_and_joins_into_exact_batches() -> None:
    from distillguard.events.store import rebatch

    parts = [
        pa.record_batch({"x": pa.array(range(start, start + n), pa.int64())})
        for start, n in ((0, 7), (7, 0), (7, 1), (8, 9))
    ]
    for size in (1, 2, 3, 8, 17, 100):
        out = list(rebatch(parts, size))
        assert [len(b) for b in out[:-1]] == [size] * (len(out) - 1) and 0 < len(out[-1]) <= size
        assert pa.Table.from_batches(out).column("x").to_pylist() == list(range(17))
    assert list(rebatch([], 4)) == []


def test_iter_batches_on_one_connection_gives_the_same_batches(tmp_path: Path) -> None:
    CallStore.ingest(tmp_path / "s", _events(300), sources=["mem"], batch_rows=16)
    store = CallStore.open(tmp_path / "s")
    con = store.connect(threads=1)
    try:
        for size in (3, 50):
            for day in store.days():
                query = {"columns": ["event_id", "ts"], "order_by": "ts, event_id", "where": f"day = '{day}'"}
                shared = [b.to_pylist() for b in store.iter_batches(**query, batch_size=size, connection=con)]
                alone = [b.to_pylist() for b in store.iter_batches(**query, batch_size=size)]
                assert shared == alone and all(len(b) == size for b in shared[:-1])
    finally:
        con.close()


def test_in_time_order_lets_a_sorted_day_skip_the_sort(tmp_path: Path, monkeypatch) -> None:
    import itertools
    import uuid

    # files sort in ingest order (run ids within one second would otherwise sort by a random suffix)
    count = itertools.count(1)
    monkeypatch.setattr(store_module.uuid, "uuid4", lambda: uuid.UUID(int=next(count) << 96))
    shuffled = CallStore(tmp_path / "shuffled")
    CallStore.ingest(shuffled.path, _events(300), sources=["mem"], batch_rows=16)
    assert not any(shuffled.in_time_order(day) for day in shuffled.days())
    # in time order, equal times tie-broken by event id, over two ingests (two files a day)
    events = sorted(_events(300), key=lambda e: (e.ts, e.event_id))
    ordered = CallStore(tmp_path / "ordered")
    CallStore.ingest(ordered.path, events[:170], sources=["a"], batch_rows=16)
    CallStore.ingest(ordered.path, events[170:], sources=["b"], batch_rows=16)
    assert len(ordered.files()) > len(ordered.days())
    assert all(ordered.in_time_order(day) for day in ordered.days())
    con = ordered.connect(threads=1)
    try:
        for day in ordered.days():
            query = {
                "columns": ["event_id", "ts"],
                "batch_size": 7,
                "where": f"day = '{day}'",
                "connection": con,
            }
            as_stored = [b.to_pylist() for b in ordered.iter_batches(**query)]
            assert as_stored == [
                b.to_pylist() for b in ordered.iter_batches(**query, order_by="ts, event_id")
            ]
    finally:
        con.close()
    # the second ingest before the first in file order: no longer in order
    later = CallStore(tmp_path / "later")
    CallStore.ingest(later.path, events[150:], sources=["b"], batch_rows=16)
    CallStore.ingest(later.path, events[:150], sources=["a"], batch_rows=16)
    assert not all(later.in_time_order(day) for day in later.days())
