"""The shape of a signal: a per-call detector whose identity is data and whose one method is pure.

One score convention everywhere: a float in [0, 1], or ``None`` (abstain: the signal has nothing
to say about this call, e.g. an output signal on a call without a response).
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar, overload

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.events.call_view import CallView, views_of_batch

_R = TypeVar("_R")
_V = TypeVar("_V")

# Texts longer than this are worked out afresh each time by the text memos: a memo keyed by whole
# texts would otherwise hold its capacity times the longest prompts (long-context prompts of 100 KB
# and more), in every scan worker and in the gateway, which runs for weeks.
MEMO_TEXT_CHARS = 4096


class TextMemo(Generic[_R]):
    """``fn(text)`` remembered for up to ``maxsize`` texts of at most ``max_chars`` characters, least
    recently used out; a longer text is worked out afresh. Only for functions pure in their text.

    >>> calls = []
    >>> memo = TextMemo(lambda text: calls.append(text) or len(text), maxsize=2, max_chars=3)
    >>> [memo("ab"), memo("ab"), memo("abcd"), memo("abcd")], calls
    ([2, 2, 4, 4], ['ab', 'abcd', 'abcd'])
    """

    def __init__(self, fn: Callable[[str], _R], *, maxsize: int, max_chars: int = MEMO_TEXT_CHARS) -> None:
        self.__wrapped__ = fn
        self.max_chars = max_chars
        self._remembered = functools.lru_cache(maxsize=maxsize)(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, text: str) -> _R:
        if len(text) > self.max_chars:
            return self.__wrapped__(text)
        return self._remembered(text)

    def cache_clear(self) -> None:
        self._remembered.cache_clear()

    def cache_info(self) -> Any:
        return self._remembered.cache_info()


def score_down(value: float, digits: int = 4) -> float:
    """A score cut (not rounded) to `digits` decimals: a model score just below the firing
    threshold must not be reported at it (0.49999 -> 0.4999, never 0.5)."""
    scale = 10**digits
    return math.floor(value * scale + 1e-9) / scale


def scores_down(values: np.ndarray, digits: int = 4) -> list[float]:
    """`score_down` of each value, in NumPy: the same IEEE operations (a product, a sum, a floor
    that is an integer below 2**53, a quotient of two exact numbers), so the same floats."""
    scale = 10**digits
    return (np.floor(np.asarray(values, dtype=np.float64) * scale + 1e-9) / scale).tolist()


class SignalResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A score with the evidence a human needs: what matched and every adjustment on the way."""

    signal: str
    score: float
    detail: str
    matched: list[str] = []
    adjustments: list[str] = []
    # Sub-scores in [0, 1] when a signal sees several distinct things (e.g. cot_extraction's
    # "step_by_step" vs "reveal_hidden"), so the account stage can tell them apart.
    parts: dict[str, float] = {}

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"{self.signal}: score {self.score} outside [0, 1]")


class Signal:
    """Base class. Subclasses set the class-level identity and implement `analyze`.

    Models load lazily (on first `analyze`), never in `__init__`, so building the signal set is
    cheap and a CLI command that does not need a model never pays for it.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    known_false_positives: ClassVar[tuple[str, ...]] = ()
    # "input" reads the request, "output" reads the response, "both" reads either.
    reads: ClassVar[str] = "input"
    # True when the signal is cheap enough (tens of microseconds) for the gateway's request path.
    inline: ClassVar[bool] = False
    # The call columns (VIEW_SCHEMA names) the result depends on: calls that agree on them get the
    # same result, so a batch is analysed once per distinct combination. Empty: every column.
    reads_columns: ClassVar[tuple[str, ...]] = ()
    # Distinct inputs (values of `reads_columns`) whose results the signal remembers across batches
    # (0: none). Templated traffic repeats prompts across days, not only within a batch.
    memo_entries: ClassVar[int] = 0

    def analyze(self, call: CallView) -> SignalResult | None:
        raise NotImplementedError

    def analyze_many(self, calls: Sequence[CallView]) -> list[SignalResult | None]:
        """Batch form; subclasses with vectorised models override it."""
        return [self.analyze(call) for call in calls]

    def analyze_batch(self, batch: pa.RecordBatch | pa.Table) -> list[SignalResult | None]:
        """Batch form over an Arrow record batch of the call store (columns as in VIEW_SCHEMA)."""
        return self.analyze_many(views_of_batch(batch))

    def analyze_columns(
        self, batch: pa.RecordBatch | pa.Table
    ) -> tuple[Sequence[SignalResult | None], np.ndarray]:
        """The results of a record batch as (distinct results, for each row the index of its result):
        each distinct combination of `reads_columns` is analysed once. Templated and harvesting
        traffic repeats its prompts, and parameters repeat far more."""
        calls = distinct_views(batch, self.reads_columns)
        return self.analyze_distinct(calls), calls.of_row

    def forget(self) -> None:
        """Drop the remembered results (a batch reader that has read its last batch)."""
        memo = getattr(self, "_results_memo", None)
        if memo is not None:
            memo.clear()

    def analyze_distinct(self, calls: DistinctCalls) -> list[SignalResult | None]:
        """The result of each distinct call, remembered for `memo_entries` inputs (pure in them)."""
        if not self.memo_entries or calls.keys is None:
            return self.analyze_many(calls.views)
        return self._recall(calls.keys, lambda missing: self.analyze_many([calls.views[i] for i in missing]))

    def _recall(
        self, keys: Sequence[tuple[object, ...]], compute: Callable[[list[int]], list[_V]]
    ) -> list[_V]:
        """For each key its value: from the memo when remembered, else from ``compute`` (given the
        indices of the keys not remembered, it returns their values in that order), which the memo
        then keeps for the last `memo_entries` keys."""
        memo: OrderedDict[tuple[object, ...], Any] | None = getattr(self, "_results_memo", None)
        if memo is None:
            memo = OrderedDict()
            self._results_memo = memo
        values: list[Any] = [None] * len(keys)
        missing = []
        get, to_end = memo.get, memo.move_to_end
        for i, key in enumerate(keys):
            found = get(key, _FORGOTTEN)
            if found is _FORGOTTEN:
                missing.append(i)
            else:
                values[i] = found
                to_end(key)
        if missing:
            for i, value in zip(missing, compute(missing), strict=True):
                values[i] = memo[keys[i]] = value
            # least recently used first out: measured on the default preset's prompts, this keeps
            # all but 1% of the repeats a memo of unbounded size would catch (clearing when full, 18%)
            while len(memo) > self.memo_entries:
                memo.popitem(last=False)
        return values


_FORGOTTEN = object()  # what a memo lookup gives for a key it does not hold (None is a result)


class LazyResults(Sequence["SignalResult | None"]):
    """The results of a batch's distinct calls with every score known up front and each full
    `SignalResult` (its evidence text) built only when read. A scan reads every score but the
    whole result of a few calls only (each account's strongest), and some evidence is dear to build
    (reasoning_leak's echo check). Reading item i gives what `analyze_many` gives for call i."""

    def __init__(
        self,
        scores: np.ndarray,
        build: Callable[[int], SignalResult | None],
        parts: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.scores = scores  # float64, NaN where the signal abstains
        # some of `SignalResult.parts` known up front (float64, NaN where the signal abstains): a
        # part missing from a result (`parts.get(name, 0.0)`) is 0.0 here
        self.parts = parts or {}
        self._build = build
        self._built: dict[int, SignalResult | None] = {}

    def __len__(self) -> int:
        return len(self.scores)

    @overload
    def __getitem__(self, i: int) -> SignalResult | None: ...

    @overload
    def __getitem__(self, i: slice) -> list[SignalResult | None]: ...

    def __getitem__(self, i: int | slice) -> SignalResult | list[SignalResult | None] | None:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        if i not in self._built:
            self._built[i] = self._build(i)
        return self._built[i]


class DistinctCalls:
    """The distinct calls of a batch as a signal reads them: one view per distinct combination of
    the columns (``keys``: those values), and for each row the index of its view. ``columns``
    holds each read column's values per distinct call, and ``views`` are built from them only when
    first read (a signal that reads two or three columns needs no full `CallView` per call).
    ``derived`` holds what signals reading the same distinct calls derive alike (the prompt
    classifiers' texts), computed by the first of them and read by the others."""

    __slots__ = ("_views", "columns", "derived", "keys", "of_row")

    def __init__(
        self,
        views: list[CallView] | None,
        of_row: np.ndarray,
        keys: list[tuple[object, ...]] | None,
        columns: dict[str, list[Any]] | None = None,
    ) -> None:
        if views is None and columns is None:
            raise ValueError("DistinctCalls needs its views or its columns")
        self._views = views
        self.of_row = of_row
        self.keys = keys
        self.columns = columns if columns is not None else {}
        self.derived: dict[object, Any] = {}

    def __len__(self) -> int:
        if self._views is not None:
            return len(self._views)
        return len(self.keys) if self.keys is not None else 0

    @property
    def views(self) -> list[CallView]:
        if self._views is None:
            taken = self.columns
            self._views = [
                CallView(event_id="", ts=_EPOCH, account_id="", **dict(zip(taken, values, strict=True)))
                for values in zip(*taken.values(), strict=True)
            ]
        return self._views


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TextEncodings:
    """``pc.dictionary_encode`` of the last few text arrays, each worked out once. A scan batch's
    prompt column is encoded by the prompt classifiers, the template signal and three measures:
    hashing every prompt again each time cost ~1.6 CPU s per pass on the default preset.

    An array is known by its buffers' addresses, offset, length and type: Arrow buffers are
    immutable, and each entry holds its array, so no buffer it names can be freed and its address
    reused while the entry lives. `batch.column(name)` gives a new Python object for the same
    buffers on every call, which is why the buffers and not the object are the key.

    >>> encodings = TextEncodings()
    >>> column = pa.array(["a", "b", "a"])
    >>> encodings.of(column) is encodings.of(pa.RecordBatch.from_arrays([column], ["x"]).column(0))
    True
    """

    KEEP = 8  # a batch's text columns (prompt, system prompt, answer, reasoning) and a few derived

    def __init__(self) -> None:
        self._held: OrderedDict[tuple[object, ...], tuple[pa.Array, pa.DictionaryArray]] = OrderedDict()

    def of(self, array: pa.Array, *, nulls: str = "mask") -> pa.DictionaryArray:
        """The encoding of a text array; ``nulls``: pyarrow's ``null_encoding`` ("mask" or
        "encode", which give the same encoding for an array without nulls)."""
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            return pc.dictionary_encode(array, null_encoding=nulls)
        key = (
            nulls if array.null_count else "mask",
            str(array.type),
            array.offset,
            len(array),
            *(buffer.address if buffer is not None else 0 for buffer in array.buffers()),
        )
        held = self._held.get(key)
        if held is not None:
            self._held.move_to_end(key)
            return held[1]
        encoded = pc.dictionary_encode(array, null_encoding=nulls)
        self._held[key] = (array, encoded)
        while len(self._held) > self.KEEP:
            self._held.popitem(last=False)
        return encoded

    def clear(self) -> None:
        """Let go of the arrays held (a scan batch done: its columns need not outlive it)."""
        self._held.clear()


# the encodings every batch reader of this process shares (signals and measures over one batch)
TEXT_ENCODINGS = TextEncodings()


def distinct_codes(arrays: Sequence[pa.Array | pa.ChunkedArray]) -> tuple[np.ndarray, np.ndarray]:
    """One code per row for each distinct tuple of values across ``arrays`` (null is a value of its
    own), and the first row holding each code.

    >>> codes, first = distinct_codes([pa.array(["a", "b", "a", None]), pa.array([1, 1, 1, 1])])
    >>> codes.tolist(), first.tolist()
    ([0, 1, 0, 2], [0, 1, 3])
    """
    rows = len(arrays[0]) if arrays else 0
    combined = np.zeros(rows, dtype=np.int64)
    for array in arrays:
        if isinstance(array, pa.ChunkedArray):  # one chunk (a table's column) as it is: no copy
            array = array.chunk(0) if array.num_chunks == 1 else array.combine_chunks()
        encoded = TEXT_ENCODINGS.of(array, nulls="encode")
        part = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        combined = combined * (len(encoded.dictionary) + 1) + part
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    return inverse.astype(np.int64).reshape(-1), first


def distinct_views(batch: pa.RecordBatch | pa.Table, columns: Sequence[str]) -> DistinctCalls:
    """One view per distinct combination of ``columns`` in the batch (only those fields filled in),
    and for each row the index of its view. With no columns: every row's full view."""
    if not columns:
        return DistinctCalls(views_of_batch(batch), np.arange(len(batch)), None)
    missing = [name for name in columns if name not in batch.schema.names]
    if missing:
        raise KeyError(f"the batch lacks the columns {missing} a signal reads")
    codes, first = distinct_codes([batch.column(name) for name in columns])
    taken = {name: batch.column(name).take(pa.array(first)).to_pylist() for name in columns}
    return DistinctCalls(None, codes, list(zip(*taken.values(), strict=True)), taken)
