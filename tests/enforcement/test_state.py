"""One conformance suite for every state backend (memory, Redis): token buckets, the ban list
and its propagation to other replicas, counters; plus Redis being unreachable."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from distillguard.enforcement.policy import Bucket
from distillguard.enforcement.state import (
    EnforcementState,
    MemoryState,
    RedisState,
    StateUnavailable,
    open_state,
)

Factory = Callable[[], EnforcementState]


@pytest.fixture(params=["memory", "redis"])
def make_state(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """Builds replicas that share one ban list / one Redis namespace."""
    if request.param == "memory":
        bans = tmp_path / "bans.jsonl"
        return lambda: MemoryState(bans_file=bans, poll_s=0.05)
    url = request.getfixturevalue("redis_url")
    prefix = f"dgtest-{uuid.uuid4().hex[:8]}:"
    return lambda: RedisState(url, prefix=prefix, poll_s=0.2)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


def test_bucket_allows_burst_then_refills(make_state: Factory) -> None:
    async def body() -> None:
        state = make_state()
        await state.start()
        bucket = Bucket(rate_per_s=20.0, burst=3)
        key = "acct-" + uuid.uuid4().hex
        assert [await state.take(key, bucket) for _ in range(4)] == [True, True, True, False]
        await asyncio.sleep(0.12)  # 20/s: two tokens back
        assert [await state.take(key, bucket) for _ in range(3)] == [True, True, False]
        assert await state.take("other-" + key, bucket)  # buckets are per key
        await state.close()

    run(body)


def test_redis_bucket_is_shared_by_replicas(redis_url: str) -> None:
    async def body() -> None:
        prefix = f"dgtest-{uuid.uuid4().hex[:8]}:"
        a, b = RedisState(redis_url, prefix=prefix), RedisState(redis_url, prefix=prefix)
        await a.start()
        await b.start()
        bucket = Bucket(rate_per_s=0.001, burst=2)
        assert [await a.take("k", bucket), await b.take("k", bucket), await a.take("k", bucket)] == [
            True,
            True,
            False,
        ]
        await a.close()
        await b.close()

    run(body)


def test_ban_reaches_another_replica_within_seconds_and_lift_too(make_state: Factory) -> None:
    async def body() -> None:
        a, b = make_state(), make_state()
        await a.start()
        await b.start()
        assert b.banned("acct-x", None) is None
        await a.ban("account:acct-x", "scan verdict distiller", source="scan")
        await a.ban("actor:actor-9", "case 17")
        started = time.monotonic()
        while (
            b.banned("acct-x", None) is None or b.banned("acct-new", "actor-9") is None
        ) and time.monotonic() - started < 3:
            await asyncio.sleep(0.02)
        ban = b.banned("acct-x", None)
        assert ban is not None and ban.source == "scan" and ban.reason == "scan verdict distiller"
        assert b.banned("acct-new", "actor-9") is not None  # a new account of a banned actor
        assert b.banned("acct-y", "actor-1") is None
        await a.lift("account:acct-x")
        started = time.monotonic()
        while b.banned("acct-x", None) is not None and time.monotonic() - started < 3:
            await asyncio.sleep(0.02)
        assert b.banned("acct-x", None) is None
        await a.close()
        await b.close()

    run(body)


def test_counters(make_state: Factory) -> None:
    async def body() -> None:
        state = make_state()
        await state.start()
        for action in ("allow", "allow", "block"):
            state.count("acct-c", action)
        assert await state.counts("acct-c") == {"allow": 2, "block": 1}
        await state.close()

    run(body)


def test_ban_written_straight_into_redis_is_picked_up(redis_url: str) -> None:
    """A ban made by another tool (`redis-cli HSET`, no publish) arrives through the periodic re-read."""
    import redis

    async def body() -> None:
        prefix = f"dgtest-{uuid.uuid4().hex[:8]}:"
        state = RedisState(redis_url, prefix=prefix, poll_s=0.2)
        await state.start()
        redis.Redis.from_url(redis_url).hset(
            prefix + "bans", "account:acct-z", b'{"subject":"account:acct-z","reason":"manual"}'
        )
        started = time.monotonic()
        while state.banned("acct-z", None) is None and time.monotonic() - started < 3:
            await asyncio.sleep(0.05)
        assert state.banned("acct-z", None) is not None
        await state.close()

    run(body)


def test_unreachable_redis_is_reported_not_hidden() -> None:
    async def body() -> None:
        state = RedisState("redis://127.0.0.1:1/0", poll_s=0.1, timeout_s=0.1)
        await state.start()
        assert state.healthy is False
        with pytest.raises(StateUnavailable):
            await state.take("k", Bucket(rate_per_s=1, burst=1))
        with pytest.raises(StateUnavailable):
            await state.ban("account:a", "x")
        await state.close()

    run(body)


def test_unknown_backend_fails_loudly() -> None:
    with pytest.raises(ValueError, match="unknown state backend 'postgres://x'"):
        open_state("postgres://x")
