"""The bulk forms of column expressions that replaced a per-value Python definition give what that
definition gives on every row (hashes of text, first values per account and key, masked keys)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.events.call_view import CallView
from distillguard.features.catalog import HH_PARAMS, feature_names
from distillguard.features.columnar import _first_values, _kept, build_windows
from distillguard.features.columns import (
    CallRow,
    Columns,
    col,
    first_chars,
    hash_text_array,
    hashed_text,
    utf8_hashes,
    whole,
)
from distillguard.features.reducers import hash_text
from distillguard.features.segments import KeyRuns, key_order, rank_in_run
from tests.features.feature_streams import T0, random_calls
from tests.features.test_columnar import calls_table

# text Arrow can hold (no lone surrogates), with repeats, empties and nulls
TEXTS = st.lists(
    st.one_of(
        st.none(),
        st.sampled_from(["", "a", "é", "日本", "a b"]),
        st.text(st.characters(blacklist_categories=["Cs"]), max_size=40),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(values=TEXTS, start=st.integers(0, 5), large=st.booleans())
def test_hash_text_array_is_hash_text_of_each_row(values, start, large) -> None:
    array = pa.array(values, pa.large_string() if large else pa.string())[start:]  # an offset slice too
    expected = [None if v is None else hash_text(v) for v in values[start:]]
    got = hash_text_array(array)
    assert got.type == pa.uint64()
    assert got.to_pylist() == expected
    # the expression evaluates to the same, over one chunk or several
    table = pa.table({"end_user": pa.chunked_array([array[:3], array[3:]], array.type)})
    expr = hashed_text(col("end_user"))
    assert expr.column(table).to_pylist() == expected
    # the streaming path of the same declaration
    row = expr.compile_row()
    assert [
        row(CallRow(CallView(event_id="e", ts=T0, account_id="a", end_user=v))) for v in values[start:]
    ] == expected


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.text(st.characters(blacklist_categories=["Cs"]), max_size=20), max_size=30),
    start=st.integers(0, 4),
)
def test_utf8_hashes_read_a_sliced_array_from_its_offset(values, start) -> None:
    for kind in (pa.string(), pa.large_string()):
        array = pa.array(values, kind)[start:]
        assert utf8_hashes(array).tolist() == [hash_text(v) for v in values[start:]]


def test_whole_keeps_a_single_chunk_as_it_is_and_combines_several() -> None:
    one = pa.chunked_array([pa.array(["x", "y"])])
    assert whole(one).equals(pa.array(["x", "y"]))
    assert whole(one).buffers()[2].address == one.chunk(0).buffers()[2].address  # not copied
    assert whole(pa.chunked_array([pa.array(["x"]), pa.array(["y"])])).to_pylist() == ["x", "y"]
    assert whole(pa.chunked_array([], pa.string())).to_pylist() == []


@settings(max_examples=200, deadline=None)
@given(values=TEXTS, mask=st.lists(st.booleans(), min_size=60, max_size=60))
def test_kept_masks_text_through_its_codes(values, mask) -> None:
    array = pa.array(values, pa.string())
    keep = pa.array(mask[: len(values)])
    got = _kept(keep, array)
    assert got.type == pa.dictionary(pa.int32(), pa.string())
    assert got.to_pylist() == [v if k else None for v, k in zip(values, mask, strict=False)]
    numbers = pa.array([len(v) if v is not None else None for v in values], pa.int64())
    assert _kept(keep, numbers).to_pylist() == [
        v if k else None for v, k in zip(numbers.to_pylist(), mask, strict=False)
    ]


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 3), st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"])), st.text(max_size=8)
        ),
        max_size=50,
    )
)
def test_first_values_is_the_value_on_each_accounts_first_call_with_a_key(rows) -> None:
    accounts = np.array([r[0] for r in rows], dtype=np.int64)
    keys = pa.array([r[1] for r in rows], pa.string())
    batch = pa.table({"text": pa.array([r[2] for r in rows], pa.string())})
    value = first_chars(col("text"), 3)
    got = _first_values(batch, accounts, pc.dictionary_encode(keys), value)
    seen, expected = set(), []
    for account, key, text in rows:
        first = key is not None and (account, key) not in seen
        seen.add((account, key))
        expected.append(text[:3] if first else None)
    assert got.to_pylist() == expected
    assert pa.types.is_dictionary(got.type)
    assert value.column(Columns(batch)).to_pylist() == [r[2][:3] for r in rows]


KEYS = st.one_of(
    st.lists(st.integers(-5, 5), min_size=1, max_size=80).map(lambda v: np.array(v, dtype=np.int64)),
    st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=80).map(lambda v: np.array(v, dtype=np.uint64)),
    st.lists(st.integers(2**64 - 4, 2**64 - 1), min_size=1, max_size=80).map(
        lambda v: np.array(v, dtype=np.uint64)
    ),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=80).map(
        lambda v: np.array(v, dtype=np.int64)
    ),
)


@settings(max_examples=300, deadline=None)
@given(keys=KEYS, data=st.data())
def test_key_runs_sort_once_what_a_lexicographic_sort_gives(keys, data) -> None:
    n = len(keys)
    seg = np.sort(np.array(data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), dtype=np.int64))
    reference = np.lexsort((np.arange(n), keys, seg))
    assert key_order(seg, keys).tolist() == reference.tolist()
    runs = KeyRuns(seg, keys)
    rank, seen = [], {}
    for s, k in zip(seg.tolist(), keys.tolist(), strict=True):
        rank.append(seen.get((s, k), 0))
        seen[(s, k)] = rank[-1] + 1
    assert runs.rank().tolist() == rank == rank_in_run(seg, keys).tolist()
    assert runs.first().tolist() == [r == 0 for r in rank]
    pairs = sorted(seen)
    assert list(zip(runs.group.tolist(), runs.key.tolist(), strict=True)) == pairs
    assert runs.count.tolist() == [seen[p] for p in pairs]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), every=st.integers(1, 7))
def test_build_shares_its_work_and_equals_windows_and_features_at(seed, every) -> None:
    # one sweep (sorts and Misra-Gries replays shared by states and prefixes) gives what the
    # final windows and the features at the queried rows give when asked for apart
    calls = random_calls(seed, calls=200)
    past_capacity = [  # more parameter profiles and templates than the summaries keep
        (
            CallView(
                event_id=f"p{i}",
                ts=T0 + timedelta(seconds=7 * i),
                account_id="wide",
                temperature=float(i % (HH_PARAMS + 5)) / 10,
            ),
            {},
            f"t{i % 40}",
            -1,
        )
        for i in range(150)
    ]
    table = calls_table(calls + past_capacity)
    columns, _ = build_windows(table)
    rows = np.arange(0, len(columns), every)
    names = feature_names()
    expected_windows, expected = columns.windows(), columns.features_at(rows, names)
    fresh, _ = build_windows(table)
    windows, matrix = fresh.build(rows, names)
    assert np.array_equal(matrix, expected)
    assert sorted(windows) == sorted(expected_windows)
    for account, window in windows.items():
        assert window.features() == expected_windows[account].features()
        for summary in ("params", "templates", "end_users", "ips", "tls", "system_prompts"):
            assert getattr(window, summary).counts == getattr(expected_windows[account], summary).counts
        assert window.template_frames == expected_windows[account].template_frames
