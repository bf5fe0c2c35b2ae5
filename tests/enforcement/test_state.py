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
        # slow enough that a loaded machine's scheduling delays (tenths of a second) refill nothing
        bucket = Bucket(rate_per_s=2.0, burst=3)
        key = "acct-" + uuid.uuid4().hex
        assert [await state.take(key, bucket) for _ in range(4)] == [True, True, True, False]
        await asyncio.sleep(1.1)  # 2/s: two tokens back, a third only 0.4 s later
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


# ---- a malformed entry in the shared ban list (issue 12, finding 7) -----------------------------
MALFORMED: list[tuple[str, bytes]] = [
    ("account:acct-1", b"this is not json"),
    ("account:acct-2", b'{"subject": 5, "reason": "wrong type"}'),
    ("acct-3", b'{"subject": "acct-3", "reason": "no kind"}'),
    ("account:acct-4", b'{"subject": "account:acct-4", "reason": "typo", "action": "bann"}'),
    ("account:acct-5", b'{"subject": "account:acct-6", "reason": "recorded under another subject"}'),
    ("account:acct-7", b"\xff\xfe"),
]
GOOD = ("account:acct-banned", b'{"subject": "account:acct-banned", "reason": "case 7"}')


def test_malformed_redis_entries_are_skipped_counted_and_reported(redis_url: str) -> None:
    """One bad entry used to make every refresh fail: fail_mode closed refused everyone (503),
    open stopped applying new bans. Now it is skipped, counted, reported, and the rest applies."""
    import redis

    async def body() -> None:
        prefix = f"dgtest-{uuid.uuid4().hex[:8]}:"
        client = redis.Redis.from_url(redis_url)
        client.hset(prefix + "bans", mapping=dict([*MALFORMED, GOOD]))
        state = RedisState(redis_url, prefix=prefix, poll_s=0.1)
        await state.start()
        try:
            assert state.healthy  # so fail_mode closed serves, and open keeps applying bans
            assert state.banned("acct-banned", None) is not None
            assert all(state.banned(f"acct-{i}", None) is None for i in range(1, 8))
            report = state.ban_list_report()
            assert (report.entries, report.skipped, report.skipped_total) == (
                1,
                len(MALFORMED),
                len(MALFORMED),
            )
            # a ban made later still applies, through pub/sub and the re-read alike; a bad message is skipped
            started = time.monotonic()
            while client.pubsub_numsub(prefix + "bans")[0][1] == 0 and time.monotonic() - started < 3:
                await asyncio.sleep(0.05)  # the replica has subscribed
            client.publish(prefix + "bans", b"garbage")
            await state.ban("account:acct-later", "case 8")
            client.hset(
                prefix + "bans", "account:acct-direct", b'{"subject":"account:acct-direct","reason":"x"}'
            )
            started = time.monotonic()
            while state.banned("acct-direct", None) is None and time.monotonic() - started < 3:
                await asyncio.sleep(0.05)
            assert (
                state.banned("acct-later", None) is not None and state.banned("acct-direct", None) is not None
            )
            await asyncio.sleep(0.3)  # several re-reads: each bad entry is counted once, not at every read
            report = state.ban_list_report()
            assert report.skipped == len(MALFORMED) and report.skipped_total == len(MALFORMED) + 1
            assert report.last_skipped is not None and "message on channel" in report.last_skipped
            assert state.healthy
        finally:  # a replica left open would keep asyncio.run from returning
            await state.close()
        client.delete(prefix + "bans")

    run(body)


def test_malformed_bans_file_lines_are_skipped_counted_and_reported(tmp_path: Path) -> None:
    bans = tmp_path / "bans.jsonl"
    bans.write_bytes(b"\n".join(value for _, value in [*MALFORMED, GOOD]) + b"\n")

    async def body() -> None:
        state = MemoryState(bans_file=bans, poll_s=0.05)
        await state.start()
        assert state.banned("acct-banned", None) is not None
        report = state.ban_list_report()
        # the file's entries are not keyed, so the entry recorded under another subject is fine here
        assert (report.entries, report.skipped) == (2, len(MALFORMED) - 1)
        assert report.last_skipped is not None and f"{bans}:6" in report.last_skipped
        await state.close()

    run(body)


def test_the_bans_file_is_created_private(tmp_path: Path) -> None:
    bans = tmp_path / "bans.jsonl"

    async def body() -> None:
        state = MemoryState(bans_file=bans)
        await state.start()
        await state.ban("account:acct-1", "case 1")
        await state.close()

    run(body)
    assert bans.stat().st_mode & 0o077 == 0o040
