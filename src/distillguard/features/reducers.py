"""Mergeable reducers (Zeek sumstats / river style): observe one item, merge two states, read a value.

Every reducer has faces that must agree:

- ``observe`` (the gateway, one call at a time) and ``merge`` (time chunks, linked accounts);
- ``read()``: its statistics by name (what a feature is finished from);
- ``states(groups, values)``: every group's final state from NumPy columns at once (the scan);
- ``prefix(groups, values)``: the same statistics as ``read()``, for many prefixes of every group at
  once (the scan's checkpoints), without building a state per prefix.

An instance with no items doubles as the specification of its kind (its ``k``, its bins):
``fresh()`` gives a new empty state of the same specification. Items are grouped by a ``seg``
array of group ids (0..G-1), rows in time order within a group (`distillguard.features.segments`).
Memory is bounded per state: sketches switch from exact to approximate past a fixed size.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Self

import numpy as np

from distillguard.compiled import compiled
from distillguard.features.segments import (
    FilteredGroups,
    KeyRuns,
    fold,
    fold_max,
    fold_sum,
    piece_reduce,
)

_MASK64 = (1 << 64) - 1


def hash_text(text: str) -> int:
    """A stable 64-bit hash of a string (the same on every machine and run, unlike ``hash``).

    >>> hash_text("abc") == hash_text("abc"), hash_text("abc") == hash_text("abd")
    (True, False)
    """
    return int.from_bytes(text_digest(text.encode("utf-8", "surrogatepass")), "little")


def text_digest(data: bytes | memoryview) -> bytes:
    """The 8 bytes `hash_text` reads (little-endian) from a text's UTF-8 bytes."""
    return hashlib.blake2b(data, digest_size=8).digest()


def hash_int(value: int) -> int:
    """splitmix64 finaliser: spreads small integers (time buckets) over 64 bits; see `hash_ints`."""
    x = value & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


_INV1 = pow(0xBF58476D1CE4E5B9, -1, 1 << 64)
_INV2 = pow(0x94D049BB133111EB, -1, 1 << 64)


def _unshift(x: int, shift: int) -> int:
    result = x
    for _ in range(64 // shift):
        result = x ^ (result >> shift)
    return result


def unhash_int(item_hash: int) -> int:
    """The integer `hash_int` was given (splitmix64's finaliser is a bijection), so sketches of
    time buckets can still say which buckets they hold.

    >>> unhash_int(hash_int(5_912_345))
    5912345
    """
    x = _unshift(item_hash & _MASK64, 31)
    x = _unshift((x * _INV2) & _MASK64, 27)
    x = _unshift((x * _INV1) & _MASK64, 30)
    return x - (1 << 64) if x >= 1 << 63 else x


def hash_ints(values: np.ndarray) -> np.ndarray:
    """`hash_int` over an int64 array, vectorised (uint64 arithmetic wraps like the masks above).

    >>> int(hash_ints(np.array([7]))[0]) == hash_int(7)
    True
    """
    x = values.astype(np.int64).view(np.uint64).copy()
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _unshift_array(x: np.ndarray, shift: int) -> np.ndarray:
    result = x.copy()
    step = np.uint64(shift)
    for _ in range(64 // shift):
        result = x ^ (result >> step)
    return result


def unhash_ints(hashes: Sequence[int] | np.ndarray) -> np.ndarray:
    """`unhash_int` of each hash, vectorised (int64; uint64 arithmetic wraps like the masks).

    >>> unhash_ints([hash_int(5_912_345), hash_int(-3)]).tolist()
    [5912345, -3]
    """
    x = np.asarray(hashes, dtype=np.uint64).reshape(-1)
    with np.errstate(over="ignore"):
        x = _unshift_array(x, 31)
        x = _unshift_array(x * np.uint64(_INV2), 27)
        x = _unshift_array(x * np.uint64(_INV1), 30)
    return x.view(np.int64)


def hash_texts(values: Sequence[str | None]) -> np.ndarray:
    """`hash_text` of each distinct string, mapped back; None becomes 0 (callers mask it)."""
    out = np.zeros(len(values), dtype=np.uint64)
    cache: dict[str, int] = {}
    for i, value in enumerate(values):
        if value is not None:
            h = cache.get(value)
            if h is None:
                h = cache[value] = hash_text(value)
            out[i] = h
    return out


def _segments(seg: np.ndarray, n_groups: int) -> np.ndarray:
    """Start offsets of each group in an array sorted by group id (length n_groups + 1)."""
    return np.searchsorted(seg, np.arange(n_groups + 1))


def _sorted_unique_pairs(
    seg: np.ndarray, keys: np.ndarray, runs: KeyRuns | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (group, key) pairs sorted by group then key, with how often each occurred."""
    if len(seg) == 0:
        return seg[:0], keys[:0], np.zeros(0, dtype=np.int64)
    runs = runs if runs is not None else KeyRuns(seg, keys)
    return runs.group, runs.key, runs.count


def _meanvar_pieces(groups: FilteredGroups, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, mean, M2) of each query's piece, two-pass within the piece."""
    lo, hi = groups.piece_lo, groups.piece_hi
    n = (hi - lo).astype(np.float64)
    sums = piece_reduce(np.add, x, lo, hi, 0.0)
    mean = np.divide(sums, n, out=np.zeros(len(n)), where=n > 0)
    piece = piece_of_row(lo, hi, len(x))
    inside = piece >= 0
    dev = np.zeros(len(x))
    dev[inside] = (x[inside] - mean[piece[inside]]) ** 2
    return n, mean, piece_reduce(np.add, dev, lo, hi, 0.0)


def _chan(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`MeanVar.merge` for many pairs at once."""
    na, ma, m2a = a
    nb, mb, m2b = b
    n = na + nb
    delta = mb - ma
    safe = np.where(n > 0, n, 1.0)
    mean = np.where(nb > 0, ma + delta * nb / safe, ma)
    m2 = np.where(nb > 0, m2a + m2b + delta * delta * na * nb / safe, m2a)
    return n, mean, m2


def _meanvar_prefix(groups: FilteredGroups, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return fold(groups, _meanvar_pieces(groups, np.asarray(x, dtype=np.float64)), _chan)  # type: ignore[return-value]


def _meanvar_stats(n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> dict[str, np.ndarray]:
    variance = np.divide(m2, n, out=np.zeros(len(n)), where=n > 0)
    return {
        "n": n,
        "mean": np.where(n > 0, mean, 0.0),
        "std": np.sqrt(np.maximum(variance, 0.0)),
        "total": mean * n,
    }


def _counts(groups: FilteredGroups) -> np.ndarray:
    return fold_sum(groups, (groups.piece_hi - groups.piece_lo).astype(np.float64))


class Count:
    """How many items (calls that satisfy a measure's condition).

    >>> c = Count(); c.observe(None); c.observe(None); d = Count(); d.observe(None); c.merge(d); c.count
    3
    """

    __slots__ = ("count",)

    def __init__(self, count: int = 0) -> None:
        self.count = count

    def fresh(self) -> Count:
        return Count()

    def observe(self, value: object = None) -> None:
        self.count += 1

    def merge(self, other: Count) -> None:
        self.count += other.count

    def read(self) -> dict[str, float]:
        return {"count": float(self.count)}

    def states(self, groups: FilteredGroups, values: object) -> list[Count]:
        counts = np.diff(groups.bounds).tolist()
        return [Count(c) for c in counts]

    def prefix(self, groups: FilteredGroups, values: object) -> dict[str, np.ndarray]:
        return {"count": _counts(groups)}


def _pairs_in_first_seen_order(
    seg: np.ndarray, keys: np.ndarray, runs: KeyRuns | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (group, key) pairs with their counts, by group and then by first row: the order in
    which observing the rows one by one inserts keys into a dict (linking reads them in that order)."""
    if len(seg) == 0:
        return seg[:0], keys[:0], np.zeros(0, dtype=np.int64)
    runs = runs if runs is not None else KeyRuns(seg, keys)
    by_first = np.lexsort((runs.first_row(), runs.group))
    return runs.group[by_first], runs.key[by_first], runs.count[by_first]


class Total:
    """Count and sum.

    >>> t = Total(); t.observe(2.0); t.observe(3.0); t.count, t.total
    (2, 5.0)
    >>> u = Total(); u.observe(1.0); t.merge(u); t.count, t.total
    (3, 6.0)
    """

    __slots__ = ("count", "total")

    def __init__(self, count: int = 0, total: float = 0.0) -> None:
        self.count = count
        self.total = total

    def fresh(self) -> Total:
        return Total()

    def observe(self, value: float = 1.0) -> None:
        self.count += 1
        self.total += value

    def merge(self, other: Self) -> None:
        self.count += other.count
        self.total += other.total

    def read(self) -> dict[str, float]:
        return {"count": float(self.count), "total": self.total}

    @classmethod
    def grouped(cls, seg: np.ndarray, values: np.ndarray, n_groups: int) -> list[Self]:
        counts = np.bincount(seg, minlength=n_groups)
        totals = np.bincount(seg, weights=values.astype(np.float64), minlength=n_groups)
        return [cls(int(c), float(t)) for c, t in zip(counts, totals, strict=True)]

    def states(self, groups: FilteredGroups, values: np.ndarray) -> list[Total]:
        return Total.grouped(groups.seg, np.asarray(values, dtype=np.float64), groups.n_groups)

    def prefix(self, groups: FilteredGroups, values: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(values, dtype=np.float64)
        pieces = piece_reduce(np.add, x, groups.piece_lo, groups.piece_hi, 0.0)
        return {"count": _counts(groups), "total": fold_sum(groups, pieces)}


class MeanVar:
    """Mean and population variance, Welford's update and Chan's parallel merge.

    >>> a = MeanVar(); [a.observe(x) for x in (1.0, 2.0)] and None
    >>> b = MeanVar(); [b.observe(x) for x in (3.0, 4.0)] and None
    >>> a.merge(b); a.n, a.mean, a.variance
    (4, 2.5, 1.25)
    """

    __slots__ = ("m2", "mean", "n")

    def __init__(self, n: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.n = n
        self.mean = mean
        self.m2 = m2

    def fresh(self) -> MeanVar:
        return MeanVar()

    def observe(self, value: float) -> None:
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)

    def merge(self, other: Self) -> None:
        if other.n == 0:
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.n = n

    @property
    def variance(self) -> float:
        return self.m2 / self.n if self.n else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(max(self.variance, 0.0))

    @property
    def total(self) -> float:
        return self.mean * self.n

    def read(self) -> dict[str, float]:
        return {"n": float(self.n), "mean": self.mean, "std": self.std, "total": self.total}

    @classmethod
    def grouped(cls, seg: np.ndarray, values: np.ndarray, n_groups: int) -> list[Self]:
        """Two-pass per group (the same numbers as Welford, up to rounding)."""
        x = values.astype(np.float64)
        counts = np.bincount(seg, minlength=n_groups)
        sums = np.bincount(seg, weights=x, minlength=n_groups)
        means = np.divide(sums, counts, out=np.zeros(n_groups), where=counts > 0)
        m2 = np.bincount(seg, weights=(x - means[seg]) ** 2, minlength=n_groups)
        return [cls(int(c), float(m), float(v)) for c, m, v in zip(counts, means, m2, strict=True)]

    def states(self, groups: FilteredGroups, values: np.ndarray) -> list[MeanVar]:
        return MeanVar.grouped(groups.seg, np.asarray(values, dtype=np.float64), groups.n_groups)

    def prefix(self, groups: FilteredGroups, values: np.ndarray) -> dict[str, np.ndarray]:
        return _meanvar_stats(*_meanvar_prefix(groups, values))


class MinMax:
    """Smallest and largest value seen (first/last seen when fed timestamps).

    >>> m = MinMax(); m.observe(5.0); m.observe(2.0); (m.lo, m.hi)
    (2.0, 5.0)
    """

    __slots__ = ("hi", "lo")

    def __init__(self, lo: float = math.inf, hi: float = -math.inf) -> None:
        self.lo = lo
        self.hi = hi

    def fresh(self) -> MinMax:
        return MinMax()

    def observe(self, value: float) -> None:
        if value < self.lo:
            self.lo = value
        if value > self.hi:
            self.hi = value

    def merge(self, other: Self) -> None:
        self.lo = min(self.lo, other.lo)
        self.hi = max(self.hi, other.hi)

    @property
    def empty(self) -> bool:
        return self.lo > self.hi

    def read(self) -> dict[str, float]:
        return {"lo": self.lo, "hi": self.hi, "span": 0.0 if self.empty else float(self.hi - self.lo)}

    @classmethod
    def grouped(cls, seg: np.ndarray, values: np.ndarray, n_groups: int) -> list[Self]:
        lo = np.full(n_groups, np.inf)
        hi = np.full(n_groups, -np.inf)
        np.minimum.at(lo, seg, values.astype(np.float64))
        np.maximum.at(hi, seg, values.astype(np.float64))
        return [cls(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]

    def states(self, groups: FilteredGroups, values: np.ndarray) -> list[MinMax]:
        return MinMax.grouped(groups.seg, np.asarray(values, dtype=np.float64), groups.n_groups)

    def prefix(self, groups: FilteredGroups, values: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(values, dtype=np.float64)
        lo = piece_reduce(np.minimum, x, groups.piece_lo, groups.piece_hi, math.inf)
        hi = piece_reduce(np.maximum, x, groups.piece_lo, groups.piece_hi, -math.inf)
        lo, hi = fold(groups, (lo, hi), lambda a, b: (np.minimum(a[0], b[0]), np.maximum(a[1], b[1])))
        span = np.where(lo <= hi, hi - lo, 0.0)
        return {"lo": lo, "hi": hi, "span": span}


class Distinct:
    """Distinct count of hashed items: exact up to ``k`` items, then a k-minimum-values (theta) sketch.

    It keeps the k+1 smallest 64-bit hashes seen, so the state depends only on the SET of items
    (not their order or how the stream was split), merging is a set union, and two states give a
    Jaccard estimate (used for synchronised activity). Relative error past ``k`` is about 1/sqrt(k).

    >>> d = Distinct(k=4)
    >>> for item in ["a", "b", "a", "c"]: d.observe(hash_text(item))
    >>> d.estimate(), d.exact
    (3.0, True)
    >>> big = Distinct(k=64)
    >>> for i in range(5000): big.observe(hash_int(i))
    >>> 0.75 < big.estimate() / 5000 < 1.25, big.exact
    (True, False)
    """

    __slots__ = ("_cut", "_kept", "_smallest", "k")

    def __init__(self, k: int = 256) -> None:
        if k < 2:
            raise ValueError("Distinct needs k >= 2")
        self.k = k
        self._kept: set[int] = set()
        self._cut = _MASK64 + 1  # hashes above it cannot be among the k+1 smallest
        self._smallest: list[int] | None = []

    def fresh(self) -> Distinct:
        return Distinct(self.k)

    def observe(self, item_hash: int) -> None:
        if item_hash >= self._cut or item_hash in self._kept:
            return
        self._kept.add(item_hash)
        self._smallest = None
        if len(self._kept) > self._slack():
            self._prune()

    def _slack(self) -> int:
        # prune a quarter-k at a time: sorting is amortised, memory stays ~1.25 k
        return self.k + 1 + max(self.k // 4, 8)

    def _prune(self) -> None:
        keep = sorted(self._kept)[: self.k + 1]
        self._kept = set(keep)
        self._cut = keep[-1] + 1
        self._smallest = keep

    def merge(self, other: Distinct) -> None:
        if other.k != self.k:
            raise ValueError(f"cannot merge Distinct sketches of k={self.k} and k={other.k}")
        self._cut = min(self._cut, other._cut)
        self._kept = {h for h in self._kept | other._kept if h < self._cut}
        self._smallest = None
        if len(self._kept) > self._slack():
            self._prune()

    def smallest(self) -> list[int]:
        """The k+1 smallest hashes, ascending (all of them while exact)."""
        if self._smallest is None:
            self._smallest = sorted(self._kept)[: self.k + 1]
        return self._smallest

    @property
    def exact(self) -> bool:
        # the k+1 smallest are always kept, so fewer than k+1 kept means nothing was dropped
        return len(self._kept) <= self.k

    def estimate(self) -> float:
        if len(self._kept) <= self.k:
            return float(len(self._kept))
        s = self.smallest()
        return _kmv_estimate(self.k, s[self.k - 1])

    def read(self) -> dict[str, float]:
        return {"estimate": self.estimate()}

    @staticmethod
    def jaccard(a: Distinct, b: Distinct) -> float:
        """|A ∩ B| / |A ∪ B|: exact while both are exact, else the bottom-k estimate of the union."""
        if a.exact and b.exact:
            sa, sb = set(a.smallest()), set(b.smallest())
            union = sa | sb
            return len(sa & sb) / len(union) if union else 0.0
        k = min(a.k, b.k)
        cut = np.uint64(min(a._cut_value(), b._cut_value()))
        # the k smallest hashes of the union at or below the cut, and how many of them both hold:
        # each sample is ascending and distinct, so merged, a hash both hold is a repeat
        merged = np.concatenate(
            (np.array(a.smallest(), dtype=np.uint64), np.array(b.smallest(), dtype=np.uint64))
        )
        merged.sort(kind="stable")  # two sorted runs: a merge
        repeat = merged[1:] == merged[:-1]
        union = merged[np.append(True, ~repeat)]
        union_k = union[: np.searchsorted(union, cut, side="right")][:k]
        if not len(union_k):
            return 0.0
        both = merged[1:][repeat]
        return int(np.count_nonzero(both <= union_k[-1])) / len(union_k)

    def _cut_value(self) -> int:
        s = self.smallest()
        return s[-1] if len(s) > self.k else _MASK64

    @classmethod
    def grouped(
        cls, seg: np.ndarray, hashes: np.ndarray, n_groups: int, k: int = 256, runs: KeyRuns | None = None
    ) -> list[Self]:
        g, h, _ = _sorted_unique_pairs(seg, hashes.astype(np.uint64), runs)
        bounds = _segments(g, n_groups).tolist()
        out = []
        values = h.tolist()
        new = cls.__new__  # the states are filled in directly: this loop runs once per account
        no_cut = _MASK64 + 1
        for lo, hi in itertools.pairwise(bounds):
            state = new(cls)
            state.k = k
            if hi - lo > k + 1:
                keep = values[lo : lo + k + 1]
                state._cut = keep[-1] + 1
            else:
                keep = values[lo:hi]
                state._cut = no_cut
            state._kept = set(keep)
            state._smallest = keep
            out.append(state)
        return out

    def states(self, groups: FilteredGroups, values: np.ndarray) -> list[Distinct]:
        h = np.asarray(values, dtype=np.uint64)
        return Distinct.grouped(groups.seg, h, groups.n_groups, self.k, groups.runs(h))

    def prefix(self, groups: FilteredGroups, values: np.ndarray) -> dict[str, np.ndarray]:
        """Exact counts are running sums of first occurrences; a prefix with more than k distinct
        items takes the k-th smallest of them, as the sketch does (the sketch's state is a function
        of the set of items, so this is the sketch's own estimate)."""
        h = np.asarray(values, dtype=np.uint64)
        first = groups.runs(h).first()
        pieces = piece_reduce(np.add, first.astype(np.float64), groups.piece_lo, groups.piece_hi, 0.0)
        estimate = fold_sum(groups, pieces)
        for j in np.flatnonzero(estimate > self.k).tolist():
            lo, hi = int(groups.group_start[j]), int(groups.piece_hi[j])
            seen = h[lo:hi][first[lo:hi]]
            kth = int(np.partition(seen, self.k - 1)[self.k - 1])
            estimate[j] = _kmv_estimate(self.k, kth)
        return {"estimate": estimate}


def _kmv_estimate(k: int, kth_smallest: int) -> float:
    return (k - 1) / ((kth_smallest + 1) / float(_MASK64 + 1))


def _misra_gries(keys: Sequence[int], k: int, counts: dict[int, int] | None = None) -> dict[int, int]:
    """`HeavyHitters.observe` over a sequence of keys (the reference the bulk path must equal)."""
    counts = {} if counts is None else counts
    for key in keys:
        if key in counts:
            counts[key] += 1
        elif len(counts) < k:
            counts[key] = 1
        else:
            counts = {key_: c - 1 for key_, c in counts.items() if c > 1}
    return counts


class HeavyHitters:
    """Misra–Gries summary of the most frequent keys; mergeable (Agarwal et al. 2012).

    Every key with true count > n/(k+1) is kept, and each kept count is below the true count
    by at most n/(k+1). While at most ``k`` distinct keys are seen the counts are exact.

    >>> hh = HeavyHitters(k=2)
    >>> for key in "aaabac": hh.observe(key)
    >>> hh.top(1), hh.n
    ([('a', 3)], 6)
    """

    __slots__ = ("counts", "k", "n")

    def __init__(self, k: int = 16) -> None:
        self.k = k
        self.n = 0
        self.counts: dict[str, int] = {}

    def fresh(self) -> HeavyHitters:
        return HeavyHitters(self.k)

    def observe(self, key: str) -> None:
        self.n += 1
        counts = self.counts
        if key in counts:
            counts[key] += 1
        elif len(counts) < self.k:
            counts[key] = 1
        else:  # the new key and one of each kept key cancel out
            self.counts = {key_: c - 1 for key_, c in counts.items() if c > 1}

    def merge(self, other: HeavyHitters) -> None:
        self.n += other.n
        merged = dict(self.counts)
        for key, c in other.counts.items():
            merged[key] = merged.get(key, 0) + c
        self.counts = self._reduce(merged, self.k)

    @staticmethod
    def _reduce(counts: dict[str, int], k: int) -> dict[str, int]:
        if len(counts) <= k:
            return counts
        cut = sorted(counts.values(), reverse=True)[k]
        return {key: c - cut for key, c in counts.items() if c > cut}

    def top(self, m: int = 1) -> list[tuple[str, int]]:
        """The m largest (key, lower-bound count), largest first, ties by key."""
        return sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))[:m]

    def top_share(self) -> float:
        """Share of observations taken by the most frequent key (a lower bound once saturated)."""
        return max(self.counts.values()) / self.n if self.counts else 0.0

    def share(self, key: str) -> float:
        return self.counts.get(key, 0) / self.n if self.n else 0.0

    def read(self) -> dict[str, float]:
        return {"n": float(self.n), "top_share": self.top_share()}

    @classmethod
    def grouped(
        cls,
        seg: np.ndarray,
        codes: np.ndarray,
        labels: Sequence[str],
        n_groups: int,
        k: int = 16,
        runs: KeyRuns | None = None,
        replayed: Mapping[int, dict[int, int]] | None = None,
    ) -> list[Self]:
        """Each group's state as observing its keys in row order gives: exact counts while a group
        has at most k distinct keys, the Misra–Gries sequence itself past that (``replayed``: those
        groups' final counts, when already replayed)."""
        seg = np.asarray(seg, dtype=np.int64)
        codes = np.asarray(codes, dtype=np.int64)
        g, c, counts = _pairs_in_first_seen_order(seg, codes, runs)
        bounds = _segments(g, n_groups).tolist()
        row_bounds = _segments(seg, n_groups).tolist()
        totals = np.bincount(seg, minlength=n_groups).tolist()
        out = []
        code_list, counts_list = c.tolist(), counts.tolist()
        new = cls.__new__
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            state = new(cls)
            state.k = k
            state.n = totals[i]
            exact: Iterable[tuple[int, int]]
            if hi - lo <= k:
                exact = zip(code_list[lo:hi], counts_list[lo:hi], strict=True)
            elif replayed is not None:
                exact = replayed[i].items()
            else:  # past k keys the summary depends on the order: replay the group's keys
                exact = _misra_gries(codes[row_bounds[i] : row_bounds[i + 1]].tolist(), k).items()
            state.counts = {labels[code]: count for code, count in exact}
            out.append(state)
        return out

    def states(self, groups: FilteredGroups, values: tuple[np.ndarray, Sequence[str]]) -> list[HeavyHitters]:
        codes = np.asarray(values[0], dtype=np.int64)
        _, finals = self._replayed(groups, codes)
        return HeavyHitters.grouped(
            groups.seg, codes, values[1], groups.n_groups, self.k, groups.runs(codes), finals
        )

    def _replayed(
        self, groups: FilteredGroups, codes: np.ndarray
    ) -> tuple[dict[int, float], dict[int, dict[int, int]]]:
        """Misra–Gries replayed once over each group with more than k distinct keys (states and
        prefixes both read it): the top count after each of the group's queries, by query, and the
        group's final counts."""
        return groups.cached(f"misra_gries/{self.k}", codes, lambda: self._replay(groups, codes))

    def _replay(
        self, groups: FilteredGroups, codes: np.ndarray
    ) -> tuple[dict[int, float], dict[int, dict[int, int]]]:
        keys_per_group = np.bincount(groups.runs(codes).group, minlength=groups.n_groups)
        tops: dict[int, float] = {}
        finals: dict[int, dict[int, int]] = {}
        bounds, piece_hi = groups.bounds, groups.piece_hi
        # queries are ascending, so each group's queries are one slice
        query_bounds = np.searchsorted(groups.query_group, np.arange(groups.n_groups + 1))
        for group in np.flatnonzero(keys_per_group > self.k).tolist():
            counts: dict[int, int] = {}
            done = int(bounds[group])
            for j in range(int(query_bounds[group]), int(query_bounds[group + 1])):
                end = int(piece_hi[j])
                counts = _misra_gries(codes[done:end].tolist(), self.k, counts)
                done = end
                tops[j] = max(counts.values()) if counts else 0.0
            finals[group] = _misra_gries(codes[done : int(bounds[group + 1])].tolist(), self.k, counts)
        return tops, finals

    def prefix(
        self, groups: FilteredGroups, values: tuple[np.ndarray, Sequence[str]]
    ) -> dict[str, np.ndarray]:
        """While a group has at most k distinct keys its top count is the running maximum of each
        key's running count; past that the group's keys are replayed through Misra–Gries."""
        codes = np.asarray(values[0], dtype=np.int64)
        rank = groups.runs(codes).rank()
        n = _counts(groups)
        pieces = piece_reduce(
            np.maximum, (rank + 1).astype(np.float64), groups.piece_lo, groups.piece_hi, 0.0
        )
        top = fold_max(groups, pieces)
        tops, _ = self._replayed(groups, codes)
        for j, value in tops.items():
            top[j] = value
        return {"n": n, "top_share": np.divide(top, n, out=np.zeros(len(n)), where=n > 0)}


class Histogram:
    """Counts over a fixed number of bins (hour of day, topic bucket).

    >>> h = Histogram(24); h.observe(3); h.observe(3); h.observe(4); h.entropy() > 0, int(h.counts[3])
    (True, 2)
    """

    __slots__ = ("counts",)

    def __init__(self, bins: int) -> None:
        self.counts = np.zeros(bins, dtype=np.int64)

    def fresh(self) -> Histogram:
        return Histogram(len(self.counts))

    def observe(self, index: int) -> None:
        self.counts[index] += 1

    def merge(self, other: Self) -> None:
        self.counts += other.counts

    def entropy(self) -> float:
        """Shannon entropy divided by its maximum, in [0, 1] (1 = spread over every bin)."""
        total = int(self.counts.sum())
        if total == 0:
            return 0.0
        p = self.counts[self.counts > 0] / total
        return float(-(p * np.log(p)).sum() / math.log(len(self.counts)))

    def top_share(self) -> float:
        total = int(self.counts.sum())
        return float(self.counts.max() / total) if total else 0.0

    def read(self) -> dict[str, float]:
        return {"entropy": self.entropy(), "nonzero": float(np.count_nonzero(self.counts))}

    @classmethod
    def grouped(cls, seg: np.ndarray, index: np.ndarray, n_groups: int, bins: int) -> list[Self]:
        flat = np.bincount(seg.astype(np.int64) * bins + index, minlength=n_groups * bins)
        matrix = flat.reshape(n_groups, bins)
        out = []
        for row in matrix:
            state = cls(bins)
            state.counts = row.astype(np.int64, copy=True)
            out.append(state)
        return out

    def states(self, groups: FilteredGroups, values: np.ndarray) -> list[Histogram]:
        bins = len(self.counts)
        return Histogram.grouped(groups.seg, np.asarray(values, dtype=np.int64), groups.n_groups, bins)

    def prefix(self, groups: FilteredGroups, values: np.ndarray) -> dict[str, np.ndarray]:
        return histogram_stats(
            prefix_histograms(groups, np.asarray(values, dtype=np.int64), len(self.counts))
        )


def prefix_histograms(groups: FilteredGroups, index: np.ndarray, bins: int) -> np.ndarray:
    """The bin counts of every query's prefix (queries × bins)."""
    queries = len(groups.piece_lo)
    piece = piece_of_row(groups.piece_lo, groups.piece_hi, len(index))
    inside = piece >= 0
    flat = np.bincount(piece[inside] * bins + index[inside], minlength=queries * bins)
    return fold_sum(groups, flat.reshape(queries, bins).astype(np.float64))


def histogram_stats(counts: np.ndarray) -> dict[str, np.ndarray]:
    """`Histogram.entropy` and the number of non-empty bins, row by row."""
    total = counts.sum(axis=1)
    p = np.divide(counts, total[:, None], out=np.zeros_like(counts), where=total[:, None] > 0)
    logs = np.log(p, out=np.zeros_like(p), where=p > 0)
    entropy = -(p * logs).sum(axis=1) / math.log(counts.shape[1])
    return {
        "entropy": np.where(total > 0, entropy, 0.0),
        "nonzero": np.count_nonzero(counts, axis=1).astype(np.float64),
    }


# Gaps are binned on a log scale with 5% wide bins, so "within a few % of the median" is a
# mergeable count of one bin either side of the median bin.
GAP_BIN = math.log(1.05)
_GAP_FLOOR_S = 1e-3


def gap_bin(gap_s: float) -> int:
    return math.floor(math.log(max(gap_s, _GAP_FLOOR_S)) / GAP_BIN)


def gap_bins(gaps: np.ndarray) -> np.ndarray:
    """`gap_bin` of each gap. NumPy's vectorised log may differ from `math.log` in the last bit,
    which would move a gap that sits on a bin edge: gaps that close to an edge are binned again
    with `gap_bin` itself."""
    scaled = np.log(np.maximum(gaps, _GAP_FLOOR_S)) / GAP_BIN
    bins = np.floor(scaled).astype(np.int64)
    near_edge = np.flatnonzero(np.abs(scaled - np.round(scaled)) < 1e-9)
    if len(near_edge):
        bins[near_edge] = [gap_bin(g) for g in gaps[near_edge].tolist()]
    return bins


# prefixes with at most this many gaps are ranked all at once in a padded matrix
_SMALL_PREFIX = 32


class Gaps:
    """Inter-arrival statistics of a time-ordered stream: regularity and burstiness of timing.

    Merge is exact when the two states cover consecutive stretches of time (the gap across the
    seam is added); states that overlap in time pool their gaps without a seam and count it in
    ``overlaps``, because the true interleaving is lost. Out-of-order items are counted, not gapped.

    >>> g = Gaps()
    >>> for t in (0.0, 10.0, 20.0, 30.0, 40.0): g.observe(t)
    >>> round(g.cv(), 6), g.regular_share(), g.gaps.n
    (0.0, 1.0, 4)
    """

    __slots__ = ("bins", "first", "gaps", "last", "out_of_order", "overlaps")

    def __init__(self) -> None:
        self.first = math.inf
        self.last = -math.inf
        self.gaps = MeanVar()
        self.bins: dict[int, int] = {}
        self.out_of_order = 0
        self.overlaps = 0

    def fresh(self) -> Gaps:
        return Gaps()

    def _add_gap(self, gap: float) -> None:
        self.gaps.observe(gap)
        b = gap_bin(gap)
        self.bins[b] = self.bins.get(b, 0) + 1

    def observe(self, t: float) -> None:
        if self.first == math.inf:
            self.first = self.last = t
        elif t >= self.last:
            self._add_gap(t - self.last)
            self.last = t
        else:
            self.out_of_order += 1
            self.first = min(self.first, t)

    def merge(self, other: Gaps) -> None:
        if other.first == math.inf:
            return
        if self.first == math.inf:
            self.first, self.last = other.first, other.last
            self.gaps = MeanVar(other.gaps.n, other.gaps.mean, other.gaps.m2)
            self.bins = dict(other.bins)
            self.out_of_order, self.overlaps = other.out_of_order, other.overlaps
            return
        if self.last <= other.first:
            seam: float | None = other.first - self.last
        elif other.last <= self.first:
            seam = self.first - other.last
        else:
            seam = None
            self.overlaps += 1
        self.gaps.merge(other.gaps)
        for b, c in other.bins.items():
            self.bins[b] = self.bins.get(b, 0) + c
        if seam is not None:
            self._add_gap(seam)
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)
        self.out_of_order += other.out_of_order
        self.overlaps += other.overlaps

    def cv(self) -> float:
        """Coefficient of variation of the gaps (0 = a metronome, ~1 = Poisson arrivals)."""
        return self.gaps.std / self.gaps.mean if self.gaps.mean > 0 else 0.0

    def burstiness(self) -> float:
        """(σ − μ)/(σ + μ) of the gaps (Goh & Barabási): −1 periodic, 0 Poisson, → 1 bursty."""
        s, m = self.gaps.std, self.gaps.mean
        return (s - m) / (s + m) if s + m > 0 else 0.0

    def _median_bin(self) -> int | None:
        total = sum(self.bins.values())
        if total == 0:
            return None
        seen = 0
        for b in sorted(self.bins):
            seen += self.bins[b]
            if 2 * seen >= total:
                return b
        return None  # pragma: no cover - unreachable: the loop always reaches total

    def regular_share(self) -> float:
        """Share of gaps within about ±5% of the median gap (its log-bin and one either side)."""
        median = self._median_bin()
        if median is None:
            return 0.0
        near = sum(self.bins.get(b, 0) for b in (median - 1, median, median + 1))
        return near / self.gaps.n

    def median(self) -> float:
        """Median gap in seconds, to the 5% resolution of the bins (0 when no gaps)."""
        median = self._median_bin()
        return 0.0 if median is None else math.exp((median + 0.5) * GAP_BIN)

    def read(self) -> dict[str, float]:
        return {
            "n": float(self.gaps.n),
            "median": self.median(),
            "cv": self.cv(),
            "regular_share": self.regular_share(),
            "burstiness": self.burstiness(),
        }

    @classmethod
    def grouped(cls, seg: np.ndarray, t: np.ndarray, n_groups: int) -> list[Self]:
        """``seg`` and ``t`` must be sorted by (group, time), as the batch path sorts them."""
        bounds = _segments(seg, n_groups)
        same = seg[1:] == seg[:-1]
        gap_seg = seg[1:][same]
        gaps = (t[1:] - t[:-1])[same]
        stats = MeanVar.grouped(gap_seg, gaps, n_groups)
        gbins = gap_bins(gaps)
        g, b, c = _sorted_unique_pairs(gap_seg, gbins)
        bin_bounds = _segments(g, n_groups)
        b_list, c_list = b.tolist(), c.tolist()
        out = []
        for i in range(n_groups):
            state = cls()
            lo, hi = bounds[i], bounds[i + 1]
            if hi > lo:
                state.first, state.last = float(t[lo]), float(t[hi - 1])
            state.gaps = stats[i]
            state.bins = dict(
                zip(
                    b_list[bin_bounds[i] : bin_bounds[i + 1]],
                    c_list[bin_bounds[i] : bin_bounds[i + 1]],
                    strict=True,
                )
            )
            out.append(state)
        return out

    def states(self, groups: FilteredGroups, values: np.ndarray) -> list[Gaps]:
        return Gaps.grouped(groups.seg, np.asarray(values, dtype=np.float64), groups.n_groups)

    def prefix(self, groups: FilteredGroups, values: np.ndarray) -> dict[str, np.ndarray]:
        t = np.asarray(values, dtype=np.float64)
        rows = len(t)
        has_gap = np.zeros(rows, dtype=bool)  # a row's gap is to the row before it in its group
        has_gap[1:] = groups.seg[1:] == groups.seg[:-1]
        gap_rows = np.flatnonzero(has_gap)
        gaps = t[gap_rows] - t[gap_rows - 1]
        gap_groups = groups.filtered(gap_rows)
        n, mean, m2 = _meanvar_prefix(gap_groups, gaps)
        stats = _meanvar_stats(n, mean, m2)
        bins = gap_bins(gaps)
        median, near = _median_and_near(gap_groups, bins)
        std, avg = stats["std"], stats["mean"]
        return {
            "n": n,
            "median": np.where(n > 0, np.exp((median + 0.5) * GAP_BIN), 0.0),
            "cv": np.divide(std, avg, out=np.zeros(len(n)), where=avg > 0),
            "regular_share": np.divide(near, n, out=np.zeros(len(n)), where=n > 0),
            "burstiness": np.divide(std - avg, std + avg, out=np.zeros(len(n)), where=std + avg > 0),
        }


def _median_and_near(groups: FilteredGroups, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every query: the median gap bin of its prefix (the bin of rank ceil(m/2), as
    `Gaps._median_bin` finds it) and how many of its gaps sit within one bin of it."""
    lo, hi = groups.group_start, groups.piece_hi
    sizes = hi - lo
    median = np.zeros(len(lo), dtype=np.float64)
    near = np.zeros(len(lo), dtype=np.float64)
    small = np.flatnonzero((sizes > 0) & (sizes <= _SMALL_PREFIX))
    if len(small):
        width = int(sizes[small].max())
        offsets = np.arange(width)
        index = lo[small, None] + offsets[None, :]
        valid = offsets[None, :] < sizes[small, None]
        big = np.iinfo(np.int64).max
        matrix = np.where(valid, bins[np.minimum(index, len(bins) - 1)], big)
        matrix.sort(axis=1)
        rank = (sizes[small] + 1) // 2 - 1
        m = matrix[np.arange(len(small)), rank]
        median[small] = m
        near[small] = (valid & (np.abs(np.where(valid, matrix, 0) - m[:, None]) <= 1)).sum(axis=1)
    for j in np.flatnonzero(sizes > _SMALL_PREFIX).tolist():
        part = bins[lo[j] : hi[j]]
        at = (len(part) + 1) // 2 - 1
        middle = int(np.partition(part, at)[at])
        median[j] = middle
        near[j] = np.count_nonzero(np.abs(part - middle) <= 1)
    return median, near


TOPIC_PLANES = 6  # 2**6 = 64 topic buckets from random hyperplanes (SimHash)
_TOPIC_SEED = 20260222
_planes_cache: dict[int, np.ndarray] = {}


def topic_planes(dim: int) -> np.ndarray:
    """Fixed random hyperplanes for a vector size: the same buckets on every machine and run."""
    planes = _planes_cache.get(dim)
    if planes is None:
        planes = np.random.default_rng(_TOPIC_SEED).standard_normal((dim, TOPIC_PLANES)).astype(np.float32)
        _planes_cache[dim] = planes
    return planes


def topic_buckets(vectors: np.ndarray) -> np.ndarray:
    """SimHash bucket (0..63) of each row: nearby prompts share a bucket, distant topics do not."""
    bits = (vectors @ topic_planes(vectors.shape[1])) > 0
    return (bits * (1 << np.arange(TOPIC_PLANES))).sum(axis=1).astype(np.int64)


def _running_sums_python(x, starts, sizes, slot, base, before, ends):
    """The sum of each group's earlier rows before each row (rows sorted by group, in time order),
    then the group's earlier sum ``base[slot[group]]`` added to them where it has one (the others
    would add 0.0 to sums that are never -0.0: they start from +0.0, changing no bit), and each
    group's sum after its rows: ``before`` (zeros on entry) and ``ends`` filled in place. The
    additions, and their order, of the definition written over whole arrays: for each rank r,
    ``before[r] = before[r - 1] + x[r - 1]``, then ``before += base``, then
    ``ends = before[last] + x[last]``; one pass over the rows instead of one NumPy step per rank."""
    dims = x.shape[1]
    for g in range(starts.shape[0]):
        lo, hi = starts[g], starts[g] + sizes[g]
        for i in range(lo + 1, hi):
            for d in range(dims):
                before[i, d] = before[i - 1, d] + x[i - 1, d]
        if slot[g] >= 0:
            earlier = base[slot[g]]
            for i in range(lo, hi):
                for d in range(dims):
                    before[i, d] += earlier[d]
        for d in range(dims):
            ends[g, d] = before[hi - 1, d] + x[hi - 1, d]


_running_sums = compiled(_running_sums_python)


class DispersionRows(NamedTuple):
    """What the bulk path keeps of each embedded call, in time order within its account: ‖v‖², how
    much the call adds to ‖Σv‖² (2 v·Σ(earlier) + ‖v‖²), and its topic bucket. Vectors are 256
    floats; these are three numbers, and everything the features need is a running sum of them."""

    sq: np.ndarray
    cross: np.ndarray
    bucket: np.ndarray


class Dispersion:
    """Spread of embedding vectors: running sum and mean squared norm give the mean squared
    distance to the centroid exactly and mergeably; SimHash buckets give topic coverage.

    >>> d = Dispersion()
    >>> for v in ([1.0, 0.0], [0.0, 1.0]): d.observe(np.array(v, dtype=np.float32))
    >>> round(d.mean_sq_distance(), 6), d.centroid().tolist()
    (0.5, [0.5, 0.5])
    """

    __slots__ = ("n", "sq", "topics", "total")

    def __init__(self) -> None:
        self.n = 0
        self.total: np.ndarray | None = None
        self.sq = 0.0
        self.topics = Histogram(1 << TOPIC_PLANES)

    def fresh(self) -> Dispersion:
        return Dispersion()

    def observe(self, vector: np.ndarray) -> None:
        v = np.asarray(vector, dtype=np.float64)
        self.n += 1
        self.total = v.copy() if self.total is None else self.total + v
        self.sq += float(v @ v)
        self.topics.observe(int(topic_buckets(np.asarray(vector, dtype=np.float32)[None, :])[0]))

    def merge(self, other: Dispersion) -> None:
        if other.total is None:
            return
        self.total = other.total.copy() if self.total is None else self.total + other.total
        self.n += other.n
        self.sq += other.sq
        self.topics.merge(other.topics)

    def centroid(self) -> np.ndarray | None:
        return None if self.total is None else self.total / self.n

    def mean_sq_distance(self) -> float:
        """Mean over vectors of ‖v − centroid‖² = mean ‖v‖² − ‖centroid‖² (≈ 0: the same prompt)."""
        c = self.centroid()
        return 0.0 if c is None else max(self.sq / self.n - float(c @ c), 0.0)

    def read(self) -> dict[str, float]:
        topics = self.topics.read()
        return {
            "n": float(self.n),
            "mean_sq_distance": self.mean_sq_distance(),
            "topics": topics["nonzero"],
            "topic_entropy": topics["entropy"],
        }

    @classmethod
    def grouped(cls, seg: np.ndarray, vectors: np.ndarray, n_groups: int) -> list[Self]:
        out = [cls() for _ in range(n_groups)]
        if len(seg) == 0:
            return out
        v = vectors.astype(np.float64)
        counts = np.bincount(seg, minlength=n_groups)
        totals = np.zeros((n_groups, v.shape[1]))
        np.add.at(totals, seg, v)
        sq = np.bincount(seg, weights=np.einsum("ij,ij->i", v, v), minlength=n_groups)
        topics = Histogram.grouped(
            seg, topic_buckets(vectors.astype(np.float32)), n_groups, 1 << TOPIC_PLANES
        )
        for i in np.flatnonzero(counts):
            state = out[i]
            state.n, state.total, state.sq, state.topics = int(counts[i]), totals[i], float(sq[i]), topics[i]
        return out

    @staticmethod
    def rows(
        seg: np.ndarray, vectors: np.ndarray, earlier: Mapping[int, np.ndarray] | None = None
    ) -> tuple[DispersionRows, dict[int, np.ndarray]]:
        """`DispersionRows` of vectors in time order within their groups, after the sums
        ``earlier[group]`` of vectors seen before (a stream read in batches), and each group's sum
        after them."""

        def bases(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            listed = groups.tolist()
            with_base = [i for i, g in enumerate(listed) if g in earlier]  # type: ignore[operator]
            if not with_base:
                return np.zeros(0, dtype=np.int64), np.zeros((0, 0))
            return np.array(with_base), np.stack([earlier[listed[i]] for i in with_base])  # type: ignore[index]

        rows, groups, ends = Dispersion._rows(seg, vectors, bases if earlier is not None else None)
        return rows, dict(zip(groups.tolist(), ends, strict=True))

    @staticmethod
    def rows_into(
        seg: np.ndarray, vectors: np.ndarray, sums: np.ndarray, known: np.ndarray
    ) -> DispersionRows:
        """`rows` with the sums of the groups seen before as rows of one matrix: ``sums[group]``
        where ``known[group]``, both updated in place to the sums after ``vectors`` (the same
        numbers as `rows`' dictionary, without a Python step per group; the groups must be
        below ``len(known)``)."""

        def bases(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with_base = np.flatnonzero(known[groups])
            return with_base, sums[groups[with_base]]

        rows, groups, ends = Dispersion._rows(seg, vectors, bases)
        sums[groups] = ends
        known[groups] = True
        return rows

    @staticmethod
    def _rows(
        seg: np.ndarray,
        vectors: np.ndarray,
        bases: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None,
    ) -> tuple[DispersionRows, np.ndarray, np.ndarray]:
        """`DispersionRows`, the groups in increasing order and each one's sum after ``vectors``.
        ``bases(groups)`` gives the positions in ``groups`` of those with an earlier sum, and
        those sums (one row each)."""
        seg = np.asarray(seg, dtype=np.int64)
        order = np.argsort(seg, kind="stable")
        s = seg[order]
        x = np.asarray(np.asarray(vectors)[order], dtype=np.float64)  # gathered, then widened (exact)
        new = np.ones(len(s), dtype=bool)
        new[1:] = s[1:] != s[:-1]
        starts = np.flatnonzero(new)
        sizes = np.diff(np.append(starts, len(s)))
        groups = s[starts]
        # each group's earlier sum, if it has one: a row of `base`, `slot[group]` (-1: none)
        slot = np.full(len(groups), -1, dtype=np.int64)
        base = np.zeros((0, x.shape[1]))
        if bases is not None:
            with_base, base = bases(groups)
            slot[with_base] = np.arange(len(with_base))
        # allocated here, as NumPy allocates, and filled by the compiled loop
        before, ends = np.zeros_like(x), np.empty((len(groups), x.shape[1]))
        _running_sums()(x, starts, sizes, slot, np.asarray(base, dtype=np.float64), before, ends)
        sq = np.einsum("ij,ij->i", x, x)
        cross = 2.0 * np.einsum("ij,ij->i", x, before) + sq
        rows = DispersionRows(np.empty_like(sq), np.empty_like(cross), np.empty(len(s), dtype=np.int64))
        rows.sq[order], rows.cross[order] = sq, cross
        rows.bucket[order] = topic_buckets(np.asarray(np.asarray(vectors)[order], dtype=np.float32))
        return rows, groups, ends

    def states_from_rows(
        self, groups: FilteredGroups, rows: DispersionRows, totals: Mapping[int, np.ndarray]
    ) -> list[Dispersion]:
        """Final states from the per-call rows and each group's vector sum."""
        n = np.diff(groups.bounds)
        sq = np.bincount(groups.seg, weights=rows.sq, minlength=groups.n_groups)
        topics = Histogram.grouped(groups.seg, rows.bucket, groups.n_groups, 1 << TOPIC_PLANES)
        out = [Dispersion() for _ in range(groups.n_groups)]
        for i in np.flatnonzero(n).tolist():
            state = out[i]
            state.n, state.total, state.sq, state.topics = int(n[i]), totals[i], float(sq[i]), topics[i]
        return out

    def prefix_from_rows(self, groups: FilteredGroups, rows: DispersionRows) -> dict[str, np.ndarray]:
        lo, hi = groups.piece_lo, groups.piece_hi
        n = _counts(groups)
        sq = fold_sum(groups, piece_reduce(np.add, rows.sq, lo, hi, 0.0))
        cross = fold_sum(groups, piece_reduce(np.add, rows.cross, lo, hi, 0.0))
        safe = np.where(n > 0, n, 1.0)
        spread = np.where(n > 0, np.maximum(sq / safe - cross / (safe * safe), 0.0), 0.0)
        topics = histogram_stats(prefix_histograms(groups, rows.bucket, 1 << TOPIC_PLANES))
        return {
            "n": n,
            "mean_sq_distance": spread,
            "topics": topics["nonzero"],
            "topic_entropy": topics["entropy"],
        }


class SignalStats:
    """How often one signal scored, fired (score ≥ 0.5), and its mean score when it scored.

    >>> s = SignalStats(); s.observe(0.9); s.observe(0.2); s.fired, round(s.scores.mean, 2)
    (1, 0.55)
    """

    __slots__ = ("fired", "scores")
    FIRES_AT = 0.5

    def __init__(self) -> None:
        self.scores = MeanVar()
        self.fired = 0

    def fresh(self) -> SignalStats:
        return SignalStats()

    def observe(self, score: float) -> None:
        self.scores.observe(score)
        if score >= self.FIRES_AT:
            self.fired += 1

    def merge(self, other: SignalStats) -> None:
        self.scores.merge(other.scores)
        self.fired += other.fired

    def read(self) -> dict[str, float]:
        return {"n": float(self.scores.n), "mean": self.scores.mean, "fired": float(self.fired)}

    def states(self, groups: FilteredGroups, values: np.ndarray) -> list[SignalStats]:
        x = np.asarray(values, dtype=np.float64)
        scores = MeanVar.grouped(groups.seg, x, groups.n_groups)
        fired = np.bincount(groups.seg[x >= self.FIRES_AT], minlength=groups.n_groups).tolist()
        out = []
        for state_scores, state_fired in zip(scores, fired, strict=True):
            state = SignalStats()
            state.scores, state.fired = state_scores, state_fired
            out.append(state)
        return out

    def prefix(self, groups: FilteredGroups, values: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(values, dtype=np.float64)
        stats = _meanvar_stats(*_meanvar_prefix(groups, x))
        fires = (x >= self.FIRES_AT).astype(np.float64)
        fired = fold_sum(groups, piece_reduce(np.add, fires, groups.piece_lo, groups.piece_hi, 0.0))
        return {"n": stats["n"], "mean": stats["mean"], "fired": fired}


class FirstValues:
    """The first value seen for each key, for at most ``limit`` keys (readable previews of hashed
    keys such as system prompts). Evidence, not a statistic: ``read()`` is empty.

    >>> p = FirstValues(limit=2); p.observe(("k1", "first")); p.observe(("k1", "later")); p.values
    {'k1': 'first'}
    """

    __slots__ = ("limit", "values")

    def __init__(self, limit: int = 32) -> None:
        self.limit = limit
        self.values: dict[str, str] = {}

    def fresh(self) -> FirstValues:
        return FirstValues(self.limit)

    def observe(self, item: tuple[str, str | Callable[[], str]]) -> None:
        """``item`` is (key, value); the value may be a function, called only for a new key."""
        key, value = item
        if key not in self.values:
            self.values[key] = value() if callable(value) else value

    def merge(self, other: FirstValues) -> None:
        for key, value in other.values.items():
            self.values.setdefault(key, value)

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget the keys not in ``keys`` once more than ``limit`` are held (memory stays bounded)."""
        if len(self.values) > self.limit:
            wanted = set(keys)
            self.values = {k: v for k, v in self.values.items() if k in wanted}

    def read(self) -> dict[str, float]:
        return {}

    def states(
        self, groups: FilteredGroups, values: tuple[Sequence[str], Sequence[str]]
    ) -> list[FirstValues]:
        keys, texts = values
        out = [FirstValues(self.limit) for _ in range(groups.n_groups)]
        for group, key, text in zip(groups.seg.tolist(), keys, texts, strict=True):
            out[group].values.setdefault(key, text)
        return out

    def prefix(self, groups: FilteredGroups, values: object) -> dict[str, np.ndarray]:
        return {}


def piece_of_row(lo: np.ndarray, hi: np.ndarray, rows: int) -> np.ndarray:
    """For each row, the query whose piece [lo, hi) holds it, or -1 (pieces are disjoint)."""
    out = np.full(rows, -1, dtype=np.int64)
    lengths = hi - lo
    total = int(lengths.sum())
    if total == 0:
        return out
    query = np.repeat(np.arange(len(lo)), lengths)
    offsets = np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)
    out[np.arange(total) + offsets] = query
    return out
