"""Reader for the project's own interchange format (`shared/spec/events.md`), plain or gzip."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from distillguard.events.credentials import may_hold_secret, strip_event_credentials
from distillguard.events.model import CallEvent, event_decoder
from distillguard.events.readers.base import (
    ReaderOptions,
    Reject,
    decoded_lines,
)


class CanonicalReader:
    name = "canonical"
    description = "DistillGuard events JSONL (shared/spec/events.md), plain or .gz"

    def read(self, paths: Sequence[Path], options: ReaderOptions) -> Iterator[CallEvent | Reject]:
        for path in paths:
            yield from self._read_one(path, options)

    def _read_one(self, path: Path, options: ReaderOptions) -> Iterator[CallEvent | Reject]:
        for item in decoded_lines(path, event_decoder.decode, options.max_line_bytes):
            if isinstance(item, Reject):
                yield item
                continue
            _number, line, event = item
            # The spec says producers remove credentials; a reader cannot take that on trust.
            if may_hold_secret(line):
                strip_event_credentials(event)
            yield event
