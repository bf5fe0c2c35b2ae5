"""What the scan remembers between and within batches gives what working it out afresh gives:
template frames across batches, the fingerprint's dictionary encoding within one, embedding sums
as rows of one matrix."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.features import measure_columns
from distillguard.features.catalog import FRAME_CHARS, SIGNAL_NAMES, TEMPLATE_FRAME, template_frame
from distillguard.features.columns import Columns, col
from distillguard.features.reducers import Dispersion
from distillguard.signals.base import TEXT_ENCODINGS
from tests.features.feature_streams import random_calls
from tests.features.test_columnar import calls_table


def _batches(seed: int) -> list[pa.Table]:
    """Traffic in batches of 50 calls, the first two sent again later (prompts that repeat)."""
    calls = sorted(random_calls(seed, accounts=5, calls=250), key=lambda c: c[0].ts)
    parts = [calls[i : i + 50] for i in range(0, len(calls), 50)]
    return [calls_table(part) for part in [*parts, parts[0], parts[1]]]


def test_memoised_template_frames_equal_the_frames_worked_out_afresh() -> None:
    template_frame.cache_clear()
    kept = []
    for table in _batches(3):
        frames = measure_columns(table, SIGNAL_NAMES).column("template_frames#1").to_pylist()
        prompts = table.column("prompt").to_pylist()
        for frame, prompt in zip(frames, prompts, strict=True):
            if frame is not None:
                assert frame == template_frame.__wrapped__(prompt)
        kept.append(frames)
    assert template_frame.cache_info().hits > 0  # the batches sent again found their frames
    template_frame.cache_clear()
    for table, frames in zip(_batches(3), kept, strict=True):
        template_frame.cache_clear()  # nothing remembered: the same frames on the same calls
        assert measure_columns(table, SIGNAL_NAMES).column("template_frames#1").to_pylist() == frames


def test_frames_from_the_fingerprinting_are_the_frames_the_measure_works_out() -> None:
    """The scan hands `measure_columns` the frames `Template.fingerprints_and_frames` remembered
    with each fingerprint (`TEMPLATE_FRAME`): each row's is `template_frame` of its prompt, and the
    narrow table is the one the measure builds from the prompts itself, batch after batch (later
    batches partly from the fingerprint memo)."""
    from distillguard.signals.template import FRAME_MEMO_CHARS, Template

    assert FRAME_CHARS <= FRAME_MEMO_CHARS
    template = Template()
    for table in _batches(4):
        fingerprints, frames = template.fingerprints_and_frames(table, FRAME_CHARS)
        assert fingerprints.equals(template.fingerprints(table))
        assert frames.to_pylist() == [
            template_frame.__wrapped__(p) for p in table.column("prompt").to_pylist()
        ]
        given = measure_columns(table, SIGNAL_NAMES, known=((TEMPLATE_FRAME, frames),))
        assert given.equals(measure_columns(table, SIGNAL_NAMES))
    assert len(template._fingerprints) > 0


def test_a_text_column_is_encoded_once_a_batch_and_measures_read_the_same_columns(monkeypatch) -> None:
    table = _batches(5)[0]
    shared = measure_columns(table, SIGNAL_NAMES)
    columns = Columns(table)
    first, second = col("fingerprint"), col("fingerprint")
    assert columns.dictionary(first) is columns.dictionary(second)
    assert columns.dictionary(first).equals(pc.dictionary_encode(table.column("fingerprint").chunk(0)))

    fingerprint = table.column("fingerprint").chunk(0)
    encoded = []
    encode = pc.dictionary_encode

    def counting(array, *args, **kwargs):
        if isinstance(array, pa.Array) and array.equals(fingerprint):
            encoded.append(1)
        return encode(array, *args, **kwargs)

    monkeypatch.setattr(pc, "dictionary_encode", counting)
    TEXT_ENCODINGS.clear()  # the calls above left the batch's encodings in the shared memo
    measure_columns(table, SIGNAL_NAMES)
    assert len(encoded) == 1
    # each measure encoding its own copy, as before the cache
    monkeypatch.setattr(Columns, "dictionary", lambda self, expr: encode(expr.evaluate(self)))
    alone = measure_columns(table, SIGNAL_NAMES)
    assert alone.equals(shared)


def _running_rows(seg, vectors, earlier):
    """The definition, call by call: each group's vectors summed in order from +0.0, then its
    earlier sum added; ‖v‖² and 2 v·(sum before) + ‖v‖²."""
    sums, sq, cross, totals = {}, [], [], {}
    x = np.asarray(vectors, dtype=np.float64)
    for i, g in enumerate(seg.tolist()):
        running = sums.get(g, np.zeros(x.shape[1]))
        before = running + earlier[g] if g in earlier else running
        sq.append(np.einsum("i,i->", x[i], x[i]))
        sums[g] = running + x[i]
        totals[g] = before + x[i]
        cross.append(before)
    return sq, cross, totals


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(st.integers(0, 6), st.sampled_from([0.0, -0.0, 1.5, -2.25, 0.1, 1e-300])), max_size=30
        ),
        min_size=1,
        max_size=5,
    ),
    seed=st.integers(0, 1000),
)
def test_sums_in_a_matrix_give_the_rows_and_sums_of_the_dictionary_form(batches, seed) -> None:
    rng = np.random.default_rng(seed)
    dim = 8
    by_dict: dict[int, np.ndarray] = {}
    matrix, known = np.zeros((7, dim)), np.zeros(7, dtype=bool)
    for batch in batches:
        if not batch:
            continue
        seg = np.array([g for g, _ in batch], dtype=np.int64)
        # exact zeros of both signs, repeats and rounding: the order of additions shows
        vectors = (rng.standard_normal((len(batch), dim)) * batch[0][1]).astype(np.float32)
        vectors[:, 0] = [s for _, s in batch]
        sq, before, totals = _running_rows(seg, vectors, by_dict)
        rows, sums = Dispersion.rows(seg, vectors, by_dict)
        into = Dispersion.rows_into(seg, vectors, matrix, known)
        for got in (rows, into):
            assert got.sq.tobytes() == np.array(sq).tobytes()
            assert got.bucket.tobytes() == rows.bucket.tobytes()
        assert into.cross.tobytes() == rows.cross.tobytes()
        for i in range(len(seg)):  # the sum each call came after is the definition's, to the bit
            x = np.asarray(vectors[i], dtype=np.float64)
            assert rows.cross[i] == 2.0 * np.einsum("i,i->", x, before[i]) + sq[i] or np.isclose(
                rows.cross[i], 2.0 * np.einsum("i,i->", x, before[i]) + sq[i]
            )
        assert sorted(sums) == sorted(totals)
        for g, total in totals.items():
            assert sums[g].tobytes() == total.tobytes() == matrix[g].tobytes()
        by_dict.update((g, v.copy()) for g, v in sums.items())
        assert np.flatnonzero(known).tolist() == sorted(by_dict)


def _running_sums_by_rank(x, starts, sizes, slot, base):
    """The definition written over whole arrays (the code before the compiled loop): one NumPy
    step per rank, all groups at once, then the earlier sums added, then each group's sum."""
    rank = np.arange(len(x)) - np.repeat(starts, sizes)
    before = np.zeros_like(x)
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max(initial=0)) + 2)).tolist()
    for lo, hi in itertools.pairwise(bounds[1:]):
        at = by_rank[lo:hi]
        before[at] = before[at - 1] + x[at - 1]
    of_row = np.repeat(slot, sizes)
    rows_with = np.flatnonzero(of_row >= 0)
    before[rows_with] += base[of_row[rows_with]]
    last = np.append(starts[1:], len(x)) - 1
    return before, before[last] + x[last]


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=8),
    with_base=st.lists(st.booleans(), min_size=8, max_size=8),
    scale=st.sampled_from([0.0, -0.0, 1.0, 1e-300, 1e300, 3.0]),
    seed=st.integers(0, 1000),
)
def test_compiled_running_sums_are_the_rank_by_rank_sums(sizes, with_base, scale, seed) -> None:
    from distillguard.features.reducers import _running_sums

    rng = np.random.default_rng(seed)
    dim = 5
    sizes_ = np.array(sizes, dtype=np.int64)
    starts = np.cumsum(sizes_) - sizes_
    # exact zeros of both signs, huge and tiny values, rounding: the order of additions shows
    x = rng.standard_normal((int(sizes_.sum()), dim)) * scale
    x[:, 0] = rng.choice([0.0, -0.0, 1e16, 1.0, -1e16], size=len(x))
    slot = np.full(len(sizes), -1, dtype=np.int64)
    chosen = np.flatnonzero(np.array(with_base[: len(sizes)], dtype=bool))
    slot[chosen] = np.arange(len(chosen))
    base = rng.standard_normal((len(chosen), dim)) * scale
    if len(base):
        base[:, 1] = -0.0
    before, ends = np.zeros_like(x), np.empty((len(sizes), dim))
    _running_sums()(x, starts, sizes_, slot, base, before, ends)
    want_before, want_ends = _running_sums_by_rank(x, starts, sizes_, slot, base)
    assert before.tobytes() == want_before.tobytes()
    assert ends.tobytes() == want_ends.tobytes()
