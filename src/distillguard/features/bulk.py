"""The batch path: every account's `AccountWindow` from Arrow columns at once, with NumPy group-by.

It gives the same states as feeding each account's calls to `AccountWindow.observe` in time order
(up to floating-point rounding; Misra–Gries summaries agree exactly while an account has at most
`k` distinct keys and satisfy the same error bound past it) - tests/features/test_bulk.py proves
it. Chunks of a time-ordered store can be built one at a time and merged with `merge_windows`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.features.account_window import (
    BUCKET_MS,
    DAY_MS,
    FIRES_AT,
    HH_END_USERS,
    HH_IPS,
    HH_PARAMS,
    HH_SYSTEM,
    HH_TEMPLATES,
    HH_TLS,
    HOUR_MS,
    K_BUCKETS,
    K_DAYS,
    K_HOURS,
    K_PROMPTS,
    K_SMALL,
    K_TEMPLATES,
    PREVIEW_CHARS,
    SIGNAL_NAMES,
    AccountWindow,
    param_key,
    system_prompt_key,
    tls_asn_key,
)
from distillguard.features.reducers import (
    Dispersion,
    Distinct,
    Gaps,
    HeavyHitters,
    Histogram,
    MeanVar,
    MinMax,
    hash_ints,
    hash_texts,
)

K = TypeVar("K")

# The CallView columns this module reads (a subset of VIEW_SCHEMA).
COLUMNS = (
    "account_id",
    "ts",
    "end_user",
    "client_ip",
    "client_asn",
    "client_user_agent",
    "client_tls_fingerprint",
    "client_router",
    "status",
    "system_prompt",
    "prompt",
    "n_user_turns",
    "temperature",
    "top_p",
    "n",
    "max_tokens",
    "logprobs",
    "top_logprobs",
    "logit_bias_size",
    "stream",
    "response_text",
    "reasoning_text",
)


def _array(batch: pa.Table | pa.RecordBatch, name: str) -> pa.Array:
    column = batch.column(name)
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _codes(array: pa.Array) -> tuple[np.ndarray, list[Any]]:
    """Dictionary codes (-1 for null) and the distinct values."""
    encoded = pc.dictionary_encode(array)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    codes = np.where(encoded.indices.is_valid().to_numpy(zero_copy_only=False), codes, -1).astype(np.int64)
    return codes, encoded.dictionary.to_pylist()


def _floats(array: pa.Array) -> np.ndarray:
    """Numeric column as float64 with NaN for null."""
    return np.asarray(pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _filled(array: pa.Array, fill: Any, dtype: Any) -> np.ndarray:
    return np.asarray(pc.fill_null(array, fill).to_numpy(zero_copy_only=False), dtype=dtype)


def _lengths(array: pa.Array) -> np.ndarray:
    return _filled(pc.utf8_length(array), 0, np.int64)


class _Sorted:
    """Rows sorted by (group, time); ``take`` permutes any per-row array into that order."""

    def __init__(self, gid: np.ndarray, ms: np.ndarray, n_groups: int) -> None:
        self.order = np.lexsort((ms, gid))
        self.seg = gid[self.order]
        self.n_groups = n_groups

    def take(self, values: np.ndarray) -> np.ndarray:
        return values[self.order]


def _text_reducers(
    s: _Sorted,
    codes: np.ndarray,
    labels: list[Any],
    hh_k: int | None,
    distinct_k: int,
    key: Callable[[str], str] | None = None,
) -> tuple[list[HeavyHitters] | None, list[Distinct]]:
    """Heavy hitters (of ``key(label)``) and distinct count over the non-empty values of a text column."""
    nonempty = np.array([bool(label) for label in labels] + [False], dtype=bool)  # code -1 -> last
    c = s.take(codes)
    mask = nonempty[c]
    seg, c = s.seg[mask], c[mask]
    hashes = hash_texts(labels)
    distinct = Distinct.grouped(seg, hashes[c], s.n_groups, distinct_k)
    heavy = None
    if hh_k is not None:
        keys = [key(label) for label in labels] if key else labels
        heavy = HeavyHitters.grouped(seg, c, keys, s.n_groups, hh_k)
    return heavy, distinct


def _count(s: _Sorted, mask: np.ndarray) -> list[int]:
    return np.bincount(s.seg[s.take(mask)], minlength=s.n_groups).tolist()


def _meanvar(s: _Sorted, values: np.ndarray, mask: np.ndarray | None = None) -> list[MeanVar]:
    v = s.take(values)
    m = ~np.isnan(v) if mask is None else s.take(mask)
    return MeanVar.grouped(s.seg[m], v[m], s.n_groups)


def _combined_codes(*parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One dense code per distinct tuple of per-column codes (-1 allowed), and a representative row."""
    combined = np.zeros(len(parts[0]), dtype=np.int64)
    for part in parts:
        combined = combined * (int(part.max(initial=-1)) + 2) + (part + 1)
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    return inverse.astype(np.int64), first


def _build(
    batch: pa.Table | pa.RecordBatch,
    signals: Mapping[str, np.ndarray],
    fingerprints: Sequence[str | None] | pa.Array | np.ndarray,
    embeddings: np.ndarray | None,
    embedding_rows: np.ndarray | None,
    signal_names: tuple[str, ...],
    group_of: Callable[[np.ndarray, list[Any], np.ndarray], tuple[np.ndarray, list[Any]]],
) -> dict[Any, AccountWindow]:
    rows = len(batch)
    missing = [name for name in COLUMNS if name not in batch.schema.names]
    if missing:
        raise ValueError(f"build_windows: the batch lacks the call-view columns {missing}")
    unknown = [name for name in signals if name not in signal_names]
    if unknown:
        raise KeyError(f"signals {unknown} are not among the window's signals {signal_names}")
    if len(fingerprints) != rows:
        raise ValueError(f"build_windows: {len(fingerprints)} fingerprints for {rows} rows")
    if rows == 0:
        return {}
    account_codes, account_labels = _codes(_array(batch, "account_id"))
    if (account_codes < 0).any():
        raise ValueError("build_windows: account_id must not be null")
    ts = _array(batch, "ts")
    if pa.types.is_timestamp(ts.type) and ts.type.unit != "ms":
        ts = pc.cast(ts, pa.timestamp("ms", tz=ts.type.tz), safe=False)
    ms = ts.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)
    gid, keys = group_of(account_codes, account_labels, ms)
    s = _Sorted(gid, ms, len(keys))
    G = s.n_groups
    seg = s.seg
    sms = s.take(ms)
    counts = np.bincount(seg, minlength=G).tolist()

    seen = MinMax.grouped(seg, sms.astype(np.float64), G)
    hours = Distinct.grouped(seg, hash_ints(sms // HOUR_MS), G, K_HOURS)
    days = Distinct.grouped(seg, hash_ints(sms // DAY_MS), G, K_DAYS)
    buckets = Distinct.grouped(seg, hash_ints(sms // BUCKET_MS), G, K_BUCKETS)
    hour_of_day = Histogram.grouped(seg, (sms // HOUR_MS) % 24, G, 24)
    gaps = Gaps.grouped(seg, sms / 1000.0, G)

    prompt = _array(batch, "prompt")
    prompt_codes, prompt_labels = _codes(pc.fill_null(prompt, ""))
    prompts = Distinct.grouped(seg, hash_texts(prompt_labels)[s.take(prompt_codes)], G, K_PROMPTS)

    fp_array = (
        fingerprints if isinstance(fingerprints, pa.Array) else pa.array(list(fingerprints), pa.string())
    )
    templates, template_count = _text_reducers(s, *_codes(fp_array), HH_TEMPLATES, K_TEMPLATES)
    system = _array(batch, "system_prompt")
    system_codes, system_labels = _codes(system)
    system_prompts, system_count = _text_reducers(
        s, system_codes, system_labels, HH_SYSTEM, K_SMALL, system_prompt_key
    )
    previews = {system_prompt_key(label): label[:PREVIEW_CHARS] for label in system_labels if label}

    fires_any = np.zeros(rows, dtype=bool)
    signal_stats: dict[str, tuple[list[MeanVar], list[int]]] = {}
    for name in signal_names:
        scores = signals.get(name)
        if scores is None:
            scores = np.full(rows, np.nan)
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (rows,):
            raise ValueError(f"build_windows: signal {name!r} has shape {scores.shape}, expected ({rows},)")
        fires = np.nan_to_num(scores, nan=-1.0) >= FIRES_AT
        fires_any |= fires
        signal_stats[name] = (_meanvar(s, scores), _count(s, fires))

    temperature = _floats(_array(batch, "temperature"))
    top_p = _floats(_array(batch, "top_p"))
    n_choices = _floats(_array(batch, "n"))
    max_tokens = _floats(_array(batch, "max_tokens"))
    param_parts = [_codes(_array(batch, name)) for name in ("temperature", "top_p", "n", "max_tokens")]
    param_codes, param_rows = _combined_codes(*(codes for codes, _ in param_parts))
    param_labels = []
    for row in param_rows.tolist():
        values = [labels[codes[row]] if codes[row] >= 0 else None for codes, labels in param_parts]
        param_labels.append(param_key(*values))
    params = HeavyHitters.grouped(seg, s.take(param_codes), param_labels, G, HH_PARAMS)

    top_logprobs = _floats(_array(batch, "top_logprobs"))
    logit_bias_size = _filled(_array(batch, "logit_bias_size"), 0, np.float64)
    user_turns = _filled(_array(batch, "n_user_turns"), 0, np.float64)
    prompt_chars = (_lengths(prompt) + _lengths(system)).astype(np.float64)
    reasoning_len = _lengths(_array(batch, "reasoning_text"))
    response_chars = (_lengths(_array(batch, "response_text")) + reasoning_len).astype(np.float64)
    status = _filled(_array(batch, "status"), 200, np.int64)
    answered = (response_chars > 0) & (status < 400)

    end_users, end_user_count = _text_reducers(s, *_codes(_array(batch, "end_user")), HH_END_USERS, K_PROMPTS)
    ips, ip_count = _text_reducers(s, *_codes(_array(batch, "client_ip")), HH_IPS, K_PROMPTS)
    _, user_agent_count = _text_reducers(s, *_codes(_array(batch, "client_user_agent")), None, K_SMALL)
    asn_array = _array(batch, "client_asn")
    asn_valid = asn_array.is_valid().to_numpy(zero_copy_only=False)
    asn = _filled(asn_array, 0, np.int64)
    m = s.take(asn_valid)
    asn_count = Distinct.grouped(seg[m], hash_ints(s.take(asn)[m]), G, K_SMALL)
    tls_codes, tls_labels = _codes(_array(batch, "client_tls_fingerprint"))
    _, tls_count = _text_reducers(s, tls_codes, tls_labels, None, K_SMALL)
    asn_codes, asn_labels = _codes(asn_array)
    pair_codes, pair_rows = _combined_codes(tls_codes, asn_codes)
    pair_labels = [
        tls_asn_key(tls_labels[tls_codes[r]], asn_labels[asn_codes[r]] if asn_codes[r] >= 0 else None)
        if tls_codes[r] >= 0 and tls_labels[tls_codes[r]]
        else ""
        for r in pair_rows.tolist()
    ]
    tls, _ = _text_reducers(s, pair_codes, pair_labels, HH_TLS, K_SMALL)
    routed = _count(s, _array(batch, "client_router").is_valid().to_numpy(zero_copy_only=False))

    if embeddings is not None:
        if embedding_rows is None:
            embedding_rows = np.arange(rows)
        if len(embedding_rows) != len(embeddings):
            raise ValueError(f"build_windows: {len(embeddings)} embeddings for {len(embedding_rows)} rows")
        dispersion = Dispersion.grouped(gid[embedding_rows], np.asarray(embeddings), G)
    else:
        dispersion = [Dispersion() for _ in range(G)]

    nan = np.isnan
    scalar_counts = {
        "any_fired": _count(s, fires_any),
        "temperature_zero": _count(s, temperature == 0.0),
        "top_p_set": _count(s, ~nan(top_p)),
        "n_multi": _count(s, n_choices > 1),
        "logprobs": _count(s, _filled(_array(batch, "logprobs"), False, bool)),
        "stream": _count(s, _filled(_array(batch, "stream"), False, bool)),
        "single_turn": _count(s, user_turns <= 1),
        "reasoning_returned": _count(s, reasoning_len > 0),
        "errors": _count(s, status >= 400),
        "routed": routed,
    }
    reducer_lists: dict[str, list[Any]] = {
        "seen": seen,
        "hours": hours,
        "days": days,
        "buckets": buckets,
        "hour_of_day": hour_of_day,
        "gaps": gaps,
        "prompts": prompts,
        "templates": templates or [],
        "template_count": template_count,
        "system_prompts": system_prompts or [],
        "system_prompt_count": system_count,
        "temperature": _meanvar(s, temperature),
        "n_choices": _meanvar(s, n_choices),
        "max_tokens": _meanvar(s, max_tokens),
        "params": params,
        "top_logprobs": _meanvar(s, top_logprobs),
        "logit_bias": _meanvar(s, logit_bias_size, logit_bias_size > 0),
        "user_turns": _meanvar(s, user_turns),
        "prompt_chars": _meanvar(s, prompt_chars),
        "response_chars": _meanvar(s, response_chars, answered),
        "answered_prompt_chars": _meanvar(s, prompt_chars, answered),
        "end_users": end_users or [],
        "end_user_count": end_user_count,
        "ips": ips or [],
        "ip_count": ip_count,
        "asn_count": asn_count,
        "user_agent_count": user_agent_count,
        "tls": tls or [],
        "tls_count": tls_count,
        "embeddings": dispersion,
    }
    out: dict[Any, AccountWindow] = {}
    for i, key in enumerate(keys):
        window = AccountWindow(signal_names)
        window.n = counts[i]
        for name, states in reducer_lists.items():
            setattr(window, name, states[i])
        for name, per_group in scalar_counts.items():
            setattr(window, name, per_group[i])
        for name, (score_stats, fired) in signal_stats.items():
            window.signals[name].scores = score_stats[i]
            window.signals[name].fired = fired[i]
        window.system_previews = {k: previews[k] for k in window.system_prompts.counts}
        out[key] = window
    return out


def build_windows(
    batch: pa.Table | pa.RecordBatch,
    signals: Mapping[str, np.ndarray],
    fingerprints: Sequence[str | None] | pa.Array | np.ndarray,
    embeddings: np.ndarray | None = None,
    embedding_rows: np.ndarray | None = None,
    *,
    signal_names: Iterable[str] = SIGNAL_NAMES,
) -> dict[str, AccountWindow]:
    """One `AccountWindow` per account in ``batch`` (CallView columns, any row order).

    ``signals`` maps a signal name to a float array (one score per row, NaN = abstained);
    ``fingerprints`` is the template fingerprint of each row (None/"" = unknown);
    ``embeddings`` (m × d, L2-normalised) belong to the rows ``embedding_rows`` (default: all),
    since embedding every call is too slow and a per-account sample suffices.
    """

    def by_account(codes: np.ndarray, labels: list[Any], ms: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        return codes, labels

    return _build(batch, signals, fingerprints, embeddings, embedding_rows, tuple(signal_names), by_account)


def build_daily_windows(
    batch: pa.Table | pa.RecordBatch,
    signals: Mapping[str, np.ndarray],
    fingerprints: Sequence[str | None] | pa.Array | np.ndarray,
    embeddings: np.ndarray | None = None,
    embedding_rows: np.ndarray | None = None,
    *,
    signal_names: Iterable[str] = SIGNAL_NAMES,
) -> dict[tuple[str, str], AccountWindow]:
    """Like `build_windows`, keyed by (account_id, UTC day "YYYY-MM-DD"); merging an account's
    days in time order gives its whole-period window."""

    def by_day(account_codes: np.ndarray, labels: list[Any], ms: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        day = ms // DAY_MS
        combined = account_codes * (int(day.max()) - int(day.min()) + 1) + (day - day.min())
        _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
        keys = [
            (labels[account_codes[r]], datetime.fromtimestamp(int(day[r]) * 86400, UTC).strftime("%Y-%m-%d"))
            for r in first.tolist()
        ]
        return inverse.astype(np.int64), keys

    return _build(batch, signals, fingerprints, embeddings, embedding_rows, tuple(signal_names), by_day)


def merge_windows(into: dict[K, AccountWindow], other: Mapping[K, AccountWindow]) -> dict[K, AccountWindow]:
    """Fold ``other``'s windows into ``into`` (in place; merge a time-ordered store's chunks in order)."""
    for key, window in other.items():
        mine = into.get(key)
        if mine is None:
            into[key] = window
        else:
            mine.merge(window)
    return into
