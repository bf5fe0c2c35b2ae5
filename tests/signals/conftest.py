"""Helpers for signal tests: a CallView from just the parts a test cares about."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from distillguard.events.call_view import CallView


def make_call(prompt: str = "", system: str = "", **fields: Any) -> CallView:
    fields.setdefault("n_user_turns", 1)
    return CallView(
        event_id="e1",
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        account_id="acct",
        prompt=prompt,
        system_prompt=system,
        **fields,
    )


@pytest.fixture
def call_of():
    return make_call
