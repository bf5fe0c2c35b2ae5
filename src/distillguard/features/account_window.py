"""Per-account state over a time window, one call at a time: the streaming form of the catalog.

The gateway calls `AccountWindow.observe` once per call. The state is one mergeable reducer per
measure of `distillguard.features.catalog`, and `features()` finishes the catalog's features from
their statistics, so nothing here names a feature: a feature declared in the catalog is observed,
merged and read here without a line changing. The scan builds the same states in bulk
(`distillguard.features.columnar`); a property test holds the two to the same numbers.
"""

from __future__ import annotations

import copy
import functools
import io
import pickle
from array import array
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from distillguard.events.call_view import CallView
from distillguard.features.catalog import (
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
    Plan,
    StatRow,
    Stats,
    feature_names,
    hash_identifier,
    param_key,
    plan_for,
    system_prompt_key,
    template_frame,
    tls_asn_key,
)
from distillguard.features.columns import SIGNAL_PREFIX, CallRow, epoch_ms
from distillguard.features.reducers import FirstValues, SignalStats

__all__ = [
    "BUCKET_MS",
    "DAY_MS",
    "FIRES_AT",
    "HH_END_USERS",
    "HH_IPS",
    "HH_PARAMS",
    "HH_SYSTEM",
    "HH_TEMPLATES",
    "HH_TLS",
    "HOUR_MS",
    "K_BUCKETS",
    "K_DAYS",
    "K_HOURS",
    "K_PROMPTS",
    "K_SMALL",
    "K_TEMPLATES",
    "PREVIEW_CHARS",
    "SIGNAL_NAMES",
    "AccountWindow",
    "PackedWindow",
    "SignalStats",
    "epoch_ms",
    "feature_names",
    "hash_identifier",
    "param_key",
    "system_prompt_key",
    "template_frame",
    "tls_asn_key",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class AccountWindow:
    """All the mergeable state DistillGuard keeps about one account over one window.

    Each measure's state is an attribute of its name (``window.templates``, ``window.buckets``).

    >>> w = AccountWindow()
    >>> for i in range(3):
    ...     call = CallView(event_id=str(i), ts=datetime(2026, 2, 12, 10, 0, 10 * i, tzinfo=UTC),
    ...                     account_id="a", prompt=f"Solve {i}", n_user_turns=1)
    ...     w.observe(call, {"cot_extraction": 0.9}, fingerprint="solve-N")
    >>> f = w.features()
    >>> f["n_calls"], f["top_template_share"], f["cot_extraction_fire_rate"], f["gap_regular_share"]
    (3.0, 1.0, 1.0, 1.0)
    """

    __slots__ = ("_plan", "_states", "_steps", "_trims", "signal_names", "states")

    def __init__(self, signal_names: Iterable[str] = SIGNAL_NAMES) -> None:
        self.signal_names = tuple(signal_names)
        self._plan: Plan = plan_for(self.signal_names)
        self._hold([m.reducer.fresh() for m in self._plan.measures])

    def _hold(self, states: list[Any]) -> None:
        plan = self._plan
        self._states = states
        self.states: Mapping[str, Any] = {m.name: s for m, s in zip(plan.measures, states, strict=True)}
        # per call: (condition, value, the state's observe), bound on the first call observed (the
        # scan builds thousands of windows in bulk that never observe one)
        self._steps: list[tuple[Any, Any, Any]] | None = None
        self._trims = [
            (state, self.states[m.keys_of])
            for m, state in zip(plan.measures, states, strict=True)
            if m.keys_of is not None and isinstance(state, FirstValues)
        ]

    def _bind(self) -> list[tuple[Any, Any, Any]]:
        self._steps = [
            (where, reads, state.observe)
            for (where, reads), state in zip(self._plan.row_functions, self._states, strict=True)
        ]
        return self._steps

    @classmethod
    def from_states(cls, signal_names: Iterable[str], states: Mapping[str, Any]) -> AccountWindow:
        """A window holding ``states`` (one per measure of the catalog), as the bulk path builds them."""
        plan = plan_for(tuple(signal_names))
        missing = [m.name for m in plan.measures if m.name not in states]
        if missing:
            raise ValueError(f"states missing for measures {missing}")
        return cls.from_state_list(plan.signal_names, [states[m.name] for m in plan.measures])

    @classmethod
    def from_state_list(cls, signal_names: tuple[str, ...], states: list[Any]) -> AccountWindow:
        """A window holding ``states``, one per measure in the order of the catalog's plan."""
        window = cls.__new__(cls)
        window.signal_names = signal_names
        window._plan = plan_for(signal_names)
        if len(states) != len(window._plan.measures):
            raise ValueError(f"{len(states)} states for {len(window._plan.measures)} measures")
        window._hold(states)
        return window

    def __getattr__(self, name: str) -> Any:
        # a measure's state by its name; __getattr__ runs only when ordinary lookup fails
        try:
            return object.__getattribute__(self, "states")[name]
        except (KeyError, AttributeError):
            raise AttributeError(f"AccountWindow has no measure or attribute {name!r}") from None

    def __reduce__(self) -> tuple[Any, ...]:
        # the plan holds compiled functions: rebuild it from the signal names on the other side
        return (AccountWindow.from_states, (self.signal_names, self.states))

    def packed(self) -> PackedWindow:
        """This window's states pickled into one buffer: a read-only window for holding many."""
        return PackedWindow.of(self)

    def unpacked(self) -> AccountWindow:
        """A mutable copy of this window (to merge into without changing it)."""
        return copy.deepcopy(self)

    def remembering(self) -> AccountWindow:
        """This window for a reader that reads some states many times (linking reads a few states
        of every account, some of them in several passes): its states are objects already."""
        return self

    # -- one call at a time ------------------------------------------------------------------

    def observe(
        self,
        call: CallView,
        signals: Mapping[str, float | None],
        fingerprint: str | None,
        embedding: np.ndarray | None = None,
    ) -> None:
        """Add one call. ``signals`` maps signal name to score in [0, 1] or None (abstained);
        names outside ``signal_names`` are an error, so a renamed signal cannot vanish silently."""
        for name in signals:
            if SIGNAL_PREFIX + name not in self.states:
                raise KeyError(f"signal {name!r} is not one of this window's signals {self.signal_names}")
        row = CallRow(call, signals, fingerprint, embedding)
        steps = self._steps if self._steps is not None else self._bind()
        for where, reads, observe in steps:
            if where is None or where(row):
                observe(None if reads is None else reads(row))
        self.trim()

    def trim(self) -> None:
        """Apply the window's bounds on evidence (previews of keys no longer summarised)."""
        for previews, summary in self._trims:
            if len(previews.values) > previews.limit:
                previews.keep_only(summary.counts)

    # -- combining -----------------------------------------------------------------------------

    def merge(self, other: AccountWindow) -> AccountWindow:
        """Fold ``other`` into this window (exact for timing when the two cover consecutive time)."""
        if other.signal_names != self.signal_names:
            raise ValueError(
                f"cannot merge windows over different signals: {self.signal_names} vs {other.signal_names}"
            )
        if isinstance(other, PackedWindow):
            other = other.unpacked()
        for mine, theirs in zip(self._states, other._states, strict=True):
            mine.merge(theirs)
        self.trim()
        return self

    # -- reading -------------------------------------------------------------------------------

    def features(self) -> dict[str, float]:
        """The feature vector, in the stable order of `feature_names` (documented in docs/features.md)."""
        stats = {m.name: s.read() for m, s in zip(self._plan.measures, self._states, strict=True)}
        return {name: float(value) for name, value in self._plan.finish(stats).items()}

    def feature(self, name: str) -> float:
        """``features()[name]``, reading only the statistics that feature needs (a report that
        plots two features of every account need not finish all of them)."""
        feature = next((f for f in self._plan.features if f.name == name), None)
        if feature is None:
            raise KeyError(f"no feature {name!r}")
        return float(feature.finish(_StatsOnDemand(self.states)))

    @property
    def n(self) -> int:
        return int(self.states["calls"].count)

    @property
    def any_fired(self) -> int:
        """Calls on which any signal fired (a count, as linking pools it over a cluster)."""
        return int(self.states["any_fired"].count)

    @property
    def signals(self) -> dict[str, SignalStats]:
        """Per signal: how often it scored and fired, and its mean score."""
        return {name: self.states[SIGNAL_PREFIX + name] for name in self.signal_names}

    @property
    def system_previews(self) -> dict[str, str]:
        """Readable previews of the system prompts still in the heavy-hitter summary."""
        previews: dict[str, str] = self.states["system_previews"].values
        return previews

    @property
    def template_frames(self) -> dict[str, str]:
        """Each heavy-hitter template's fixed frame, by fingerprint (`catalog.template_frame`)."""
        frames: dict[str, str] = self.states["template_frames"].values
        return frames

    @property
    def first_seen(self) -> datetime | None:
        seen = self.states["seen"]
        return None if seen.empty else _EPOCH + int(seen.lo) * _MS

    @property
    def last_seen(self) -> datetime | None:
        seen = self.states["seen"]
        return None if seen.empty else _EPOCH + int(seen.hi) * _MS


class _StatsOnDemand(Stats):
    """`Stats` that reads a measure's state the first time a feature asks for it."""

    def __init__(self, states: Mapping[str, Any]) -> None:
        super().__init__()
        self._states = states

    def __missing__(self, measure: str) -> StatRow:
        if measure not in self._states:
            raise KeyError(measure)
        row = self[measure] = StatRow(self._states[measure].read())
        return row


@functools.cache
def _positions(signal_names: tuple[str, ...]) -> dict[str, int]:
    return {m.name: i for i, m in enumerate(plan_for(signal_names).measures)}


class PackedStates(Mapping[str, Any]):
    """A window's states, each pickled, in one buffer; reading one unpickles a fresh copy of it.

    >>> states = PackedStates.of(AccountWindow().signal_names, AccountWindow().states)
    >>> states["calls"].count, len(states) == len(AccountWindow().states)
    (0, True)
    """

    __slots__ = ("_blob", "_ends", "_names")

    def __init__(self, signal_names: tuple[str, ...], blob: bytes, ends: array[int]) -> None:
        self._names = signal_names
        self._blob = blob
        self._ends = ends  # where each state's pickle ends, in the plan's order of measures

    @classmethod
    def of(cls, signal_names: tuple[str, ...], states: Mapping[str, Any]) -> PackedStates:
        # one pickler for all the states (a fresh one per state costs more than small states do);
        # each dump is a whole pickle of its own, its memo cleared, so each state loads alone
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        ends = array("I")
        for measure in plan_for(signal_names).measures:
            pickler.dump(states[measure.name])
            pickler.clear_memo()
            ends.append(buffer.tell())
        return cls(signal_names, buffer.getvalue(), ends)

    def __getitem__(self, name: str) -> Any:
        i = _positions(self._names)[name]
        start = self._ends[i - 1] if i else 0
        return pickle.loads(memoryview(self._blob)[start : self._ends[i]])

    def __iter__(self) -> Iterator[str]:
        return iter(_positions(self._names))

    def __len__(self) -> int:
        return len(self._ends)

    def __reduce__(self) -> tuple[Any, ...]:
        return (PackedStates, (self._names, self._blob, self._ends))


class _RememberedStates(Mapping[str, Any]):
    """Packed states, each unpickled on its first read and that copy kept (`PackedWindow.remembering`)."""

    __slots__ = ("_packed", "_read")

    def __init__(self, packed: Mapping[str, Any]) -> None:
        self._packed = packed
        self._read: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        read = self._read
        if name not in read:
            read[name] = self._packed[name]
        return read[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)


class PackedWindow(AccountWindow):
    """A read-only window whose states stay pickled until read (`PackedStates`).

    The scan holds the final window of every account until its outputs are written: as objects a
    window takes ~60 KiB, pickled ~12 KiB (sketches of ints and short strings). Reads are rare:
    linking reads a few states of each account, the outputs its features once; each read unpickles
    the state afresh, so a caller cannot change the window. `unpacked()` gives a mutable window.

    >>> w = AccountWindow()
    >>> call = CallView(event_id="1", ts=datetime(2026, 2, 12, tzinfo=UTC), account_id="a", prompt="hi")
    >>> w.observe(call, {}, fingerprint="hi")
    >>> p = w.packed()
    >>> p.n, p.features() == w.features(), p.unpacked().states.keys() == w.states.keys()
    (1, True, True)
    """

    __slots__ = ()

    @classmethod
    def of(cls, window: AccountWindow) -> PackedWindow:
        packed = cls.__new__(cls)
        packed.signal_names = window.signal_names
        packed._plan = window._plan
        packed.states = PackedStates.of(window.signal_names, window.states)
        return packed

    @classmethod
    def _of_states(cls, signal_names: tuple[str, ...], states: Mapping[str, Any]) -> PackedWindow:
        packed = cls.__new__(cls)
        packed.signal_names = signal_names
        packed._plan = plan_for(signal_names)
        packed.states = states
        return packed

    def __reduce__(self) -> tuple[Any, ...]:
        return (PackedWindow._of_states, (self.signal_names, self.states))

    def packed(self) -> PackedWindow:
        return self

    def unpacked(self) -> AccountWindow:
        return AccountWindow.from_states(self.signal_names, dict(self.states.items()))

    def remembering(self) -> PackedWindow:
        """A read-only window that unpickles each state at most once and then hands out that one
        copy: for a reader that reads some states many times, and changes none (the packed window
        it came from stays as it was whatever the reader does)."""
        return PackedWindow._of_states(self.signal_names, _RememberedStates(self.states))

    def observe(
        self,
        call: CallView,
        signals: Mapping[str, float | None],
        fingerprint: str | None,
        embedding: np.ndarray | None = None,
    ) -> None:
        raise TypeError("a packed window is read-only: observe into window.unpacked()")

    def merge(self, other: AccountWindow) -> AccountWindow:
        raise TypeError("a packed window is read-only: merge into window.unpacked()")

    def trim(self) -> None:
        raise TypeError("a packed window is read-only")

    def features(self) -> dict[str, float]:
        return self.unpacked().features()
