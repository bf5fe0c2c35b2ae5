"""The signal set by name: `get("cot_extraction")`, `all_signals()`, `inline_signals()`.

Classes are named by import path and imported on first use, so asking for the cheap inline set
never imports scikit-learn or the embedding model.
"""

from __future__ import annotations

import importlib
from functools import cache

from distillguard.signals.base import Signal

SIGNALS: dict[str, str] = {
    "cot_extraction": "distillguard.signals.cot_extraction:CotExtraction",
    "reasoning_leak": "distillguard.signals.reasoning_leak:ReasoningLeak",
    "grading_request": "distillguard.signals.grading_request:GradingRequest",
    "generation_request": "distillguard.signals.generation_request:GenerationRequest",
    "logit_probe": "distillguard.signals.logit_probe:LogitProbe",
    "template": "distillguard.signals.template:Template",
    "embedding": "distillguard.signals.embedding:Embedding",
}


def names() -> list[str]:
    return list(SIGNALS)


def signal_class(name: str) -> type[Signal]:
    path = SIGNALS.get(name)
    if path is None:
        raise KeyError(f"unknown signal {name!r}; known signals: {', '.join(SIGNALS)}")
    module, attr = path.split(":")
    cls: type[Signal] = getattr(importlib.import_module(module), attr)
    return cls


@cache
def get(name: str) -> Signal:
    """The shared instance of a signal (its model, if any, loads on first use)."""
    return signal_class(name)()


def all_signals() -> list[Signal]:
    return [get(name) for name in SIGNALS]


def inline_signals() -> list[Signal]:
    """The signals cheap enough for the gateway's request path."""
    return [get(name) for name in SIGNALS if signal_class(name).inline]
