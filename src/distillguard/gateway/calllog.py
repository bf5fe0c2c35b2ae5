"""The gateway's durable, append-only call log: one canonical event (plus the decision) per call,
written before the client receives the last byte of its response, rolled into the Parquet store.

Why this order: a call counts as served when the client has the whole response, so the record is
appended (one `write(2)` of one line to an `O_APPEND` file) just before the final bytes go out.
Once `write` returns the line is in the kernel's page cache, and a `kill -9` of the gateway cannot
lose it. `sync="fsync"` also survives power loss: records are group-committed (one `fdatasync`
for every call that arrived meanwhile, in a thread) and the response waits for its commit.

Each process writes its own segment (`calls-<time>-<pid>.jsonl`) under an exclusive `flock`, so
several workers never interleave and a segment whose lock is free belongs to nobody: at start and
after each rotation, such segments are rolled into `store/part-*.parquet` (the scan's STORE_SCHEMA)
and archived as `archive/*.jsonl.gz` (canonical events with decisions), off the request path.
"""

from __future__ import annotations

import asyncio
import fcntl
import gzip
import logging
import os
import shutil
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from distillguard.enforcement.engine import Decision
from distillguard.events.call_view import STORE_SCHEMA, view_of
from distillguard.events.model import CallEvent

log = logging.getLogger("distillguard.gateway.calllog")


class LoggedCall(CallEvent, kw_only=True):
    """A canonical event line with the gateway's decision as an extra field (readers of the
    events spec ignore unknown fields, so the log is a valid `events.jsonl`)."""

    decision: Decision | None = None


_encoder = msgspec.json.Encoder()
logged_decoder = msgspec.json.Decoder(LoggedCall)


class SegmentError(ValueError):
    """A segment that `read_segment(strict=True)` cannot read; the message names file and line."""


def read_segment(path: Path, *, strict: bool = False) -> Iterator[LoggedCall]:
    """The records of a segment. Rolling (`strict=False`) reports a torn or invalid line and skips
    it, never silently. Readers that must not lose a record (`strict=True`, the case import) stop
    at it with a SegmentError; only a live segment's last line that has no newline yet (the gateway
    is writing it) is left for the next read."""
    live = path.suffix != ".gz"
    try:
        with open(path, "rb") if live else gzip.open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                if strict and live and not line.endswith(b"\n"):
                    log.info("%s:%d: record still being written; the next read takes it", path, number)
                    return
                try:
                    yield logged_decoder.decode(line)
                except (msgspec.DecodeError, ValueError) as error:
                    if strict:
                        raise SegmentError(f"{path}:{number}: not a call record: {error}") from None
                    log.warning("%s:%d: call record skipped: %s", path, number, error)
    except (OSError, EOFError, zlib.error) as error:
        if not strict:
            raise
        raise SegmentError(f"{path}: cannot be read: {error}") from None


def store_rows(calls: list[LoggedCall]) -> list[dict[str, Any]]:
    rows = []
    for call in calls:
        row = msgspec.structs.asdict(view_of(call))
        row["request_json"] = _encoder.encode(call.request).decode()
        row["response_json"] = None if call.response is None else _encoder.encode(call.response).decode()
        rows.append(row)
    return rows


# The log holds prompts and answers: the operator's account and its group may read it, nobody else.
DIRECTORY_MODE = 0o750
FILE_MODE = 0o640


def _private_directory(path: Path) -> None:
    """Creates `path` 0750; one that exists is the operator's: said, not changed, if others can read it."""
    try:
        path.mkdir(mode=DIRECTORY_MODE, parents=True)
    except FileExistsError:
        if path.stat().st_mode & 0o007:
            log.warning("%s can be read by every user of this machine; the call log holds prompts", path)


def _private_file(path: Path) -> Any:
    """A new file open for writing whose mode never passes through the umask's default 0644."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE), "wb")


def roll_segment(segment: Path, root: Path) -> Path | None:
    """Write a closed segment into the Parquet store and archive it; returns the Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    calls = list(read_segment(segment))
    store, archive = root / "store", root / "archive"
    _private_directory(store)
    _private_directory(archive)
    part: Path | None = None
    if calls:
        part = store / f"part-{segment.stem}.parquet"
        tmp = part.with_suffix(".parquet.tmp")
        with _private_file(tmp) as out:
            pq.write_table(pa.Table.from_pylist(store_rows(calls), schema=STORE_SCHEMA), out)
        os.replace(tmp, part)
    gz = archive / (segment.name + ".gz")
    with segment.open("rb") as src, _private_file(gz) as raw, gzip.GzipFile(fileobj=raw, mode="wb") as dst:
        shutil.copyfileobj(src, dst)
    segment.unlink()
    return part


class CallLog:
    """Appends records to this process's segment; rotates and rolls segments in the background."""

    def __init__(
        self,
        directory: str | Path,
        sync: str = "write",
        roll_records: int = 100_000,
        roll_seconds: float = 600.0,
    ) -> None:
        if sync not in ("write", "fsync"):
            raise ValueError(f"call log sync must be 'write' or 'fsync', not {sync!r}")
        self.root = Path(directory)
        self.sync = sync
        self.roll_records = roll_records
        self.roll_seconds = roll_seconds
        self._fd = -1
        self._segment: Path | None = None
        self._records = 0
        self._opened_at = 0.0
        self._written = 0
        self._synced = 0
        self._sync_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._sync_wake: asyncio.Event | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._roll_lock = threading.Lock()
        self.appended = 0

    @property
    def segment(self) -> Path | None:
        return self._segment

    def open(self) -> None:
        _private_directory(self.root)
        self._rotate()

    def _rotate(self) -> None:
        old_fd, old = self._fd, self._segment
        name = f"calls-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{time.time_ns() % 10**9:09d}-{os.getpid()}"
        segment = self.root / f"{name}.jsonl"
        fd = os.open(segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd, self._segment, self._records, self._opened_at = fd, segment, 0, time.monotonic()
        if old_fd >= 0:
            os.fsync(old_fd)
            os.close(old_fd)  # releases the lock: the segment is now rollable
            log.info("call log rotated %s -> %s", old, segment)
        threading.Thread(target=self.roll_orphans, name="calllog-roll", daemon=True).start()

    def roll_orphans(self) -> list[Path]:
        """Roll every segment no live writer holds (crashed workers' included)."""
        parts: list[Path] = []
        with self._roll_lock:
            for segment in sorted(self.root.glob("calls-*.jsonl")):
                if segment == self._segment:
                    continue
                try:
                    fd = os.open(segment, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue  # another live process is writing it
                try:
                    part = roll_segment(segment, self.root)
                    if part is not None:
                        parts.append(part)
                except Exception:
                    log.exception(
                        "cannot roll call-log segment %s into the store; it stays in place", segment
                    )
                finally:
                    os.close(fd)
        return parts

    def append(self, call: LoggedCall) -> int:
        """Write one record (returns its sequence number for `committed`)."""
        line = _encoder.encode(call) + b"\n"
        written = os.write(self._fd, line)
        if written != len(line):  # a regular file short-writes only on a full disk
            raise OSError(f"call log {self._segment}: short write ({written} of {len(line)} bytes)")
        self._written += 1
        self._records += 1
        self.appended += 1
        if self._records >= self.roll_records or time.monotonic() - self._opened_at >= self.roll_seconds:
            self._rotate()
        return self._written

    async def committed(self, seq: int) -> None:
        """Wait until record `seq` is on disk (sync='fsync'); immediate for sync='write'."""
        if self.sync == "write" or seq <= self._synced:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sync_waiters.append((seq, future))
        if self._sync_task is None:
            self._sync_wake = asyncio.Event()
            self._sync_task = asyncio.create_task(self._group_commit())
        assert self._sync_wake is not None
        self._sync_wake.set()
        await future

    async def _group_commit(self) -> None:
        assert self._sync_wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._sync_wake.wait()
            self._sync_wake.clear()
            target, fd = self._written, self._fd
            try:
                await loop.run_in_executor(None, os.fdatasync, fd)
            except OSError:
                if fd == self._fd:
                    raise
                # the segment was rotated meanwhile, and rotation fsyncs it before closing
            self._synced = max(self._synced, target)
            waiting, self._sync_waiters = self._sync_waiters, []
            for seq, future in waiting:
                if seq <= self._synced:
                    if not future.done():
                        future.set_result(None)
                else:
                    self._sync_waiters.append((seq, future))
            if self._sync_waiters:
                self._sync_wake.set()

    async def close(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            self._sync_task = None
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._segment = None
        # a clean shutdown rolls its own segment too (a crash leaves it for the next start)
        await asyncio.get_running_loop().run_in_executor(None, self.roll_orphans)
