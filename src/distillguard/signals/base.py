"""The shape of a signal: a per-call detector whose identity is data and whose one method is pure.

One score convention everywhere: a float in [0, 1], or ``None`` (abstain: the signal has nothing
to say about this call, e.g. an output signal on a call without a response).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import msgspec

from distillguard.events.call_view import CallView


class SignalResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A score with the evidence a human needs: what matched and every adjustment on the way."""

    signal: str
    score: float
    detail: str
    matched: list[str] = []
    adjustments: list[str] = []

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

    def analyze(self, call: CallView) -> SignalResult | None:
        raise NotImplementedError

    def analyze_many(self, calls: Sequence[CallView]) -> list[SignalResult | None]:
        """Batch form; subclasses with vectorised models override it."""
        return [self.analyze(call) for call in calls]
