"""Column expressions: how an account feature reads a call, written once over the call store's schema.

An expression is evaluated two ways that must agree: on one call (`compile_row`, the gateway's
streaming path, one call at a time) and on an Arrow record batch (`column`, the scan's bulk path).
The columns are those of `CallView` / `VIEW_SCHEMA` plus what the per-call stage derives:
``fingerprint`` (the template fingerprint), ``signal.<name>`` (a signal's score, null when it
abstained) and ``embedding`` (a prompt vector, only on sampled calls).

Nulls: a value that is null reads as the `CallView` default of its field (``status`` 200, ``stream``
False, ...), exactly as `views_of_batch` would build the call; a predicate over a null is False.

>>> from datetime import UTC, datetime
>>> from distillguard.events.call_view import CallView
>>> call = CallView(event_id="e", ts=datetime(2026, 2, 12, tzinfo=UTC), account_id="a", prompt="abc", system_prompt="sy")
>>> chars = length(col("prompt")) + length(col("system_prompt"))
>>> chars.compile_row()(CallRow(call)), (col("temperature") == 0.0).compile_row()(CallRow(call))
(5, False)
>>> import pyarrow as pa
>>> batch = pa.table({"prompt": ["abc", None], "system_prompt": ["sy", ""], "temperature": [0.0, None]})
>>> chars.column(batch).to_pylist(), (col("temperature") == 0.0).column(batch).to_pylist()
([5, 0], [True, False])
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.events.call_view import CallView
from distillguard.features.reducers import hash_int, hash_ints, hash_text, text_digest
from distillguard.signals.base import TEXT_ENCODINGS, distinct_codes

SIGNAL_PREFIX = "signal."
FINGERPRINT = "fingerprint"
EMBEDDING = "embedding"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# CallView fields and the value a null reads as (None: the field is optional)
_VIEW_DEFAULTS: dict[str, Any] = {
    f.name: (None if f.default is msgspec.NODEFAULT else f.default) for f in msgspec.structs.fields(CallView)
}

Table: TypeAlias = pa.Table | pa.RecordBatch


class CallRow:
    """One call and what the per-call stage derived from it, as the streaming path reads it."""

    __slots__ = ("call", "embedding", "fingerprint", "memo", "signals")

    def __init__(
        self,
        call: CallView,
        signals: Mapping[str, float | None] | None = None,
        fingerprint: str | None = None,
        embedding: np.ndarray | None = None,
    ) -> None:
        self.call = call
        self.signals = signals if signals is not None else {}
        self.fingerprint = fingerprint
        self.embedding = embedding
        self.memo: dict[int, Any] = {}  # values of `shared` expressions for this call


def epoch_ms(ts: datetime) -> int:
    """Milliseconds since the epoch, exactly (the store keeps ms; floats would round)."""
    return (ts - _EPOCH) // _MS


def _array(batch: Table, name: str) -> pa.Array:
    if name not in batch.schema.names:
        raise KeyError(f"the batch has no column {name!r} (columns: {', '.join(batch.schema.names)})")
    return whole(batch.column(name))


def whole(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as one array: a table's single chunk as it is (combining would copy it, and a
    batch's text columns are megabytes), several chunks combined."""
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _numpy(array: pa.Array, dtype: Any) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=dtype)


class Columns:
    """A record batch and the expressions already evaluated over it."""

    __slots__ = ("batch", "encoded", "memo")

    def __init__(self, batch: Table) -> None:
        self.batch = batch
        self.memo: dict[int, pa.Array] = {}
        self.encoded: dict[object, pa.DictionaryArray] = {}

    def dictionary(self, expr: Expr) -> pa.DictionaryArray:
        """``pc.dictionary_encode`` of a text expression over the batch, once a batch: several
        measures read the template fingerprint (its heavy hitters, its distinct count, the template
        frames' keys), each through its own ``col`` object, so a column is known by its name."""
        key: object = ("col", expr.name) if isinstance(expr, Col) else id(expr)
        found = self.encoded.get(key)
        if found is None:
            found = self.encoded[key] = TEXT_ENCODINGS.of(expr.evaluate(self))
        return found


class Expr:
    """A column expression: ``compile_row()`` gives a function of a `CallRow`, ``column(batch)`` an
    Arrow array of the batch's rows."""

    def compile_row(self) -> Callable[[CallRow], Any]:
        raise NotImplementedError

    def column(self, batch: Table | Columns) -> pa.Array:
        """The expression over every row of ``batch``."""
        return self.evaluate(batch if isinstance(batch, Columns) else Columns(batch))

    def evaluate(self, columns: Columns) -> pa.Array:
        # an expression shared by several measures (a length, "answered") is computed once a batch
        found = columns.memo.get(id(self))
        if found is None:
            found = columns.memo[id(self)] = self._evaluate(columns)
        return found

    def _evaluate(self, columns: Columns) -> pa.Array:
        raise NotImplementedError

    def columns(self) -> set[str]:
        """The columns the expression reads."""
        raise NotImplementedError

    # -- building ---------------------------------------------------------------------------

    def __add__(self, other: Expr) -> Expr:
        return Add(self, other)

    def __truediv__(self, divisor: float) -> Expr:
        return Div(self, divisor)

    def __floordiv__(self, divisor: int) -> Expr:
        return FloorDiv(self, divisor)

    def __mod__(self, divisor: int) -> Expr:
        return Mod(self, divisor)

    def __ge__(self, value: float) -> Expr:
        return Compare(self, ">=", value)

    def __gt__(self, value: float) -> Expr:
        return Compare(self, ">", value)

    def __le__(self, value: float) -> Expr:
        return Compare(self, "<=", value)

    def __lt__(self, value: float) -> Expr:
        return Compare(self, "<", value)

    def __eq__(self, value: object) -> Expr:  # type: ignore[override]
        return Compare(self, "==", value)

    __hash__ = object.__hash__

    def __and__(self, other: Expr) -> Expr:
        return All((self, other))

    def shared(self) -> Expr:
        """The same expression, computed once per call however many measures read it."""
        return Shared(self)

    def is_set(self) -> Expr:
        """Not null (an empty string is set)."""
        return IsSet(self, nonempty=False)

    def nonempty(self) -> Expr:
        """Not null and not the empty string (how the window has always tested text fields)."""
        return IsSet(self, nonempty=True)


class Shared(Expr):
    """An expression several measures read (the call's time, its prompt length): the streaming
    path computes it once per call; the bulk path computes every expression once per batch anyway."""

    def __init__(self, inner: Expr) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return repr(self.inner)

    def columns(self) -> set[str]:
        return self.inner.columns()

    def compile_row(self) -> Callable[[CallRow], Any]:
        inner, key = self.inner.compile_row(), id(self)

        def once(row: CallRow) -> Any:
            memo = row.memo
            if key in memo:
                return memo[key]
            value = memo[key] = inner(row)
            return value

        return once

    def _evaluate(self, columns: Columns) -> pa.Array:
        return self.inner.evaluate(columns)


class Col(Expr):
    """One column by name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.default = _VIEW_DEFAULTS.get(name)

    def __repr__(self) -> str:
        return f"col({self.name!r})"

    def columns(self) -> set[str]:
        return {self.name}

    def compile_row(self) -> Callable[[CallRow], Any]:
        name = self.name
        if name.startswith(SIGNAL_PREFIX):
            signal = name[len(SIGNAL_PREFIX) :]
            return lambda row: row.signals.get(signal)
        if name in (FINGERPRINT, EMBEDDING):
            return operator.attrgetter(name)
        if name not in _VIEW_DEFAULTS:
            raise KeyError(f"no call column {name!r}")
        return operator.attrgetter(f"call.{name}")

    def _evaluate(self, columns: Columns) -> pa.Array:
        array = _array(columns.batch, self.name)
        if self.default is not None and array.null_count:
            array = pc.fill_null(array, self.default)
        if pa.types.is_timestamp(array.type) and array.type.unit != "ms":
            array = pc.cast(array, pa.timestamp("ms", tz=array.type.tz), safe=False)
        return array


def col(name: str) -> Col:
    return Col(name)


_TS = Col("ts")


class EpochMs(Expr):
    """The call's time in milliseconds since the epoch (int64)."""

    def __repr__(self) -> str:
        return "epoch_ms(ts)"

    def columns(self) -> set[str]:
        return {"ts"}

    def compile_row(self) -> Callable[[CallRow], Any]:
        return lambda row: epoch_ms(row.call.ts)

    def _evaluate(self, columns: Columns) -> pa.Array:
        return pc.cast(_TS.evaluate(columns), pa.int64())


class Length(Expr):
    """Length of a text in characters (code points); null reads as 0."""

    def __init__(self, inner: Expr) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"length({self.inner!r})"

    def columns(self) -> set[str]:
        return self.inner.columns()

    def compile_row(self) -> Callable[[CallRow], Any]:
        inner = self.inner.compile_row()

        def length_of(row: CallRow) -> int:
            value = inner(row)
            return len(value) if value else 0

        return length_of

    def _evaluate(self, columns: Columns) -> pa.Array:
        return pc.fill_null(pc.cast(pc.utf8_length(self.inner.evaluate(columns)), pa.int64()), 0)


def length(inner: Expr) -> Expr:
    return Length(inner)


class Add(Expr):
    def __init__(self, left: Expr, right: Expr) -> None:
        self.left, self.right = left, right

    def __repr__(self) -> str:
        return f"({self.left!r} + {self.right!r})"

    def columns(self) -> set[str]:
        return self.left.columns() | self.right.columns()

    def compile_row(self) -> Callable[[CallRow], Any]:
        left, right = self.left.compile_row(), self.right.compile_row()
        return lambda row: left(row) + right(row)

    def _evaluate(self, columns: Columns) -> pa.Array:
        return pc.add(self.left.evaluate(columns), self.right.evaluate(columns))


class Div(Expr):
    """Division by a constant, as floats."""

    def __init__(self, inner: Expr, divisor: float) -> None:
        self.inner, self.divisor = inner, float(divisor)

    def __repr__(self) -> str:
        return f"({self.inner!r} / {self.divisor})"

    def columns(self) -> set[str]:
        return self.inner.columns()

    def compile_row(self) -> Callable[[CallRow], Any]:
        inner, divisor = self.inner.compile_row(), self.divisor
        return lambda row: inner(row) / divisor

    def _evaluate(self, columns: Columns) -> pa.Array:
        return pc.divide(pc.cast(self.inner.evaluate(columns), pa.float64()), self.divisor)


class FloorDiv(Expr):
    """Integer division rounding down (time buckets of epoch milliseconds)."""

    def __init__(self, inner: Expr, divisor: int) -> None:
        self.inner, self.divisor = inner, divisor

    def __repr__(self) -> str:
        return f"({self.inner!r} // {self.divisor})"

    def columns(self) -> set[str]:
        return self.inner.columns()

    def compile_row(self) -> Callable[[CallRow], Any]:
        inner, divisor = self.inner.compile_row(), self.divisor
        return lambda row: inner(row) // divisor

    def _evaluate(self, columns: Columns) -> pa.Array:
        # numpy floors like Python; Arrow's integer divide truncates towards zero
        return pa.array(np.floor_divide(_numpy(self.inner.evaluate(columns), np.int64), self.divisor))


class Mod(Expr):
    def __init__(self, inner: Expr, divisor: int) -> None:
        self.inner, self.divisor = inner, divisor

    def __repr__(self) -> str:
        return f"({self.inner!r} % {self.divisor})"

    def columns(self) -> set[str]:
        return self.inner.columns()

    def compile_row(self) -> Callable[[CallRow], Any]:
        inner, divisor = self.inner.compile_row(), self.divisor
        return lambda row: inner(row) % divisor

    def _evaluate(self, columns: Columns) -> pa.Array:
        return pa.array(np.mod(_numpy(self.inner.evaluate(columns), np.int64), self.divisor))


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}
_ARROW_OPERATORS = {
    ">=": pc.greater_equal,
    ">": pc.greater,
    "<=": pc.less_equal,
    "<": pc.less,
    "==": pc.equal,
}


class Compare(Expr):
    """A comparison with a constant; False where the value is null."""

    def __init__(self, inner: Expr, op: str, value: Any) -> None:
        self.inner, self.op, self.value = inner, op, value

    def __repr__(self) -> str:
        return f"({self.inner!r} {self.op} {self.value!r})"

    def columns(self) -> set[str]:
        return self.inner.columns()

    def compile_row(self) -> Callable[[CallRow], Any]:
        inner, compare, value = self.inner.compile_row(), _OPERATORS[self.op], self.value

        def compared(row: CallRow) -> bool:
            v = inner(row)
            return v is not None and compare(v, value)

        return compared

    def _evaluate(self, columns: Columns) -> pa.Array:
        return pc.fill_null(_ARROW_OPERATORS[self.op](self.inner.evaluate(columns), self.value), False)


class IsSet(Expr):
    def __init__(self, inner: Expr, *, nonempty: bool) -> None:
        self.inner, self.nonempty_only = inner, nonempty

    def __repr__(self) -> str:
        return f"{self.inner!r}.{'nonempty' if self.nonempty_only else 'is_set'}()"

    def columns(self) -> set[str]:
        return self.inner.columns()

    def compile_row(self) -> Callable[[CallRow], Any]:
        inner = self.inner.compile_row()
        if self.nonempty_only:
            return lambda row: bool(inner(row))
        return lambda row: inner(row) is not None

    def _evaluate(self, columns: Columns) -> pa.Array:
        array = self.inner.evaluate(columns)
        valid = pc.is_valid(array)
        if self.nonempty_only and (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            return pc.and_(valid, pc.fill_null(pc.not_equal(array, ""), False))
        return valid


class Truthy(Expr):
    """A boolean column as a predicate (null reads as False)."""

    def __init__(self, inner: Expr) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"{self.inner!r}.true()"

    def columns(self) -> set[str]:
        return self.inner.columns()

    def compile_row(self) -> Callable[[CallRow], Any]:
        inner = self.inner.compile_row()
        return lambda row: bool(inner(row))

    def _evaluate(self, columns: Columns) -> pa.Array:
        return pc.fill_null(pc.cast(self.inner.evaluate(columns), pa.bool_()), False)


def true(inner: Expr) -> Expr:
    return Truthy(inner)


class All(Expr):
    def __init__(self, parts: Sequence[Expr]) -> None:
        self.parts = tuple(parts)

    def __repr__(self) -> str:
        return " & ".join(map(repr, self.parts))

    def columns(self) -> set[str]:
        return set().union(*(p.columns() for p in self.parts))

    def compile_row(self) -> Callable[[CallRow], Any]:
        parts = [p.compile_row() for p in self.parts]
        return lambda row: all(part(row) for part in parts)

    def _evaluate(self, columns: Columns) -> pa.Array:
        result = self.parts[0].evaluate(columns)
        for part in self.parts[1:]:
            result = pc.and_(result, part.evaluate(columns))
        return result


class Any_(Expr):
    def __init__(self, parts: Sequence[Expr]) -> None:
        self.parts = tuple(parts)

    def __repr__(self) -> str:
        return "any(" + ", ".join(map(repr, self.parts)) + ")"

    def columns(self) -> set[str]:
        return set().union(*(p.columns() for p in self.parts))

    def compile_row(self) -> Callable[[CallRow], Any]:
        parts = [p.compile_row() for p in self.parts]
        return lambda row: any(part(row) for part in parts)

    def _evaluate(self, columns: Columns) -> pa.Array:
        if not self.parts:
            return pa.array(np.zeros(len(columns.batch), dtype=bool))
        result = self.parts[0].evaluate(columns)
        for part in self.parts[1:]:
            result = pc.or_(result, part.evaluate(columns))
        return result


def any_of(parts: Sequence[Expr]) -> Expr:
    return Any_(parts)


class Apply(Expr):
    """A Python function of one or more columns (a readable key, a hash). The bulk path calls it once
    per distinct tuple of arguments in the batch; the function must be pure. ``cached`` keeps a
    bounded memo on the streaming path too (identifiers repeat; prompts mostly do not)."""

    def __init__(
        self, name: str, fn: Callable[..., Any], args: Sequence[Expr], out: pa.DataType, *, cached: bool
    ) -> None:
        self.name, self.fn, self.args, self.out, self.cached = name, fn, tuple(args), out, cached

    def __repr__(self) -> str:
        return f"{self.name}(" + ", ".join(map(repr, self.args)) + ")"

    def columns(self) -> set[str]:
        return set().union(*(a.columns() for a in self.args))

    def compile_row(self) -> Callable[[CallRow], Any]:
        fn = functools.lru_cache(maxsize=1 << 14)(self.fn) if self.cached else self.fn
        args = [a.compile_row() for a in self.args]
        if len(args) == 1:
            (only,) = args
            return lambda row: fn(only(row))
        return lambda row: fn(*(arg(row) for arg in args))

    def _evaluate(self, columns: Columns) -> pa.Array:
        arrays = [a.evaluate(columns) for a in self.args]
        if not len(columns.batch):
            return pa.array([], type=self.out)
        codes, first = distinct_codes(arrays)
        values = [a.take(pa.array(first)).to_pylist() for a in arrays]
        results = pa.array([self.fn(*args) for args in zip(*values, strict=True)], type=self.out)
        return results.take(pa.array(codes))


def apply(
    name: str, fn: Callable[..., Any], *args: Expr, out: pa.DataType | None = None, cached: bool = True
) -> Expr:
    """``fn`` of the columns ``args`` (a string column unless ``out`` says otherwise)."""
    return Apply(name, fn, args, out if out is not None else pa.string(), cached=cached)


class HashInt(Expr):
    """`hash_int` of an integer column (uint64): time buckets and networks spread over 64 bits."""

    def __init__(self, inner: Expr) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"hash_int({self.inner!r})"

    def columns(self) -> set[str]:
        return self.inner.columns()

    def compile_row(self) -> Callable[[CallRow], Any]:
        inner = self.inner.compile_row()
        last = [None, 0]  # calls of one burst share their hour, day and bucket: hash each once

        def hashed(row: CallRow) -> int | None:
            value = inner(row)
            if value is None:
                return None
            if value != last[0]:
                last[0], last[1] = value, hash_int(value)
            return last[1]

        return hashed

    def _evaluate(self, columns: Columns) -> pa.Array:
        array = self.inner.evaluate(columns)
        valid = _numpy(pc.is_valid(array), bool)
        hashed = hash_ints(_numpy(pc.fill_null(array, 0), np.int64))
        return pa.array(hashed, mask=~valid)


def hashed_int(inner: Expr) -> Expr:
    return HashInt(inner)


def _hash_or_none(value: str | None) -> int | None:
    return None if value is None else hash_text(value)


class HashText(Apply):
    """`hash_text` of a text column (uint64, null where the text is null). The streaming path is
    `Apply`'s; the bulk path hashes each distinct text of the batch once, straight from its UTF-8
    bytes in the Arrow buffers (`utf8_hashes`), with no Python string made."""

    def __init__(self, inner: Expr, *, cached: bool) -> None:
        super().__init__("hash_text", _hash_or_none, (inner,), pa.uint64(), cached=cached)

    def _evaluate(self, columns: Columns) -> pa.Array:
        inner = self.args[0]
        array = inner.evaluate(columns)
        if array.null_count == len(array):
            return hash_text_array(array)
        return hash_text_array(array, columns.dictionary(inner))


def hash_text_array(array: pa.Array, encoded: pa.DictionaryArray | None = None) -> pa.Array:
    """`hash_text` of every value of a string array (uint64), null where it is null.

    >>> hash_text_array(pa.array(["a", None, "a"])).to_pylist() == [hash_text("a"), None, hash_text("a")]
    True
    """
    if array.null_count == len(array):
        return pa.nulls(len(array), pa.uint64())
    if encoded is None:  # else ``pc.dictionary_encode(array)``, shared with other measures
        encoded = pc.dictionary_encode(array)
    hashes = utf8_hashes(encoded.dictionary)
    indices = encoded.indices
    if not indices.null_count:
        return pa.array(hashes[_numpy(indices, np.int64)])
    valid = _numpy(pc.is_valid(indices), bool)
    return pa.array(hashes[_numpy(indices.fill_null(0), np.int64)], mask=~valid)


def utf8_hashes(strings: pa.Array) -> np.ndarray:
    """`hash_text` of each value of a string array without nulls (uint64), read from its buffers:
    the UTF-8 bytes Arrow holds are what ``str.encode`` gives (Arrow strings are valid UTF-8, so
    ``surrogatepass`` never applies)."""
    kind = strings.type
    if strings.null_count or not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return np.fromiter((hash_text(v) for v in strings.to_pylist()), dtype=np.uint64, count=len(strings))
    n = len(strings)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    _, offsets_buffer, data = strings.buffers()
    width = np.int64 if pa.types.is_large_string(kind) else np.int32
    offsets = np.frombuffer(
        offsets_buffer, dtype=width, count=n + 1, offset=strings.offset * width().itemsize
    )
    view = memoryview(data if data is not None else b"")
    digests = b"".join(
        [text_digest(view[lo:hi]) for lo, hi in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]
    )
    # hash_text reads its 8 digest bytes as a little-endian integer
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def hashed_text(inner: Expr, *, cached: bool = True) -> Expr:
    """`hash_text` of a text column (uint64)."""
    return HashText(inner, cached=cached)


def first_chars(inner: Expr, n: int) -> Expr:
    """The first ``n`` characters of a text."""

    def head(value: str | None) -> str | None:
        return None if value is None else value[:n]

    return apply(f"first_{n}_chars", head, inner, cached=False)
