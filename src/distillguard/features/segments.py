"""Rows grouped by account, and prefix queries over them: the index arithmetic of the bulk path.

Rows are sorted by group (account) and, within a group, by time. A *query* asks for a reducer's
statistics over a prefix of one group: the group's calls up to and including one row (a checkpoint).
Each query's prefix is the previous query's prefix of the same group plus one *piece* of new rows,
so a reducer folds per-piece states in order - its merge, done for every group at once - instead of
sweeping a cumulative sum over the whole table (a cumulative sum across thousands of accounts loses
the precision of the small ones).

>>> seg = np.array([0, 0, 0, 1, 1])
>>> groups = Groups(seg, 2, query_rows=np.array([0, 2, 4]))
>>> groups.piece_lo.tolist(), groups.piece_hi.tolist(), groups.level.tolist()
([0, 1, 3], [1, 3, 5], [0, 1, 0])
>>> fold_sum(groups, piece_reduce(np.add, np.arange(5.0), groups.piece_lo, groups.piece_hi, 0.0)).tolist()
[0.0, 3.0, 7.0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def group_bounds(seg: np.ndarray, n_groups: int) -> np.ndarray:
    """Start offsets of each group in an array sorted by group id (length n_groups + 1)."""
    return np.searchsorted(seg, np.arange(n_groups + 1))


class Groups:
    """Group boundaries of a sorted table and the prefix queries asked of it.

    ``query_rows`` (ascending) are the rows whose prefixes are wanted; consecutive queries of one
    group share everything but their last piece.
    """

    def __init__(self, seg: np.ndarray, n_groups: int, query_rows: np.ndarray | None = None) -> None:
        self.seg = np.asarray(seg, dtype=np.int64)
        self.n_groups = n_groups
        self.rows = len(self.seg)
        self.bounds = group_bounds(self.seg, n_groups)
        rows = np.zeros(0, dtype=np.int64) if query_rows is None else np.asarray(query_rows, dtype=np.int64)
        if len(rows) and np.any(np.diff(rows) <= 0):
            raise ValueError("query rows must be strictly ascending")
        self.query_rows = rows
        self.query_group = self.seg[rows]
        self.group_start = self.bounds[self.query_group]
        self.piece_hi = rows + 1
        first = np.ones(len(rows), dtype=bool)
        first[1:] = self.query_group[1:] != self.query_group[:-1]
        self.first = first
        self.piece_lo = np.where(first, self.group_start, np.concatenate([[0], self.piece_hi[:-1]]))
        # position of each query among its group's queries: fold level by level, all groups at once
        start_of = np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0)) if len(rows) else rows
        self.level = np.arange(len(rows)) - start_of
        self.levels = [
            np.flatnonzero(self.level == level) for level in range(1, int(self.level.max(initial=0)) + 1)
        ]

    def filtered(self, rows: np.ndarray) -> FilteredGroups:
        """The same groups and queries over the subset ``rows`` (ascending) of the rows."""
        return FilteredGroups(self, rows)


class FilteredGroups:
    """Groups and query pieces re-indexed into a subset of the rows (a measure's ``where``)."""

    def __init__(self, groups: Groups, rows: np.ndarray) -> None:
        self.parent = groups
        self.rows = rows
        self.n_groups = groups.n_groups
        if len(rows) == groups.rows:  # every row: the indices are the parent's
            self.seg = groups.seg
            self.bounds, self.piece_lo, self.piece_hi = groups.bounds, groups.piece_lo, groups.piece_hi
            self.group_start = groups.group_start
        else:
            self.seg = groups.seg[rows]
            self.bounds = np.searchsorted(rows, groups.bounds)
            self.piece_lo = np.searchsorted(rows, groups.piece_lo)
            self.piece_hi = np.searchsorted(rows, groups.piece_hi)
            self.group_start = np.searchsorted(rows, groups.group_start)
        self.query_group = groups.query_group
        self.levels = groups.levels
        self.queries = len(groups.query_rows)
        self._memo: dict[tuple[str, int], tuple[object, Any]] = {}

    def cached(self, name: str, of: object, make: Callable[[], T]) -> T:
        """``make()``, worked out once per ``name`` and object ``of`` (a values array): a reducer's
        final states and its prefixes read the same sorts and replays of the same values."""
        found = self._memo.get((name, id(of)))
        if found is None or found[0] is not of:
            found = self._memo[(name, id(of))] = (of, make())
        return found[1]

    def runs(self, keys: np.ndarray) -> KeyRuns:
        """`KeyRuns` of these rows and ``keys``, sorted once however often it is asked for."""
        return self.cached("runs", keys, lambda: KeyRuns(self.seg, keys))

    def filtered(self, rows: np.ndarray) -> FilteredGroups:
        """A further subset, ``rows`` indexing this one's rows."""
        return FilteredGroups(self.parent, self.rows[rows])


def piece_reduce(ufunc: np.ufunc, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, empty: float) -> np.ndarray:
    """``ufunc.reduce(x[lo[j]:hi[j]])`` for every j (along the first axis), ``empty`` where lo == hi."""
    if len(lo) == 0:
        return np.zeros((0, *x.shape[1:]), dtype=x.dtype)
    padded = np.concatenate([x, np.zeros((1, *x.shape[1:]), dtype=x.dtype)])
    index = np.empty(2 * len(lo), dtype=np.int64)
    index[0::2] = lo
    index[1::2] = hi
    out = ufunc.reduceat(padded, index, axis=0)[0::2]
    out[hi <= lo] = empty
    return out


def fold(
    groups: Groups | FilteredGroups,
    states: tuple[np.ndarray, ...],
    merge: Callable[..., tuple[np.ndarray, ...]],
) -> tuple[np.ndarray, ...]:
    """Per-piece states folded in order within each group: query j's state = merge(state of query
    j-1, piece j). ``merge(left, right)`` takes and returns tuples of arrays (one row per query)."""
    out = tuple(np.array(s, copy=True) for s in states)
    for index in groups.levels:
        left = tuple(s[index - 1] for s in out)
        right = tuple(s[index] for s in out)
        for target, value in zip(out, merge(left, right), strict=True):
            target[index] = value
    return out


def fold_sum(groups: Groups | FilteredGroups, pieces: np.ndarray) -> np.ndarray:
    """Running sums of per-piece values within each group."""
    (out,) = fold(groups, (pieces,), lambda a, b: (a[0] + b[0],))
    return out


def fold_max(groups: Groups | FilteredGroups, pieces: np.ndarray) -> np.ndarray:
    (out,) = fold(groups, (pieces,), lambda a, b: (np.maximum(a[0], b[0]),))
    return out


def key_order(seg: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The rows sorted by (group, key), the rows of one (group, key) in their own order.

    Small non-negative integer keys (dictionary codes) and groups make one int64 sort key, sorted
    stably in one pass; other keys (64-bit hashes) take a lexicographic sort.

    >>> key_order(np.array([0, 0, 0, 1]), np.array([7, 5, 7, 5])).tolist()
    [1, 0, 2, 3]
    >>> key_order(np.array([0, 0, 1]), np.array([2**63, 1, 0], dtype=np.uint64)).tolist()
    [1, 0, 2]
    >>> key_order(np.array([0, 0, 1]), np.array([2**64 - 1, 2**64 - 2, 2**64 - 1], dtype=np.uint64)).tolist()
    [1, 0, 2]
    """
    n = len(seg)
    keys = np.asarray(keys)
    if n and keys.dtype.kind in "iu" and int(seg.min()) >= 0 and int(seg.max()) < 1 << 31:
        low = keys.min()
        if int(keys.max()) - int(low) < 1 << 31:  # then keys - low cannot overflow in their own type
            combined = (seg.astype(np.int64) << 31) | (keys - low).astype(np.int64)
            return np.argsort(combined, kind="stable")
    return np.lexsort((np.arange(n), keys, seg))


class KeyRuns:
    """The runs of equal (group, key) among rows grouped by group: one sort (`key_order`) that a
    reducer's final states and its prefix statistics both read.

    ``order`` sorts the rows by (group, key, row); ``starts`` indexes ``order`` where each run
    begins; ``group``, ``key`` and ``count`` describe each run (runs ascending by group, then key).
    """

    def __init__(self, seg: np.ndarray, keys: np.ndarray) -> None:
        n = len(seg)
        self.rows = n
        self.order = key_order(seg, keys) if n else np.zeros(0, dtype=np.int64)
        s, k = seg[self.order], keys[self.order]
        new = np.ones(n, dtype=bool)
        new[1:] = (s[1:] != s[:-1]) | (k[1:] != k[:-1])
        self.new = new
        self.starts = np.flatnonzero(new)
        self.group, self.key = s[self.starts], k[self.starts]
        self.count = np.diff(np.append(self.starts, n))

    def rank(self) -> np.ndarray:
        """For each row, how many earlier rows of its group hold the same key (`rank_in_run`)."""
        n = self.rows
        run_start = np.maximum.accumulate(np.where(self.new, np.arange(n), 0)) if n else self.order
        rank = np.empty(n, dtype=np.int64)
        rank[self.order] = np.arange(n) - run_start
        return rank

    def first(self) -> np.ndarray:
        """Whether each row is the first of its group to hold its key."""
        out = np.zeros(self.rows, dtype=bool)
        out[self.order[self.starts]] = True
        return out

    def first_row(self) -> np.ndarray:
        """The first row of each run."""
        return self.order[self.starts]


def rank_in_run(seg: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows of its group hold the same key (0 for the first).

    >>> rank_in_run(np.array([0, 0, 0, 1]), np.array([5, 7, 5, 5])).tolist()
    [0, 0, 1, 0]
    """
    n = len(seg)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    return KeyRuns(np.asarray(seg), np.asarray(keys)).rank()
