"""The gateway's account monitor keeps a bounded set of windows: idle accounts and the least
recently active past the limit are evicted, active ones keep their state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec
import pytest

from distillguard.enforcement.engine import Caller, Decision, LiveEngine
from distillguard.enforcement.policy import Accounts, default_policy
from distillguard.enforcement.state import MemoryState
from distillguard.events.model import CallEvent, Client
from distillguard.gateway.account_monitor import AccountMonitor


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def call(i: int, account: str) -> CallEvent:
    return CallEvent(
        event_id=f"e{i}",
        ts=datetime(2026, 2, 12, 10, 0, i % 60, tzinfo=UTC),
        account_id=account,
        client=Client(ip="203.0.113.9"),
        endpoint="/v1/chat/completions",
        request={"model": "m", "messages": [{"role": "user", "content": f"question {i}"}]},
        response={"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]},
        status=200,
    )


def monitor(clock: Clock, **accounts: object) -> AccountMonitor:
    policy = msgspec.structs.replace(default_policy(), rules=[])  # no per-call signal needed
    engine = LiveEngine(policy, MemoryState(), [])
    settings = Accounts(embeddings=False, **accounts)  # type: ignore[arg-type]
    return AccountMonitor(engine, settings, clock=clock)


def feed(m: AccountMonitor, i: int, account: str) -> None:
    m.observe(call(i, account), Caller(account_id=account), Decision())
    asyncio.run(m.drain())


def test_idle_accounts_are_evicted_and_active_ones_kept() -> None:
    clock = Clock()
    m = monitor(clock, idle_evict_s=60.0)
    feed(m, 0, "quiet")
    for i in range(1, 5):
        clock.now += 30.0
        feed(m, i, "busy")
    assert "account:quiet" not in m.accounts and m.evicted == 1
    assert m.accounts["account:busy"].window.n == 4


def test_least_recently_active_evicted_past_the_limit() -> None:
    clock = Clock()
    m = monitor(clock, max_accounts=3)
    for i, account in enumerate(["a", "b", "c", "a", "d"]):
        clock.now += 1.0
        feed(m, i, account)
    assert list(m.accounts) == ["account:c", "account:a", "account:d"]  # b was least recent
    assert m.accounts["account:a"].window.n == 2 and m.evicted == 1


@pytest.mark.parametrize(("field", "value"), [("max_accounts", 0), ("idle_evict_s", 0.0)])
def test_limits_are_validated(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Accounts(**{field: value})  # type: ignore[arg-type]
