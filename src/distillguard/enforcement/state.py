"""Enforcement state shared by the calls of one gateway (in-process) or of several replicas (Redis):
token buckets, the ban list and per-account decision counters.

Backends are chosen by name from a URL (`memory://`, `redis://...`) and fail loudly on an unknown
one. The ban list is read on every call, so each replica keeps a local copy that bans made
elsewhere (the scan, case review, another replica, `redis-cli`) reach within `poll_s` seconds:
through pub/sub at once, through a periodic re-read in any case. Buckets and counters are not
cached: a throttle must hold across replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec

from distillguard.enforcement.policy import Bucket

log = logging.getLogger("distillguard.enforcement.state")


class StateUnavailable(RuntimeError):
    """The shared state cannot be reached; the policy's `fail_mode` decides what happens."""


class Ban(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One enforcement entry. `subject` is `account:<id>`, `actor:<id>`, or an indicator of a
    decided actor (`payment:<fingerprint>`, `signup_ip:<ip>`, `tls_asn:<fingerprint>@AS<n>`,
    `template:<fingerprint>`). `action` is what a matching call gets: `ban` (403), `throttle`
    (the actor's token bucket), `allow` (sanctioned: rules do not act) or `exempt` (cleared by a
    reviewer: never held for sharing an actor's indicator; rules still act). An indicator entry never
    acts on its own: a new account that matches one is *held* (`hold`: true on its own account
    entry) to the actor's decision, pending review, under the policy's `recidivism` section."""

    subject: str
    reason: str
    source: str = "gateway"
    ts: float = 0.0
    lifted: bool = False
    action: str = "ban"
    actor: str | None = None  # the actor (case) whose decision this entry carries
    case_id: int | None = None
    hold: bool = False
    # a peer's watch entry (`watch:<peer>:<kind>:<key id>:<keyed hash>:<actor>`, written by
    # `distillguard intel pull`): never matched after this time (epoch seconds)
    expires: float | None = None
    confidence: int | None = None  # a peer's watch entry: the peer's confidence in it (0-100)


ACCOUNT_KINDS = ("account", "actor")
# Indicator kinds an enforcement entry may be keyed by: the static identifiers of linking
# (`linking.actor_cluster.STATIC_KINDS`) except raw IPs, which residential proxies share with
# innocent users.
INDICATOR_KINDS = ("payment", "signup_ip", "tls_asn", "template", "system_prompt")


def ban_subject(kind: str, ident: str) -> str:
    if kind not in ACCOUNT_KINDS and kind not in INDICATOR_KINDS:
        raise ValueError(
            f"ban subject kind must be one of {', '.join(ACCOUNT_KINDS + INDICATOR_KINDS)}, not {kind!r}"
        )
    return f"{kind}:{ident}"


ACTIONS = ("ban", "throttle", "allow", "exempt")
# a peer's indicator (`distillguard intel pull`): matched under the community key, never acted on
# by itself (`intel.watch`)
WATCH_KIND = "watch"


def entry_problem(entry: Ban, recorded_as: str | None = None) -> str | None:
    """Why an entry read from a shared ban list cannot be applied, or None. Such an entry is
    skipped and counted (`BanListReport`), never allowed to stop the list from loading."""
    kind, sep, ident = entry.subject.partition(":")
    if (
        not sep
        or not ident
        or (kind not in ACCOUNT_KINDS and kind not in INDICATOR_KINDS and kind != WATCH_KIND)
    ):
        return f"subject {entry.subject[:80]!r} is not <kind>:<id> of a known kind"
    if entry.action not in ACTIONS:
        return f"action {entry.action[:40]!r} is not one of {', '.join(ACTIONS)}"
    if recorded_as is not None and recorded_as != entry.subject:
        return f"recorded under {recorded_as[:80]!r} but its subject is {entry.subject[:80]!r}"
    return None


class BanListReport(msgspec.Struct, kw_only=True):
    """What /healthz says of the ban list: entries in force, and entries skipped as malformed."""

    entries: int = 0
    skipped: int = 0  # in the last full read of the list
    skipped_total: int = 0  # since start, pub/sub messages included
    last_skipped: str | None = None  # where and why, for the operator


class EnforcementState(Protocol):
    name: str

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    @property
    def healthy(self) -> bool: ...
    def banned(self, account_id: str, actor: str | None) -> Ban | None: ...
    async def ban(self, subject: str, reason: str, source: str = "gateway") -> Ban: ...
    async def put(self, entry: Ban) -> Ban: ...
    def entries(self) -> list[Ban]: ...
    def indicator_match(self, subjects: list[str]) -> Ban | None: ...
    @property
    def has_indicators(self) -> bool: ...
    async def lift(self, subject: str) -> None: ...
    async def take(self, key: str, bucket: Bucket) -> bool: ...
    def count(self, account_id: str, action: str) -> None: ...
    async def counts(self, account_id: str) -> dict[str, int]: ...
    def ban_list_report(self) -> BanListReport: ...


class _BanCache:
    """The replica's copy of the ban list, consulted on every call without I/O."""

    def __init__(self) -> None:
        self.bans: dict[str, Ban] = {}
        # entries keyed by an indicator (not an account or actor): while there are none, which is
        # the usual case, the request path skips recidivism matching altogether
        self.indicators = 0
        self.report = BanListReport()
        self._skipped: set[str] = set()  # "where: why" of the last full read, reported once each

    def skip_message(self, where: str, why: str) -> None:
        """A pushed entry that cannot be applied: skipped, counted and reported, never fatal."""
        self.report.skipped_total += 1
        self.report.last_skipped = f"{where}: {why}"
        log.warning("ban list entry skipped: %s: %s", where, why)

    def replace(self, bans: dict[str, Ban], skipped: tuple[str, ...] = ()) -> None:
        """The whole list, read again; `skipped` says where and why of each unusable entry (the
        list is re-read every few seconds: each is logged once, not at every read)."""
        self.bans = {subject: ban for subject, ban in bans.items() if not ban.lifted}
        self.indicators = sum(1 for subject in self.bans if not _on_account(subject))
        new = [line for line in skipped if line not in self._skipped]
        for line in new:
            log.warning("ban list entry skipped: %s", line)
        self._skipped = set(skipped)
        self.report.entries = len(self.bans)
        self.report.skipped = len(skipped)
        self.report.skipped_total += len(new)
        if new:
            self.report.last_skipped = new[-1]

    def apply(self, ban: Ban) -> None:
        known = ban.subject in self.bans
        if ban.lifted:
            self.bans.pop(ban.subject, None)
        else:
            self.bans[ban.subject] = ban
        if not _on_account(ban.subject) and known != (ban.subject in self.bans):
            self.indicators += 1 if not known else -1
        self.report.entries = len(self.bans)

    def banned(self, account_id: str, actor: str | None) -> Ban | None:
        if not self.bans:
            return None
        found = self.bans.get("account:" + account_id)
        if found is None and actor:
            found = self.bans.get("actor:" + actor)
        return found

    def indicator_match(self, subjects: list[str]) -> Ban | None:
        """The first indicator entry among `subjects` (most specific first, as the caller orders)."""
        if not self.bans:
            return None
        for subject in subjects:
            found = self.bans.get(subject)
            if found is not None:
                return found
        return None

    def entries(self) -> list[Ban]:
        return list(self.bans.values())


def _on_account(subject: str) -> bool:
    return subject.startswith(("account:", "actor:"))


_ban_decoder = msgspec.json.Decoder(Ban)


class _ListedState:
    """What both backends do alike with their copy of the enforcement list; each says how an entry
    is recorded (`_record`: the bans file, or Redis)."""

    _cache: _BanCache

    async def _record(self, entry: Ban) -> None:
        raise NotImplementedError

    def banned(self, account_id: str, actor: str | None) -> Ban | None:
        return self._cache.banned(account_id, actor)

    def entries(self) -> list[Ban]:
        return self._cache.entries()

    def indicator_match(self, subjects: list[str]) -> Ban | None:
        return self._cache.indicator_match(subjects)

    @property
    def has_indicators(self) -> bool:
        return self._cache.indicators > 0

    def ban_list_report(self) -> BanListReport:
        return msgspec.structs.replace(self._cache.report)

    async def ban(self, subject: str, reason: str, source: str = "gateway") -> Ban:
        return await self.put(Ban(subject=subject, reason=reason, source=source))

    async def put(self, entry: Ban) -> Ban:
        if not entry.ts:
            entry.ts = time.time()
        await self._record(entry)
        return entry

    async def lift(self, subject: str) -> None:
        await self._record(Ban(subject=subject, reason="lifted", ts=time.time(), lifted=True))


class MemoryState(_ListedState):
    """One process's state. With a `bans_file`, the ban list is a JSON-lines file that this and
    other processes (gateway workers, the scan) append to and that is re-read when it changes."""

    name = "memory"

    def __init__(
        self,
        bans_file: str | Path | None = None,
        poll_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bans_file = Path(bans_file) if bans_file else None
        # `distillguard replay` sets the clock to each recorded call's time, so buckets refill as
        # they would have live.
        self.clock = clock
        self.poll_s = poll_s
        self._cache = _BanCache()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._counts: dict[str, Counter[str]] = {}
        self._seen: tuple[float, int] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return True

    async def start(self) -> None:
        if self.bans_file is not None:
            self._reload()
            self._task = asyncio.create_task(self._watch())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _reload(self) -> None:
        assert self.bans_file is not None
        try:
            stat = self.bans_file.stat()
        except FileNotFoundError:
            self._cache.replace({})
            self._seen = None
            return
        if self._seen == (stat.st_mtime, stat.st_size):
            return
        bans: dict[str, Ban] = {}
        skipped: list[str] = []
        for number, line in enumerate(self.bans_file.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            ban, problem = _decode_entry(line)
            if ban is None:
                skipped.append(f"{self.bans_file}:{number}: {problem}")
                continue
            bans[ban.subject] = ban  # later lines (lifts, re-bans) win
        self._cache.replace(bans, tuple(skipped))
        self._seen = (stat.st_mtime, stat.st_size)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                self._reload()
            except OSError as error:
                log.warning("cannot re-read ban list %s: %s", self.bans_file, error)

    def _append(self, ban: Ban) -> None:
        self._cache.apply(ban)
        if self.bans_file is not None:
            # the list names accounts and actors: readable by the operator's group, no one else
            fd = os.open(self.bans_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            with os.fdopen(fd, "ab") as out:
                out.write(msgspec.json.encode(ban) + b"\n")

    async def _record(self, entry: Ban) -> None:
        self._append(entry)

    async def take(self, key: str, bucket: Bucket) -> bool:
        now = self.clock()
        tokens, last = self._buckets.get(key, (bucket.burst, now))
        tokens = min(bucket.burst, tokens + (now - last) * bucket.rate_per_s)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        return allowed

    def count(self, account_id: str, action: str) -> None:
        self._counts.setdefault(account_id, Counter())[action] += 1

    async def counts(self, account_id: str) -> dict[str, int]:
        return dict(self._counts.get(account_id, {}))


# Token bucket in one round trip, on Redis's clock so replicas with skewed clocks agree.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return ok
"""


def _text(value: bytes | str, lenient: bool = False) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace" if lenient else "strict")
    return value


def _decode_entry(value: bytes | str, key: bytes | str | None = None) -> tuple[Ban | None, str | None]:
    """An entry of the shared list, or (None, why it is unusable)."""
    try:
        ban = _ban_decoder.decode(value)
        problem = entry_problem(ban, None if key is None else _text(key))
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # ValidationError too
        return None, f"not an entry: {error}"
    return (None, problem) if problem else (ban, None)


CLOSE_WAIT_S = 2.0  # the longest each shutdown step waits on Redis


class RedisState(_ListedState):
    """State shared by replicas through Redis: bans in a hash (`<prefix>bans`) announced on a
    pub/sub channel of the same name, buckets as Lua-updated hashes, counters flushed in batches."""

    name = "redis"

    def __init__(
        self,
        url: str,
        prefix: str = "dg:",
        poll_s: float = 2.0,
        timeout_s: float = 0.25,
        flush_s: float = 1.0,
    ) -> None:
        import redis.asyncio as redis_asyncio

        self.url = url
        self.prefix = prefix
        self.poll_s = poll_s
        self.flush_s = flush_s
        self._redis = redis_asyncio.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=0
        )
        self._cache = _BanCache()
        self._pending: Counter[tuple[str, str]] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._healthy = True
        self._closing = False
        self._take_script: Any = self._redis.register_script(_TAKE)

    @property
    def bans_key(self) -> str:
        return self.prefix + "bans"

    @property
    def healthy(self) -> bool:
        return self._healthy

    def _mark(self, ok: bool, error: Exception | None = None) -> None:
        if ok != self._healthy:
            if ok:
                log.info("redis state %s reachable again", self.url)
            else:
                log.error("redis state %s unreachable: %s", self.url, error)
        self._healthy = ok

    async def start(self) -> None:
        try:
            await self._refresh()
        except Exception as error:  # any redis failure means "unavailable"
            self._mark(False, error)
        self._tasks = [
            asyncio.create_task(self._poll()),
            asyncio.create_task(self._listen()),
            asyncio.create_task(self._flush_loop()),
        ]

    async def close(self) -> None:
        self._closing = True
        listener, others = self._tasks[1:2], self._tasks[:1] + self._tasks[2:]
        for task in others:
            task.cancel()
        for task in others:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # the listener notices `_closing` within its 0.5 s poll; redis-py can block past its own
        # timeout on a dropped subscription, so shutdown waits a bounded time, never forever
        if listener:
            _, pending = await asyncio.wait(listener, timeout=CLOSE_WAIT_S)
            if pending:  # blocked in a read: dropping the connections ends it
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self._redis.connection_pool.disconnect(inuse_connections=True), CLOSE_WAIT_S
                    )
                _, pending = await asyncio.wait(pending, timeout=CLOSE_WAIT_S)
            for task in pending:
                task.cancel()
                await asyncio.wait([task], timeout=CLOSE_WAIT_S)
                if not task.done():
                    log.warning(
                        "ban channel listener of %s did not stop within %.0f s", self.url, CLOSE_WAIT_S
                    )
        try:
            await asyncio.wait_for(self._flush(), timeout=CLOSE_WAIT_S)
        except Exception as error:
            log.warning("decision counters not flushed to %s at shutdown: %s", self.url, error)
        try:
            await asyncio.wait_for(self._redis.aclose(), timeout=CLOSE_WAIT_S)
        except Exception as error:
            log.warning("redis connection to %s not closed cleanly: %s", self.url, error)

    async def _refresh(self) -> None:
        raw = await self._redis.hgetall(self.bans_key)
        bans: dict[str, Ban] = {}
        skipped: list[str] = []
        for key, value in raw.items():
            ban, problem = _decode_entry(value, key)
            if ban is None:
                skipped.append(f"{self.bans_key}[{_text(key, lenient=True)[:80]!r}]: {problem}")
                continue
            bans[ban.subject] = ban
        self._cache.replace(bans, tuple(sorted(skipped)))
        self._mark(True)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self._refresh()
            except Exception as error:  # keep the last known list, report, retry
                self._mark(False, error)

    async def _listen(self) -> None:
        # Pub/sub makes a ban visible at once; the poll above covers a missed message.
        while not self._closing:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.bans_key)
                # polled with a timeout rather than cancelled: redis-py can swallow a cancellation
                while not self._closing:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        ban, problem = _decode_entry(message["data"])
                        if ban is None:
                            where = f"message on channel {self.bans_key}"
                            self._cache.skip_message(where, problem or "unreadable")
                        else:
                            self._cache.apply(ban)
            except Exception as error:
                if self._closing:
                    return
                log.warning("ban channel %s lost: %s; re-subscribing", self.bans_key, error)
                await asyncio.sleep(self.poll_s)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _publish(self, ban: Ban) -> None:
        payload = msgspec.json.encode(ban)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.bans_key, ban.subject, payload)
                pipe.publish(self.bans_key, payload)
                await pipe.execute()
        except Exception as error:
            self._mark(False, error)
            raise StateUnavailable(f"cannot record ban of {ban.subject}: {error}") from error
        self._cache.apply(ban)

    async def _record(self, entry: Ban) -> None:
        await self._publish(entry)

    async def take(self, key: str, bucket: Bucket) -> bool:
        try:
            allowed = await self._take_script(
                keys=[self.prefix + "bucket:" + key], args=[bucket.rate_per_s, bucket.burst]
            )
        except Exception as error:
            self._mark(False, error)
            raise StateUnavailable(f"token bucket {key}: {error}") from error
        self._mark(True)
        return bool(allowed)

    def count(self, account_id: str, action: str) -> None:
        self._pending[(account_id, action)] += 1

    async def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, Counter()
        async with self._redis.pipeline(transaction=False) as pipe:
            for (account_id, action), n in pending.items():
                pipe.hincrby(self.prefix + "counts:" + account_id, action, n)
            await pipe.execute()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self._flush()
            except Exception as error:  # counters are statistics: report and go on
                log.warning("decision counters not flushed to %s: %s", self.url, error)

    async def counts(self, account_id: str) -> dict[str, int]:
        await self._flush()
        raw = await self._redis.hgetall(self.prefix + "counts:" + account_id)
        return {_text(k): int(v) for k, v in raw.items()}


def open_state(url: str | None, bans_file: str | Path | None = None, prefix: str = "dg:") -> EnforcementState:
    """The state backend named by `url`: `memory://` (default) or `redis://host:port/db`; `prefix`
    namespaces the Redis keys so several deployments can share one Redis."""
    if not url or url.startswith("memory:"):
        return MemoryState(bans_file=bans_file)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisState(url, prefix=prefix)
    raise ValueError(f"unknown state backend {url!r}; known: memory://, redis://HOST:PORT/DB")


def ban_from_json(line: str | bytes) -> Ban:
    return _ban_decoder.decode(line)


__all__ = [
    "Ban",
    "BanListReport",
    "EnforcementState",
    "MemoryState",
    "RedisState",
    "StateUnavailable",
    "ban_subject",
    "open_state",
]
