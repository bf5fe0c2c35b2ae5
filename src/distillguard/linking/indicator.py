"""A typed indicator: an identifier an account was seen with, matched across accounts and runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Indicator:
    """``Indicator("payment", "pf-1f2e")``: kind is one of `LinkConfig.rules`' keys."""

    kind: str
    value: str
