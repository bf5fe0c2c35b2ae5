"""Every reducer: splitting a stream anywhere and merging gives what observing it whole gives,
and the grouped (bulk) form gives what observing each group gives."""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from distillguard.features.reducers import (
    Dispersion,
    Distinct,
    Gaps,
    HeavyHitters,
    Histogram,
    MeanVar,
    MinMax,
    Total,
    hash_int,
    hash_ints,
    hash_text,
    unhash_int,
    unhash_ints,
)


def _stream(seed: int, n: int = 400) -> list[float]:
    rng = random.Random(seed)
    return [rng.choice([rng.expovariate(0.1), rng.uniform(0, 3), 10.0]) for _ in range(n)]


def _times(seed: int, n: int = 400) -> list[float]:
    values = _stream(seed, n)
    return [float(t) for t in np.cumsum(values)]


def _read(kind: str, state: object) -> tuple:
    """What each reducer reports, rounded where floating-point order changes the last bits."""
    if isinstance(state, Total):
        return (state.count, round(state.total, 6))
    if isinstance(state, MeanVar):
        return (state.n, round(state.mean, 6), round(state.variance, 6))
    if isinstance(state, MinMax):
        return (state.lo, state.hi)
    if isinstance(state, Distinct):
        return (state.estimate(), state.exact, tuple(state.smallest()))
    if isinstance(state, HeavyHitters):
        return (state.n, tuple(state.top(100)))
    if isinstance(state, Histogram):
        return tuple(state.counts.tolist())
    if isinstance(state, Gaps):
        return (
            state.first,
            state.last,
            state.gaps.n,
            round(state.gaps.mean, 6),
            round(state.gaps.variance, 4),
            tuple(sorted(state.bins.items())),
            round(state.regular_share(), 9),
        )
    if isinstance(state, Dispersion):
        return (state.n, round(state.mean_sq_distance(), 9), tuple(state.topics.counts.tolist()))
    raise AssertionError(kind)


# kind -> (factory, item stream for a seed)
CASES = {
    "total": (Total, _stream),
    "meanvar": (MeanVar, _stream),
    "minmax": (MinMax, _stream),
    "distinct_exact": (lambda: Distinct(k=512), lambda seed: [hash_int(int(x)) for x in _stream(seed)]),
    "distinct_sketch": (lambda: Distinct(k=16), lambda seed: [hash_int(int(x * 7)) for x in _stream(seed)]),
    "heavy_exact": (lambda: HeavyHitters(k=64), lambda seed: [str(int(x) % 20) for x in _stream(seed)]),
    "histogram": (lambda: Histogram(24), lambda seed: [int(x) % 24 for x in _stream(seed)]),
    "gaps": (Gaps, _times),
    "dispersion": (
        Dispersion,
        lambda seed: list(np.random.default_rng(seed).standard_normal((120, 8)).astype(np.float32)),
    ),
}


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_split_anywhere_then_merge_equals_whole(kind: str, seed: int) -> None:
    factory, stream = CASES[kind]
    items = stream(seed)
    whole = factory()
    for item in items:
        whole.observe(item)
    rng = random.Random(seed)
    for cut in [0, 1, len(items) // 2, len(items) - 1, len(items), *rng.sample(range(len(items)), 5)]:
        left, right = factory(), factory()
        for item in items[:cut]:
            left.observe(item)
        for item in items[cut:]:
            right.observe(item)
        left.merge(right)
        assert _read(kind, left) == _read(kind, whole), f"cut at {cut}"


@pytest.mark.parametrize(
    "kind", ["total", "meanvar", "minmax", "distinct_exact", "distinct_sketch", "histogram", "gaps"]
)
def test_grouped_equals_observe_per_group(kind: str) -> None:
    factory, stream = CASES[kind]
    groups = [stream(seed) for seed in (5, 6, 7)]
    seg = np.concatenate([np.full(len(items), g) for g, items in enumerate(groups)])
    flat = [item for items in groups for item in items]
    if kind.startswith("distinct"):
        k = factory().k
        states = Distinct.grouped(seg, np.array(flat, dtype=np.uint64), len(groups), k)
    elif kind == "histogram":
        states = Histogram.grouped(seg, np.array(flat), len(groups), 24)
    else:
        states = factory().grouped(seg, np.array(flat), len(groups))  # type: ignore[attr-defined]
    for items, state in zip(groups, states, strict=True):
        one = factory()
        for item in items:
            one.observe(item)
        assert _read(kind, state) == _read(kind, one)


def test_grouped_heavy_hitters_and_dispersion_equal_observe() -> None:
    labels = [f"t{i}" for i in range(30)]
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 30, 600)
    seg = np.repeat([0, 1, 2], 200)
    states = HeavyHitters.grouped(seg, codes, labels, 3, k=64)
    vectors = rng.standard_normal((600, 16)).astype(np.float32)
    spread = Dispersion.grouped(seg, vectors, 3)
    for g in range(3):
        one, disp = HeavyHitters(k=64), Dispersion()
        for code, vector in zip(codes[seg == g], vectors[seg == g], strict=True):
            one.observe(labels[code])
            disp.observe(vector)
        assert _read("heavy", states[g]) == _read("heavy", one)
        assert _read("dispersion", spread[g]) == _read("dispersion", disp)


def test_heavy_hitters_past_capacity_stay_within_the_misra_gries_bound() -> None:
    rng = random.Random(3)
    keys = [rng.choice("aaaaabbbc") if rng.random() < 0.6 else str(rng.randrange(1000)) for _ in range(3000)]
    truth = {key: keys.count(key) for key in set(keys)}
    incremental, halves = HeavyHitters(k=8), [HeavyHitters(k=8), HeavyHitters(k=8)]
    for i, key in enumerate(keys):
        incremental.observe(key)
        halves[i % 2].observe(key)  # interleaved split: MG merge is order-free
    halves[0].merge(halves[1])
    labels = sorted(truth)
    codes = np.array([labels.index(k) for k in keys])
    bulk = HeavyHitters.grouped(np.zeros(len(keys), dtype=np.int64), codes, labels, 1, k=8)[0]
    bound = len(keys) / 9
    for state in (incremental, halves[0], bulk):
        for key, true_count in truth.items():
            kept = state.counts.get(key, 0)
            assert true_count - bound <= kept <= true_count, (key, kept, true_count)
        assert state.top(1)[0][0] == "a"


@pytest.mark.parametrize(
    ("gaps", "regular", "cv_zero"), [([10.0] * 20, 1.0, True), ([1.0, 100.0] * 10, 0.5, False)]
)
def test_gap_regularity(gaps: list[float], regular: float, cv_zero: bool) -> None:
    state = Gaps()
    for t in np.concatenate([[0.0], np.cumsum(gaps)]):
        state.observe(float(t))
    assert state.regular_share() == pytest.approx(regular, abs=0.06)
    assert (state.cv() < 1e-9) is cv_zero


def test_gaps_merge_of_overlapping_stretches_is_counted_not_seamed() -> None:
    a, b = Gaps(), Gaps()
    for t in (0.0, 10.0, 20.0):
        a.observe(t)
    for t in (5.0, 15.0):
        b.observe(t)
    a.merge(b)
    assert (a.overlaps, a.gaps.n, a.first, a.last) == (1, 3, 0.0, 20.0)
    a.observe(3.0)
    assert a.out_of_order == 1


def test_distinct_estimate_and_jaccard() -> None:
    a, b = Distinct(k=128), Distinct(k=128)
    for i in range(20000):
        a.observe(hash_int(i))
        if i >= 10000:
            b.observe(hash_int(i))
    for i in range(20000, 30000):
        b.observe(hash_int(i))
    assert a.estimate() == pytest.approx(20000, rel=0.3)
    assert Distinct.jaccard(a, b) == pytest.approx(1 / 3, abs=0.12)
    small_a, small_b = Distinct(k=64), Distinct(k=64)
    for i in range(10):
        small_a.observe(hash_int(i))
        small_b.observe(hash_int(i + 5))
    assert Distinct.jaccard(small_a, small_b) == 5 / 15


def _bottom_k_jaccard(a: Distinct, b: Distinct) -> float:
    """Distinct.jaccard's definition, spelled with sets and a sort (the method uses NumPy)."""
    sa, sb = set(a.smallest()), set(b.smallest())
    if a.exact and b.exact:
        union = sa | sb
        return len(sa & sb) / len(union) if union else 0.0
    cut = min(a._cut_value(), b._cut_value())
    union_k = sorted(h for h in sa | sb if h <= cut)[: min(a.k, b.k)]
    if not union_k:
        return 0.0
    return sum(1 for h in union_k if h in sa and h in sb) / len(union_k)


@given(
    st.integers(2, 12),
    st.integers(2, 12),
    st.lists(st.integers(0, 60), max_size=80),
    st.lists(st.integers(0, 60), max_size=80),
    st.booleans(),
)
def test_distinct_jaccard_is_the_bottom_k_estimate(
    k_a: int, k_b: int, items_a: list[int], items_b: list[int], near_the_top: bool
) -> None:
    # hashes from a small domain share items; near the top of the 64-bit range they test the cut
    shift = 2**64 - 61 if near_the_top else 0
    a, b = Distinct(k=k_a), Distinct(k=k_b)
    for item in items_a:
        a.observe(shift + item if near_the_top else hash_int(item))
    for item in items_b:
        b.observe(shift + item if near_the_top else hash_int(item))
    assert Distinct.jaccard(a, b) == _bottom_k_jaccard(a, b)
    assert Distinct.jaccard(b, a) == _bottom_k_jaccard(b, a)


def test_hash_helpers_agree_between_scalar_and_vector_forms() -> None:
    values = np.array([0, 1, 2**40, -5], dtype=np.int64)
    assert hash_ints(values).tolist() == [hash_int(int(v)) for v in values]
    assert hash_text("x") != hash_text("y")


def test_copy_of_state_is_independent() -> None:
    d = Distinct(k=4)
    d.observe(1)
    e = copy.deepcopy(d)
    e.observe(2)
    assert (d.estimate(), e.estimate()) == (1.0, 2.0)
    assert not math.isnan(Dispersion().mean_sq_distance())


@given(st.lists(st.integers(min_value=0, max_value=(1 << 64) - 1), max_size=600))
def test_unhash_ints_is_unhash_int_of_each_hash(hashes: list[int]) -> None:
    assert unhash_ints(hashes).tolist() == [unhash_int(h) for h in hashes]


@given(st.lists(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1), max_size=200))
def test_unhash_ints_inverts_hash_ints(values: list[int]) -> None:
    assert unhash_ints(hash_ints(np.array(values, dtype=np.int64))).tolist() == values
