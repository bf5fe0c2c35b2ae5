"""When, during the replay of an account's calls, its risk is evaluated.

Evaluating after every call would make the scan quadratic in spirit; evaluating only at the end
would not tell when a live deployment would have flagged the account. The schedule is every call
up to 10, then a geometric ladder (about 12% apart), so `calls_to_flag` is exact early on, where
it matters, and at most ~12% late beyond that.
"""

from __future__ import annotations

from functools import cache

import numpy as np


@cache
def _ladder(limit: int = 10_000_000) -> frozenset[int]:
    points = set(range(1, 11))
    value = 10.0
    while value < limit:
        value *= 1.12
        points.add(round(value))
    return frozenset(points)


def is_checkpoint(n_calls: int) -> bool:
    """True when the account's risk is evaluated right after its `n_calls`-th call.

    >>> [n for n in range(1, 60) if is_checkpoint(n)]
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 16, 18, 20, 22, 25, 28, 31, 35, 39, 44, 49, 55]
    """
    return n_calls in _ladder()


def checkpoint_positions(n_calls: np.ndarray) -> np.ndarray:
    """`is_checkpoint` of each element of an integer array.

    >>> checkpoint_positions(np.array([1, 10, 11, 12, 13])).tolist()
    [True, True, True, False, True]
    """
    ladder = np.array(sorted(_ladder()), dtype=np.int64)
    return np.isin(np.asarray(n_calls, dtype=np.int64), ladder)
