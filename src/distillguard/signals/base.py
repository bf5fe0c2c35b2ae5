"""The shape of a signal: a per-call detector whose identity is data and whose one method is pure.

One score convention everywhere: a float in [0, 1], or ``None`` (abstain: the signal has nothing
to say about this call, e.g. an output signal on a call without a response).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import msgspec
import pyarrow as pa

from distillguard.events.call_view import CallView, views_of_batch


def score_down(value: float, digits: int = 4) -> float:
    """A score cut (not rounded) to `digits` decimals: a model score just below the firing
    threshold must not be reported at it (0.49999 -> 0.4999, never 0.5)."""
    scale = 10**digits
    return math.floor(value * scale + 1e-9) / scale


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

    def analyze(self, call: CallView) -> SignalResult | None:
        raise NotImplementedError

    def analyze_many(self, calls: Sequence[CallView]) -> list[SignalResult | None]:
        """Batch form; subclasses with vectorised models override it."""
        return [self.analyze(call) for call in calls]

    def analyze_batch(self, batch: pa.RecordBatch | pa.Table) -> list[SignalResult | None]:
        """Batch form over an Arrow record batch of the call store (columns as in VIEW_SCHEMA)."""
        return self.analyze_many(views_of_batch(batch))
