"""The bulk MinHash signatures and LSH candidate pairs are datasketch's, one set at a time."""

from __future__ import annotations

import itertools

import numpy as np
from datasketch import MinHash, MinHashLSH
from datasketch.hashfunc import sha1_hash32
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.linking import minhash

# few distinct items, so that equal and near-equal sets (shared bands) are common
SETS = st.lists(st.frozensets(st.integers(0, 40), max_size=12), min_size=2, max_size=40)


def _low32(value: int) -> int:
    return value & 0xFFFFFFFF


def _one_by_one(sets: list[frozenset[int]], num_perm: int, seed: int) -> list[MinHash]:
    template = MinHash(num_perm=num_perm, seed=seed)
    out = []
    for items in sets:
        sketch = MinHash(
            num_perm=num_perm, hashfunc=_low32, permutations=template.permutations, scheme=template.scheme
        )
        sketch.update_batch(list(items))
        out.append(sketch)
    return out


def _bulk(sets: list[frozenset[int]], num_perm: int, seed: int) -> np.ndarray:
    lengths = np.array([len(s) for s in sets], dtype=np.int64)
    items = np.fromiter(itertools.chain.from_iterable(sets), dtype=np.uint64, count=int(lengths.sum()))
    return minhash.signatures(items & np.uint64(0xFFFFFFFF), lengths, minhash.permutations(num_perm, seed))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.frozensets(st.integers(0, 2**64 - 1), max_size=30), max_size=12),
    st.sampled_from([1, 16, 64]),
    st.integers(0, 2**16),
)
def test_signatures_are_datasketchs(sets: list[frozenset[int]], num_perm: int, seed: int) -> None:
    expected = [sketch.hashvalues.tolist() for sketch in _one_by_one(sets, num_perm, seed)]
    assert _bulk(sets, num_perm, seed).tolist() == expected


def test_signatures_span_chunks() -> None:
    # more items than one chunk, one set larger than a chunk on its own, empty sets between
    rng = np.random.default_rng(3)
    sizes = [0, 5000, 3, 0, 4095, 1, 9000, 0]
    sets = [frozenset(rng.integers(0, 2**63, size).tolist()) for size in sizes]
    expected = [sketch.hashvalues.tolist() for sketch in _one_by_one(sets, 64, 7)]
    assert _bulk(sets, 64, 7).tolist() == expected


@settings(max_examples=150, deadline=None)
@given(SETS, st.sampled_from([0.1, 0.3, 0.5]), st.sampled_from([16, 64]))
def test_candidate_pairs_are_what_each_lsh_query_finds(
    sets: list[frozenset[int]], threshold: float, num_perm: int
) -> None:
    sets = [s for s in sets if s]  # the scan sketches no empty set
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sketches = _one_by_one(sets, num_perm, 7)
    for i, sketch in enumerate(sketches):
        lsh.insert(i, sketch)
    expected = sorted(
        {(min(i, j), max(i, j)) for i, s in enumerate(sketches) for j in lsh.query(s) if i != j}
    )
    firsts, seconds = minhash.candidate_pairs(_bulk(sets, num_perm, 7), threshold)
    assert list(zip(firsts.tolist(), seconds.tolist(), strict=True)) == expected


@settings(max_examples=50, deadline=None)
@given(st.lists(st.frozensets(st.text(max_size=6), min_size=1, max_size=10), min_size=1, max_size=8))
def test_signatures_of_text_are_datasketchs_with_its_default_hash(sets: list[frozenset[str]]) -> None:
    # content families hash each shingle with sha1_hash32, datasketch's own default for affine32
    template = MinHash(num_perm=64, seed=1)
    expected = []
    for shingles in sets:
        sketch = MinHash(num_perm=64, permutations=template.permutations, scheme=template.scheme)
        sketch.update_batch([s.encode("utf-8", "surrogatepass") for s in shingles])
        expected.append(sketch.hashvalues.tolist())
    items = [sha1_hash32(s.encode("utf-8", "surrogatepass")) for shingles in sets for s in shingles]
    lengths = np.array([len(s) for s in sets], dtype=np.int64)
    found = minhash.signatures(np.array(items, dtype=np.uint32), lengths, minhash.permutations(64, seed=1))
    assert found.tolist() == expected
