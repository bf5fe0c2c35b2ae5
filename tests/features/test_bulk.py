"""The batch path builds the same windows as observing each call in time order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from feature_streams import embeddings_for, random_calls, table_of

from distillguard.features import AccountWindow, build_daily_windows, build_windows, merge_windows
from distillguard.features.account_window import SIGNAL_NAMES


def _inputs(seed: int):
    calls = random_calls(seed)
    views = [c[0] for c in calls]
    table = table_of(views)
    signals = {
        name: np.array([np.nan if c[1][name] is None else c[1][name] for c in calls]) for name in SIGNAL_NAMES
    }
    fingerprints = [c[2] for c in calls]
    vectors = embeddings_for(len(calls), seed)
    rows = np.array([c[3] for c in calls if c[3] >= 0])
    return calls, table, signals, fingerprints, vectors, rows


def _incremental(calls, vectors, key=lambda view: view.account_id) -> dict:
    windows: dict = {}
    for view, scores, fingerprint, row in sorted(calls, key=lambda c: (c[0].account_id, c[0].ts)):
        window = windows.setdefault(key(view), AccountWindow())
        window.observe(view, scores, fingerprint, vectors[row] if row >= 0 else None)
    return windows


def _assert_same(bulk: dict, incremental: dict) -> None:
    assert sorted(bulk) == sorted(incremental)
    for key, window in incremental.items():
        expected, got = window.features(), bulk[key].features()
        assert list(got) == list(expected)
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (key, name)
        assert bulk[key].templates.counts == window.templates.counts
        assert bulk[key].tls.counts == window.tls.counts
        assert bulk[key].system_previews == {
            k: v for k, v in window.system_previews.items() if k in window.system_prompts.counts
        }
        assert bulk[key].buckets.smallest() == window.buckets.smallest()


@pytest.mark.parametrize("seed", [11, 12])
def test_bulk_equals_incremental(seed: int) -> None:
    calls, table, signals, fingerprints, vectors, rows = _inputs(seed)
    bulk = build_windows(table, signals, fingerprints, vectors[rows], rows)
    _assert_same(bulk, _incremental(calls, vectors))


def test_bulk_in_time_chunks_merged_equals_incremental() -> None:
    calls, table, signals, fingerprints, vectors, rows = _inputs(13)
    order = np.argsort([c[0].ts for c in calls], kind="stable")
    table = table.take(pa.array(order))
    signals = {name: values[order] for name, values in signals.items()}
    fingerprints = [fingerprints[i] for i in order]
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    merged: dict = {}
    for lo in range(0, len(order), 70):
        hi = min(lo + 70, len(order))
        chunk_rows = np.array([position[r] - lo for r in rows if lo <= position[r] < hi], dtype=np.int64)
        chunk_vectors = vectors[[r for r in rows if lo <= position[r] < hi]]
        part = build_windows(
            table.slice(lo, hi - lo),
            {k: v[lo:hi] for k, v in signals.items()},
            fingerprints[lo:hi],
            chunk_vectors,
            chunk_rows,
        )
        merge_windows(merged, part)
    _assert_same(merged, _incremental(calls, vectors))


def test_daily_windows_key_by_day_and_merge_back_to_the_whole() -> None:
    calls, table, signals, fingerprints, vectors, rows = _inputs(14)
    daily = build_daily_windows(table, signals, fingerprints, vectors[rows], rows)
    incremental = _incremental(calls, vectors, key=lambda v: (v.account_id, v.ts.strftime("%Y-%m-%d")))
    _assert_same(daily, incremental)
    assert len({day for _, day in daily}) > 1
    whole: dict = {}
    for (account, _day), window in sorted(daily.items()):
        merge_windows(whole, {account: window})
    for account, window in _incremental(calls, vectors).items():
        assert whole[account].features()["n_calls"] == window.features()["n_calls"]
        assert whole[account].features()["gap_cv"] == pytest.approx(window.features()["gap_cv"])


def test_bulk_rejects_unknown_signals_and_missing_columns() -> None:
    _, table, signals, fingerprints, _, _ = _inputs(15)
    with pytest.raises(KeyError, match="template"):
        build_windows(table, {**signals, "template": np.zeros(len(table))}, fingerprints)
    with pytest.raises(ValueError, match="prompt"):
        build_windows(table.drop_columns(["prompt"]), signals, fingerprints)
    assert build_windows(table.slice(0, 0), {}, []) == {}
