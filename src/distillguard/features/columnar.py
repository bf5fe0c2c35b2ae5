"""The bulk form of the catalog: every account's state, and its features at every checkpoint, from
Arrow columns, with no per-call Python.

Two steps, so the scan can read its store in bounded batches:

1. `measure_columns(batch)`: each measure's ``where`` and ``reads`` evaluated over a record batch of
   calls (the call store's columns plus the derived ``fingerprint`` and ``signal.<name>`` columns):
   a narrow table with one column per measure, null where the measure skips the call. Text stays
   behind; what is kept is a few numbers and short keys per call. Embeddings are the exception:
   a vector is 256 floats, so `Dispersion.rows` reduces it to three numbers in the time order of
   its account before it gets here (``embeddings.sq/cross/bucket``).
2. `AccountColumns(narrow tables)`: the rows grouped by account (time order kept within each
   account), each measure's reducer building every account's final state (`windows`) and its
   statistics at chosen prefixes (`checkpoint_features`), finished by the catalog's own functions.

It gives what `AccountWindow.observe` gives call by call, up to floating-point rounding:
tests/features/test_columnar.py checks that on generated traffic (hypothesis).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.features.account_window import AccountWindow
from distillguard.features.catalog import (
    FEATURES,
    SIGNAL_NAMES,
    Measure,
    Plan,
    plan_for,
)
from distillguard.features.checkpoints import checkpoint_positions
from distillguard.features.columns import EMBEDDING, Columns, EpochMs, Expr, Table, whole
from distillguard.features.reducers import (
    Count,
    Dispersion,
    DispersionRows,
    Distinct,
    FirstValues,
    HeavyHitters,
    Histogram,
)
from distillguard.features.segments import Groups, rank_in_run

ACCOUNT = "account_id"
MS = "ms"
DISPERSION_COLUMNS = ("embeddings.sq", "embeddings.cross", "embeddings.bucket")


def _parts(measure: Measure) -> list[tuple[str, Any]]:
    """The narrow columns of a measure: its name, or name#i for each part of a tuple read."""
    if isinstance(measure.reads, tuple):
        return [(f"{measure.name}#{i}", expr) for i, expr in enumerate(measure.reads)]
    return [(measure.name, measure.reads)]


def measure_columns(
    batch: Table,
    signal_names: Iterable[str] = SIGNAL_NAMES,
    dispersion: DispersionRows | None = None,
    dispersion_rows: np.ndarray | None = None,
    known: Sequence[tuple[Expr, pa.Array]] = (),
) -> pa.Table:
    """Each measure of the catalog evaluated over ``batch``: one narrow column per measure, null
    where the measure skips the call. ``dispersion`` holds the embedded calls' `DispersionRows`,
    at the batch rows ``dispersion_rows``. ``known``: (expression, its values over the batch) that
    the caller has already (a first value's: the template frames the fingerprinting made); an
    expression is known by identity (`Expr` overloads ``==`` to build conditions)."""
    plan = plan_for(tuple(signal_names))
    evaluated = Columns(batch)
    columns: dict[str, pa.Array] = {
        ACCOUNT: _combined(batch.column(ACCOUNT)),
        MS: EpochMs().column(evaluated),
    }
    if columns[ACCOUNT].null_count:
        raise ValueError("account_id must not be null")
    account_codes: np.ndarray | None = None  # the batch's accounts as integers, once for every FirstValues
    for measure in plan.measures:
        if isinstance(measure.reducer, Dispersion):
            continue
        mask = measure.where.column(evaluated) if measure.where is not None else None
        if measure.reads is None:
            columns[measure.name] = mask if mask is not None else pa.array(np.ones(len(batch), dtype=bool))
            continue
        parts = _parts(measure)
        if isinstance(measure.reducer, FirstValues):
            # only an account's first call with a key can set its value (a parse of the prompt for
            # template frames): the value is worked out on those calls alone
            (key_name, key_expr), (value_name, value_expr) = parts
            keys = key_expr.column(evaluated)
            if mask is not None:
                keys = _kept(mask, keys, evaluated, key_expr)
            if account_codes is None:
                account_codes = _numpy(pc.dictionary_encode(columns[ACCOUNT]).indices, np.int64)
            columns[key_name] = keys if pa.types.is_dictionary(keys.type) else pc.dictionary_encode(keys)
            given = next((values for expr, values in known if expr is value_expr), None)
            columns[value_name] = _first_values(batch, account_codes, keys, value_expr, given)
            continue
        for name, expr in parts:
            values = expr.column(evaluated)
            if mask is None:
                if values.null_count:
                    raise ValueError(
                        f"measure {measure.name!r}: {expr!r} is null on some calls and no condition skips them"
                    )
            else:
                if values.null_count and pc.any(pc.and_(mask, pc.is_null(values))).as_py():
                    raise ValueError(
                        f"measure {measure.name!r}: {expr!r} is null on calls its condition keeps"
                    )
                values = _kept(mask, values, evaluated, expr)
            if pa.types.is_string(values.type):
                # keys repeat (an account's IPs, its parameter profiles): codes and one dictionary
                # per batch hold them in half the memory of the strings
                values = evaluated.dictionary(expr)
            columns[name] = values
    rows = len(batch)
    sq, cross, bucket = np.full(rows, np.nan), np.full(rows, np.nan), np.full(rows, -1, dtype=np.int64)
    if dispersion is not None:
        index = np.arange(rows) if dispersion_rows is None else np.asarray(dispersion_rows, dtype=np.int64)
        sq[index], cross[index], bucket[index] = dispersion.sq, dispersion.cross, dispersion.bucket
    valid = ~np.isnan(sq)
    columns["embeddings.sq"] = pa.array(sq, mask=~valid)
    columns["embeddings.cross"] = pa.array(cross, mask=~valid)
    columns["embeddings.bucket"] = pa.array(bucket, mask=~valid)
    return pa.table(columns)


def _kept(
    mask: pa.Array, values: pa.Array, columns: Columns | None = None, expr: Expr | None = None
) -> pa.Array:
    """``values`` (``expr`` over ``columns``) where ``mask`` holds, null elsewhere. Text is
    dictionary-encoded first and only its codes masked (masking the strings would copy every one of
    them); its dictionary may then hold a value no kept row has, which the codes never point at.
    The encoding is the batch's one of that column (`Columns.dictionary`), shared by its measures."""
    if pa.types.is_string(values.type):  # what measure_columns encodes anyway
        encoded = (
            pc.dictionary_encode(values) if columns is None or expr is None else columns.dictionary(expr)
        )
        indices = pc.if_else(mask, encoded.indices, pa.scalar(None, encoded.indices.type))
        return pa.DictionaryArray.from_arrays(indices, encoded.dictionary)
    return pc.if_else(mask, values, pa.scalar(None, values.type))


def _first_values(
    batch: Table, account: np.ndarray, keys: pa.Array, value: Any, given: pa.Array | None = None
) -> pa.Array:
    """``value`` on the first call of each (account, key) in the batch, null elsewhere
    (dictionary-encoded). ``account`` holds the rows' accounts as integers; ``given``, when the
    caller has it, is ``value`` over the whole batch."""
    rows = len(batch)
    encoded = keys if pa.types.is_dictionary(keys.type) else pc.dictionary_encode(keys)
    valid = _numpy(pc.is_valid(encoded), bool)
    if not valid.any():
        return pc.dictionary_encode(pa.nulls(rows, pa.string()))
    key_codes = _numpy(encoded.indices.fill_null(0), np.int64)
    pair = account * (len(encoded.dictionary) + 1) + key_codes
    pair[~valid] = -1
    # np.unique sorts stably when asked for indices: each pair's first row
    _, first = np.unique(pair, return_index=True)
    first = np.sort(first[pair[first] >= 0])
    if given is not None:
        found = pc.dictionary_encode(given.take(pa.array(first)))
    else:
        # only the columns the value reads are taken (the batch also holds wide text it does not read)
        reads = batch.select(sorted(value.columns()))
        found = pc.dictionary_encode(value.column(Columns(reads.take(pa.array(first)))))
    codes = np.full(rows, -1, dtype=np.int64)
    codes[first] = _numpy(found.indices.fill_null(-1), np.int64)
    indices = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(indices, found.dictionary)


def _combined(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    return whole(array)


def _numpy(array: pa.Array, dtype: Any) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=dtype)


def _pylist(array: pa.Array, rows: np.ndarray) -> list[Any]:
    """``array.take(rows).to_pylist()``; a dictionary array's values are made once per distinct
    value and looked up by code (its own to_pylist builds a scalar per row)."""
    if not pa.types.is_dictionary(array.type):
        return array.take(pa.array(rows)).to_pylist()
    labels = [*array.dictionary.to_pylist(), None]
    codes = _numpy(array.indices.take(pa.array(rows)).fill_null(len(labels) - 1), np.int64)
    return [labels[code] for code in codes.tolist()]


class AccountColumns:
    """Narrow measure tables (`measure_columns`) grouped by account, in the order given within each
    account (time order), and every account's position (1-based call number) on each row.

    ``totals`` are the accounts' embedding-vector sums (for their final `Dispersion` states). The
    account column holds account ids, or integers that index ``labels``.
    """

    def __init__(
        self,
        tables: Sequence[pa.Table],
        signal_names: Iterable[str] = SIGNAL_NAMES,
        totals: Mapping[str, np.ndarray] | None = None,
        labels: Sequence[str] | None = None,
    ) -> None:
        self.plan: Plan = plan_for(tuple(signal_names))
        table = pa.concat_tables(tables) if len(tables) != 1 else tables[0]
        encoded = pc.dictionary_encode(_combined(table.column(ACCOUNT)))
        codes = _numpy(encoded.indices, np.int64)
        accounts = encoded.dictionary.to_pylist()
        self.accounts: list[str] = [labels[i] for i in accounts] if labels is not None else accounts
        # the rows are read in account order through ``order`` (a measure takes its column once)
        self.order = np.argsort(codes, kind="stable")
        self._chunks = {name: table.column(name).chunks for name in table.schema.names}
        self._columns: dict[str, pa.Array] = {}
        self.seg = codes[self.order]
        self.groups = Groups(self.seg, len(self.accounts))
        self.position = np.arange(len(self.seg)) - self.groups.bounds[self.seg] + 1
        self.totals = totals or {}

    def __len__(self) -> int:
        return len(self.seg)

    # -- inputs of each reducer ------------------------------------------------------------------

    def _column(self, name: str) -> pa.Array:
        """A column in the order of the table as given (one array, combined once)."""
        column = self._columns.get(name)
        if column is None:
            chunks = self._chunks.get(name)
            if chunks is None:
                raise KeyError(f"no narrow column {name!r} (released, or not measured)")
            column = self._columns[name] = _combined(pa.chunked_array(chunks))
        return column

    def _release(self, measure: Measure) -> None:
        """Forget a measure's columns (`build` reads each once: memory falls as it goes)."""
        names = (
            DISPERSION_COLUMNS if isinstance(measure.reducer, Dispersion) else [n for n, _ in _parts(measure)]
        )
        for name in names:
            self._columns.pop(name, None)
            self._chunks.pop(name, None)

    def column(self, name: str) -> np.ndarray:
        """A numeric column in account order."""
        return _numpy(self._column(name), np.float64 if name != MS else np.int64)[self.order]

    def _taken(self, name: str, rows: np.ndarray) -> pa.Array:
        """The values at ``rows`` (positions in account order)."""
        return self._column(name).take(pa.array(self.order[rows]))

    def _rows(self, measure: Measure) -> np.ndarray:
        """The positions (in account order) of the calls the measure keeps."""
        name = _parts(measure)[0][0]
        column = self._column(name)
        keep = _numpy(column, bool) if measure.reads is None else _numpy(pc.is_valid(column), bool)
        return np.flatnonzero(keep[self.order])

    def _values(self, measure: Measure, rows: np.ndarray) -> Any:
        reducer = measure.reducer
        if isinstance(reducer, Count):
            return None
        taken = [self._taken(name, rows) for name, _ in _parts(measure)]
        if isinstance(reducer, HeavyHitters):
            encoded = pc.dictionary_encode(taken[0])
            return _numpy(encoded.indices, np.int64), encoded.dictionary.to_pylist()
        if isinstance(reducer, FirstValues):
            keys = pc.dictionary_encode(taken[0])
            first = np.flatnonzero(rank_in_run(self.seg[rows], _numpy(keys.indices, np.int64)) == 0)
            return first, _pylist(taken[0], first), _pylist(taken[1], first)
        if isinstance(reducer, Distinct):
            return _numpy(taken[0], np.uint64)
        if isinstance(reducer, Histogram):
            return _numpy(taken[0], np.int64)
        return _numpy(taken[0], np.float64)

    def _dispersion(self, rows: np.ndarray) -> DispersionRows:
        sq, cross, bucket = (self._taken(name, rows) for name in DISPERSION_COLUMNS)
        return DispersionRows(_numpy(sq, np.float64), _numpy(cross, np.float64), _numpy(bucket, np.int64))

    def _dispersion_rows(self) -> np.ndarray:
        return np.flatnonzero(_numpy(pc.is_valid(self._column(DISPERSION_COLUMNS[0])), bool)[self.order])

    # -- final states ----------------------------------------------------------------------------

    def windows(self) -> dict[str, AccountWindow]:
        """Every account's `AccountWindow`, as observing its calls in order would leave it."""
        return self._windows({m.name: self._states(m) for m in self.plan.measures})

    def build(
        self, query_rows: np.ndarray, names: Sequence[str] = FEATURES
    ) -> tuple[dict[str, AccountWindow], np.ndarray]:
        """`windows` and `features_at(query_rows)` in one sweep over the measures, each measure's
        columns released as soon as both are done (the scan's second pass)."""
        groups = Groups(self.seg, len(self.accounts), query_rows)
        per_measure: dict[str, list[Any]] = {}
        stats: dict[str, dict[str, np.ndarray]] = {}
        for measure in self.plan.measures:
            reducer = measure.reducer
            if isinstance(reducer, FirstValues):
                per_measure[measure.name] = self._states(measure)
            elif isinstance(reducer, Dispersion):
                rows = self._dispersion_rows()
                filtered, data = groups.filtered(rows), self._dispersion(rows)
                per_measure[measure.name] = reducer.states_from_rows(filtered, data, self._totals())
                stats[measure.name] = reducer.prefix_from_rows(filtered, data)
            else:
                # the rows and values are taken once for both; states read only the groups' rows,
                # the same in the query groups' filtered form (which also carries sorts both share)
                rows = self._rows(measure)
                filtered, values = groups.filtered(rows), self._values(measure, rows)
                per_measure[measure.name] = reducer.states(filtered, values)
                stats[measure.name] = reducer.prefix(filtered, values)
            self._release(measure)
        return self._windows(per_measure), self._finish(stats, len(query_rows), names)

    def _totals(self) -> dict[int, np.ndarray]:
        return {g: self.totals[a] for g, a in enumerate(self.accounts) if a in self.totals}

    def _states(self, measure: Measure) -> list[Any]:
        reducer = measure.reducer
        if isinstance(reducer, Dispersion):
            rows = self._dispersion_rows()
            return reducer.states_from_rows(
                self.groups.filtered(rows), self._dispersion(rows), self._totals()
            )
        rows = self._rows(measure)
        if isinstance(reducer, FirstValues):
            first, keys, texts = self._values(measure, rows)
            return reducer.states(self.groups.filtered(rows[first]), (keys, texts))
        return reducer.states(self.groups.filtered(rows), self._values(measure, rows))

    def _windows(self, per_measure: dict[str, list[Any]]) -> dict[str, AccountWindow]:
        signal_names = self.plan.signal_names
        missing = [m.name for m in self.plan.measures if m.name not in per_measure]
        if missing:
            raise ValueError(f"states missing for measures {missing}")
        in_order = [per_measure[m.name] for m in self.plan.measures]
        out = {}
        for g, account in enumerate(self.accounts):
            window = AccountWindow.from_state_list(signal_names, [states[g] for states in in_order])
            window.trim()
            out[account] = window
        return out

    # -- features at prefixes ----------------------------------------------------------------------

    def checkpoint_rows(self) -> np.ndarray:
        """The rows after which an account is evaluated (`features.checkpoints`)."""
        return np.flatnonzero(checkpoint_positions(self.position))

    def features_at(self, query_rows: np.ndarray, names: Sequence[str] = FEATURES) -> np.ndarray:
        """The feature vector after each of ``query_rows`` (ascending): rows × features, float32, in
        the order of ``names``."""
        groups = Groups(self.seg, len(self.accounts), query_rows)
        stats = {
            m.name: self._prefix(m, groups)
            for m in self.plan.measures
            if not isinstance(m.reducer, FirstValues)
        }
        return self._finish(stats, len(query_rows), names)

    def _prefix(self, measure: Measure, groups: Groups) -> dict[str, np.ndarray]:
        reducer = measure.reducer
        if isinstance(reducer, Dispersion):
            rows = self._dispersion_rows()
            return reducer.prefix_from_rows(groups.filtered(rows), self._dispersion(rows))
        if isinstance(reducer, FirstValues):
            return {}
        rows = self._rows(measure)
        return reducer.prefix(groups.filtered(rows), self._values(measure, rows))

    def _finish(
        self, stats: dict[str, dict[str, np.ndarray]], queries: int, names: Sequence[str]
    ) -> np.ndarray:
        features = self.plan.finish(stats)
        out = np.empty((queries, len(names)), dtype=np.float32)
        for j, name in enumerate(names):
            out[:, j] = np.broadcast_to(np.asarray(features[name], dtype=np.float64), queries)
        return out


def build_windows(
    calls: Table, signal_names: Iterable[str] = SIGNAL_NAMES
) -> tuple[AccountColumns, dict[str, AccountWindow]]:
    """Every account's window from one table of calls in any order (call-store columns, ``fingerprint``,
    ``signal.<name>`` and, on sampled calls, ``embedding`` vectors): the one-shot bulk path."""
    names = tuple(signal_names)
    if _combined(calls.column(ACCOUNT)).null_count:
        raise ValueError("account_id must not be null")
    ms = _numpy(EpochMs().column(calls), np.int64)
    account = pc.dictionary_encode(_combined(calls.column(ACCOUNT)))
    codes = _numpy(account.indices, np.int64)
    order = np.lexsort((np.arange(len(ms)), ms, codes))  # time order within each account
    ordered = calls.take(pa.array(order))
    dispersion, rows, totals = None, None, {}
    if EMBEDDING in ordered.schema.names:
        vectors = _combined(ordered.column(EMBEDDING))
        rows = np.flatnonzero(_numpy(pc.is_valid(vectors), bool))
        if len(rows):
            matrix = np.stack(
                [np.asarray(v, dtype=np.float32) for v in vectors.take(pa.array(rows)).to_pylist()]
            )
            labels = account.dictionary.to_pylist()
            dispersion, sums = Dispersion.rows(codes[order][rows], matrix)
            totals = {labels[g]: total for g, total in sums.items()}
    narrow = measure_columns(
        ordered.drop_columns([EMBEDDING]) if EMBEDDING in ordered.schema.names else ordered,
        names,
        dispersion,
        rows,
    )
    columns = AccountColumns([narrow], names, totals)
    return columns, columns.windows()
