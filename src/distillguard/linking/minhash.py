"""MinHash signatures and LSH candidate pairs for many sets at once: what `datasketch` gives one
set and one query at a time, computed in a few NumPy passes.

Linking sketches thousands of sets (every account's active time buckets, every distinct template
frame) and asks the LSH index of each which others share a band. Built one by one, that is a
MinHash object, a Python hash call per item and a dictionary look-up per band per set; here it is
one pass over all items per chunk and one sort per band. The values are datasketch's own: the
permutations are drawn by `datasketch.MinHash` (its ``affine32`` scheme), the items are mixed and
permuted as its `MinHash.update_batch` does, and the bands are those `datasketch.MinHashLSH`
chooses for the threshold (tests hold both to datasketch).
"""

from __future__ import annotations

import numpy as np
from datasketch import MinHash, MinHashLSH

SCHEME = "affine32"
# items permuted per pass: with 64 permutations a 1 MiB array, which stays in cache (16 MiB did not)
_CHUNK = 4096


def permutations(num_perm: int, seed: int) -> np.ndarray:
    """datasketch's permutations for ``seed``: a 2 x num_perm array of (a, b), a odd, uint32."""
    return MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations


def _mix32(values: np.ndarray) -> np.ndarray:
    # MurmurHash3's 32-bit finaliser, as datasketch applies it before permuting (uint32 wraps)
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


def signatures(items: np.ndarray, lengths: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """One signature row per set: ``items`` holds every set's 32-bit item hashes one set after
    another, ``lengths`` how many each set has. Row i is the ``hashvalues`` of a datasketch
    MinHash (these permutations, scheme affine32) updated with set i's items: per permutation,
    the least ``a * mix(h) + b`` modulo 2^32 (all ones for an empty set, as datasketch starts)."""
    a, b = perms
    out = np.full((len(lengths), len(a)), np.iinfo(np.uint32).max, dtype=np.uint32)
    mixed = _mix32(np.asarray(items, dtype=np.uint32))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    first = 0
    while first < len(lengths):
        # whole sets per chunk, at least one however large
        last = max(first + 1, int(np.searchsorted(ends, starts[first] + _CHUNK, side="right")))
        lo, hi = int(starts[first]), int(ends[last - 1])
        filled = np.flatnonzero(lengths[first:last]) + first
        if len(filled):
            permuted = mixed[lo:hi, None] * a
            permuted += b
            # each filled set's minimum runs to the next filled set's first item
            out[filled] = np.minimum.reduceat(permuted, starts[filled] - lo, axis=0)
        first = last
    return out


def candidate_pairs(sketches: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of rows (i < j) whose signatures agree on all the values of at least one band
    of `datasketch.MinHashLSH` at ``threshold``: j is among what that index's query for row i
    answers, and i among row j's. Ordered by i, then j."""
    n, num_perm = sketches.shape
    rows = np.arange(n)
    found = []
    for start, end in MinHashLSH(threshold=threshold, num_perm=num_perm).hashranges:
        band = sketches[:, start:end]
        # rows with equal bands next to each other, ascending within each run
        order = np.lexsort((rows, *band.T))
        ordered = band[order]
        differs = np.any(ordered[1:] != ordered[:-1], axis=1)
        # each row pairs with the rows after it in its run of equal bands
        run_ends = np.append(np.flatnonzero(differs) + 1, n)
        later = run_ends[np.searchsorted(run_ends, rows, side="right")] - rows - 1
        firsts = np.repeat(rows, later)
        nth = np.arange(len(firsts)) - np.repeat(np.cumsum(later) - later, later)
        found.append(order[firsts] * n + order[firsts + 1 + nth])
    pairs = np.unique(np.concatenate(found))
    return pairs // n, pairs % n
