"""The bulk path (Arrow columns, every account at once) gives what observing each call gives: the
same final windows, and the same features after every call (the scan's checkpoints)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.events.call_view import CallView
from distillguard.features import AccountWindow, build_windows, measure_columns
from distillguard.features.catalog import HH_PARAMS, SIGNAL_NAMES, feature_names
from distillguard.features.columnar import AccountColumns
from tests.features.feature_streams import T0, embeddings_for, random_calls, table_of

NAMES = feature_names()


def calls_table(calls, vectors=None) -> pa.Table:
    """The call-store columns plus the derived ones, as the scan hands them to the bulk path."""
    table = table_of([c[0] for c in calls])
    table = table.append_column("fingerprint", pa.array([c[2] for c in calls], pa.string()))
    for name in SIGNAL_NAMES:
        table = table.append_column(f"signal.{name}", pa.array([c[1].get(name) for c in calls], pa.float64()))
    if vectors is not None:
        embedded = [vectors[c[3]].tolist() if c[3] >= 0 else None for c in calls]
        table = table.append_column("embedding", pa.array(embedded, pa.list_(pa.float32())))
    return table


def streamed(calls, vectors=None, splits=()):
    """Each account observed call by call in time order; a new window is started at every split
    point (an index into the account's calls) and merged into the previous one in order."""
    by_account: dict[str, list] = {}
    for call in sorted(calls, key=lambda c: (c[0].account_id, c[0].ts)):
        by_account.setdefault(call[0].account_id, []).append(call)
    windows, history = {}, {}
    for account, sequence in by_account.items():
        cuts = sorted({0, *(s % (len(sequence) + 1) for s in splits), len(sequence)})
        whole = AccountWindow()
        after = []
        for lo, hi in itertools.pairwise(cuts):
            part = AccountWindow()
            for view, scores, fingerprint, row in sequence[lo:hi]:
                vector = vectors[row] if vectors is not None and row >= 0 else None
                part.observe(view, scores, fingerprint, vector)
                if not splits:
                    after.append(part.features())
            whole.merge(part)
        windows[account], history[account] = whole, after
    return windows, history


def assert_close(expected: dict, got: dict, where: str, rel: float = 1e-9) -> None:
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=rel, abs=rel), (where, name)


def assert_same_windows(bulk: dict, stream: dict) -> None:
    assert sorted(bulk) == sorted(stream)
    for account, window in stream.items():
        assert_close(window.features(), bulk[account].features(), account)
        for summary in ("templates", "tls", "ips", "system_prompts", "end_users", "params"):
            assert getattr(bulk[account], summary).counts == getattr(window, summary).counts, summary
        assert bulk[account].buckets.smallest() == window.buckets.smallest()
        held = window.system_prompts.counts
        assert {k: v for k, v in bulk[account].system_previews.items() if k in held} == {
            k: v for k, v in window.system_previews.items() if k in held
        }
        kept = window.templates.counts
        assert {k: v for k, v in bulk[account].template_frames.items() if k in kept} == {
            k: v for k, v in window.template_frames.items() if k in kept
        }
        centroid, expected = bulk[account].embeddings.centroid(), window.embeddings.centroid()
        assert (centroid is None) == (expected is None)
        if expected is not None:
            np.testing.assert_allclose(centroid, expected, rtol=1e-9)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_bulk_windows_and_every_prefix_equal_observing_call_by_call(seed: int) -> None:
    calls = random_calls(seed, calls=400)
    vectors = embeddings_for(len(calls), seed)
    columns, bulk = build_windows(calls_table(calls, vectors))
    stream, history = streamed(calls, vectors)
    assert_same_windows(bulk, stream)
    every = columns.features_at(np.arange(len(columns)), NAMES)
    for row in range(len(columns)):
        account = columns.accounts[columns.seg[row]]
        expected = history[account][columns.position[row] - 1]
        # checkpoint vectors are float32, as the scan keeps them
        assert_close(
            expected, dict(zip(NAMES, every[row].tolist(), strict=True)), f"{account}@{row}", rel=1e-6
        )


def test_checkpoint_rows_follow_the_ladder() -> None:
    calls = random_calls(3, accounts=2, calls=200)
    columns, _ = build_windows(calls_table(calls))
    positions = columns.position[columns.checkpoint_rows()].tolist()
    assert positions[:12] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13]


def test_time_chunks_built_apart_and_kept_in_order_give_the_same_windows() -> None:
    calls = sorted(random_calls(21, calls=300), key=lambda c: c[0].ts)
    table = calls_table(calls)
    chunks = [measure_columns(table.slice(lo, 70)) for lo in range(0, len(calls), 70)]
    windows = AccountColumns(chunks).windows()
    stream, _ = streamed(calls)
    assert_same_windows(windows, stream)


def test_heavy_hitters_past_capacity_replay_misra_gries_exactly() -> None:
    # more parameter profiles than the summary keeps: the bulk path must follow the same sequence
    calls = []
    for i in range(120):
        view = CallView(
            event_id=f"e{i}",
            ts=T0 + timedelta(seconds=13 * i),
            account_id="a",
            temperature=float(i % (HH_PARAMS + 5)) / 10,
            max_tokens=256,
        )
        calls.append((view, {}, f"t{i % 40}", -1))
    columns, bulk = build_windows(calls_table(calls))
    stream, history = streamed(calls)
    assert bulk["a"].params.counts == stream["a"].params.counts
    assert bulk["a"].templates.counts == stream["a"].templates.counts
    every = columns.features_at(np.arange(len(calls)), NAMES)
    top = NAMES.index("param_profile_top_share")
    assert every[:, top].tolist() == pytest.approx([h["param_profile_top_share"] for h in history["a"]])


def test_bad_input_is_refused_naming_what_is_wrong() -> None:
    table = calls_table(random_calls(1, calls=20))
    with pytest.raises(KeyError, match="fingerprint"):
        build_windows(table.drop_columns(["fingerprint"]))
    broken = table.set_column(
        table.schema.get_field_index("account_id"), "account_id", pa.array([None] * 20, pa.string())
    )
    with pytest.raises(ValueError, match="account_id"):
        build_windows(broken)
    empty_columns, empty = build_windows(table.slice(0, 0))
    assert empty == {} and len(empty_columns) == 0


# -- generated traffic ---------------------------------------------------------------------------

# small alphabets keep every heavy-hitter summary within its capacity: there Misra-Gries merges are
# exact, so the split points cannot matter (past capacity the merge is a different, still bounded,
# summary: test_reducers checks its bound)
_text = st.sampled_from(["", "What is 2+2?", "Rank these answers", "Solve 7", "日本語のテキスト"])
_score = st.one_of(st.none(), st.floats(0.0, 1.0))
# (temperature, top_p, n, max_tokens): fewer profiles than the parameter summary keeps
_profile = st.sampled_from(
    [
        (None, None, None, None),
        (0.0, None, 1, 1),
        (0.7, 0.9, None, 512),
        (1.3, None, 4, None),
        (0.7, None, None, None),
    ]
)


@st.composite
def traffic(draw: st.DrawFn) -> tuple[list, np.ndarray, list[int]]:
    vectors = embeddings_for(8, seed=draw(st.integers(0, 3)), dim=8)
    accounts = draw(st.integers(1, 3))
    clocks = {f"acct-{a}": T0 + timedelta(milliseconds=draw(st.integers(0, 10**7))) for a in range(accounts)}
    calls = []
    for i in range(draw(st.integers(1, 60))):
        account = f"acct-{draw(st.integers(0, accounts - 1))}"
        # ms gaps, including bursts in one bucket, equal times and days apart
        clocks[account] += timedelta(
            milliseconds=draw(st.sampled_from([0, 1, 999, 30_000, 86_400_000]) | st.integers(0, 10**8))
        )
        temperature, top_p, n, max_tokens = draw(_profile)
        view = CallView(
            event_id=f"e{i}",
            ts=clocks[account],
            account_id=account,
            end_user=draw(st.sampled_from([None, "", "u1", "u2"])),
            client_ip=draw(st.sampled_from(["", "10.0.0.1", "203.0.113.9"])),
            client_asn=draw(st.sampled_from([None, 64500, 0])),
            client_user_agent=draw(st.sampled_from([None, "sdk/1", ""])),
            client_tls_fingerprint=draw(st.sampled_from([None, "", "t13d"])),
            client_router=draw(st.sampled_from([None, "", "openrouter"])),
            status=draw(st.sampled_from([200, 429, 500, 399, 400])),
            system_prompt=draw(_text),
            prompt=draw(_text),
            n_user_turns=draw(st.integers(0, 3)),
            temperature=temperature,
            top_p=top_p,
            n=n,
            max_tokens=max_tokens,
            logprobs=draw(st.booleans()),
            top_logprobs=draw(st.sampled_from([None, 0, 20])),
            logit_bias_size=draw(st.sampled_from([0, 1, 300])),
            stream=draw(st.booleans()),
            response_text=draw(_text),
            reasoning_text=draw(st.sampled_from(["", "thinking"])),
        )
        scores = {name: draw(_score) for name in draw(st.sets(st.sampled_from(SIGNAL_NAMES)))}
        fingerprint = draw(st.sampled_from([None, "", "tpl-a", "tpl-b"]))
        calls.append((view, scores, fingerprint, draw(st.sampled_from([-1, -1, *range(8)]))))
    splits = draw(st.lists(st.integers(0, 60), max_size=4))
    return calls, vectors, splits


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traffic())
def test_streaming_with_merges_anywhere_equals_the_bulk_path(generated) -> None:
    calls, vectors, splits = generated
    columns, bulk = build_windows(calls_table(calls, vectors))
    merged, _ = streamed(calls, vectors, splits=splits)
    assert_same_windows(bulk, merged)
    _, history = streamed(calls, vectors)
    every = columns.features_at(np.arange(len(columns)), NAMES)
    for row in range(len(columns)):
        account = columns.accounts[columns.seg[row]]
        expected = history[account][columns.position[row] - 1]
        assert_close(
            expected, dict(zip(NAMES, every[row].tolist(), strict=True)), f"{account}@{row}", rel=1e-6
        )
