"""`CallStage._count_days` (calls per account and day, in the order the days were first seen)
gives what counting call by call gives."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.scan.replay import CallStage

DAY_MS = 86_400_000
START = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp() * 1000)


def _stage() -> CallStage:
    stage = CallStage.__new__(CallStage)  # only the day counters: no signals, no models
    stage._daily, stage._day_names = {}, {}
    return stage


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5 * DAY_MS)), max_size=40), max_size=5
    )
)
def test_days_counted_in_batches_equal_counting_each_call(batches) -> None:
    stage = _stage()
    expected: dict[int, Counter[str]] = {}
    offset = 0
    for batch in batches:
        calls = sorted((offset + t, account) for account, t in batch)  # a batch is in time order
        offset += 5 * DAY_MS
        ids = np.array([a for _, a in calls], dtype=np.int64)
        ms = pa.chunked_array([pa.array([START + t for t, _ in calls], pa.int64())])
        stage._count_days(ms, ids)
        # by account then day within the batch: the order the scan has always inserted them in
        for t, account in sorted(calls, key=lambda c: (c[1], c[0])):
            day = (datetime(1970, 1, 1) + timedelta(milliseconds=START + t)).date().isoformat()
            expected.setdefault(account, Counter())[day] += 1
    assert stage._daily == expected
    for account, days in expected.items():
        assert list(stage._daily[account]) == list(days)  # the same order of days
