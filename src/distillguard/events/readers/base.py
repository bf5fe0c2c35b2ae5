"""What every reader shares: the Reject record, reader options, and numbered reading of JSON Lines
files (plain or gzip, detected by content rather than by file name)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

GZIP_MAGIC = b"\x1f\x8b"
# A call with a long conversation and a few images is a few MB of JSON; a line far past that is a
# broken or hostile file. The cap bounds what one line may hold in memory (gzip included).
DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024
_DISCARD_CHUNK = 1024 * 1024


class Reject(msgspec.Struct, kw_only=True, frozen=True):
    """A line that could not become a call: where it is and why, never its content (which may
    hold a secret or personal data)."""

    file: str
    line: int
    reason: str


class ReaderOptions(msgspec.Struct, kw_only=True, frozen=True):
    """Choices a log format cannot answer by itself.

    account: the account every call belongs to, for sources that do not record one (an OpenAI
        Batch file is uploaded by one organisation) or as the fallback for those that may not.
    account_attribute: the span or resource attribute that names the account in OTel spans.
    max_line_bytes: the longest line (without its line break) read; a longer one is a reject.
    """

    account: str | None = None
    account_attribute: str = "distillguard.account_id"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES

    def __post_init__(self) -> None:
        if self.max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be at least 1, got {self.max_line_bytes}")


class OverlongLine(msgspec.Struct, frozen=True):
    """Stands for a line longer than the limit, which was skipped without being held whole."""

    length: int


def read_lines(
    path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes | OverlongLine]]:
    """(line number from 1, line without its line break) for each line; blank trailing line dropped.

    Lines are read with `readline(limit)`, so memory holds at most `max_line_bytes` of one line
    (a gzip of one endless line included): a longer line comes as an `OverlongLine`, the rest of
    it read and dropped in bounded chunks.
    """
    with path.open("rb") as probe:
        gzipped = probe.read(2) == GZIP_MAGIC
    opener: Any = gzip.open if gzipped else open
    number = 0
    # room for the longest allowed line and its "\r\n"; one byte more proves a line too long
    limit = max_line_bytes + 2
    try:
        with opener(path, "rb") as handle:
            while chunk := handle.readline(limit):
                number += 1
                if chunk.endswith(b"\n") or len(chunk) < limit:  # the whole line (or the last one)
                    line = chunk.rstrip(b"\r\n")
                    yield number, (line if len(line) <= max_line_bytes else OverlongLine(length=len(line)))
                    continue
                length = len(chunk)
                while rest := handle.readline(_DISCARD_CHUNK):
                    if rest.endswith(b"\n"):
                        length += len(rest.rstrip(b"\r\n"))
                        break
                    length += len(rest)
                yield number, OverlongLine(length=length)
    except (EOFError, OSError, zlib.error) as error:  # truncated or corrupt gzip stream
        raise UnreadableInput(f"{path}: cannot read past line {number}: {error}") from error


def open_lines(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[tuple[int, bytes]]:
    """`read_lines` for files where a line too long ends the read: `UnreadableInput` names it."""
    for number, line in read_lines(path, max_line_bytes):
        if isinstance(line, OverlongLine):
            raise UnreadableInput(f"{path}:{number}: {overlong_reason(line, max_line_bytes)}")
        yield number, line


def decoded_lines(
    path: Path, decode: Callable[[bytes], T], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes, T] | Reject]:
    """(line number, raw line, decoded value) for each line, or a Reject naming why it is unusable
    (too long, blank, invalid UTF-8, not the expected JSON shape): the loop every line-based
    reader shares."""
    file = str(path)
    for number, line in read_lines(path, max_line_bytes):
        if isinstance(line, OverlongLine):
            yield Reject(file=file, line=number, reason=overlong_reason(line, max_line_bytes))
            continue
        blank = blank_reason(line)
        if blank:
            yield Reject(file=file, line=number, reason=blank)
            continue
        try:
            if not line.isascii():
                # checked here, not left to msgspec: its message for this changed across releases
                line.decode("utf-8")
            value = decode(line)
        except (ValueError, UnicodeDecodeError) as error:  # msgspec errors are ValueErrors
            yield Reject(file=file, line=number, reason=decode_error_reason(error))
            continue
        yield number, line, value


def overlong_reason(line: OverlongLine, max_line_bytes: int) -> str:
    return (
        f"line too long: {line.length} bytes, over the limit of {max_line_bytes} "
        "(raise it with --max-line-bytes)"
    )


class UnreadableInput(ValueError):
    """A file that stops being readable part way (a truncated or corrupt gzip stream): the run
    fails with the file and the last good line rather than ingesting part of it."""


def decode_error_reason(error: Exception) -> str:
    """A reject reason for a failed decode, naming the field path msgspec reports."""
    if isinstance(error, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {error.start}"
    if isinstance(error, msgspec.ValidationError):
        return f"invalid field: {error}"
    if isinstance(error, msgspec.DecodeError):
        return f"invalid JSON: {error}"
    return f"{type(error).__name__}: {error}"


def blank_reason(line: bytes) -> str | None:
    return "empty line" if not line.strip() else None


def ts_from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def parse_ts(value: Any, field: str) -> datetime:
    """An aware datetime from epoch seconds or an RFC 3339 string; ValueError names `field`."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a time, got a boolean")
    if isinstance(value, int | float):
        return ts_from_epoch(float(value))
    if isinstance(value, str) and value:
        text = value.strip()
        try:
            ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
        except ValueError as error:
            raise ValueError(f"{field}: not an RFC 3339 time") from error
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    raise ValueError(f"{field}: missing or not a time")
