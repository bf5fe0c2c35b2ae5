"""An incremental server-sent-events decoder (WHATWG HTML, "Parsing an event stream").

aiohttp has no SSE client and the rules are short, so they are written out here rather than adding
a dependency: lines end in CRLF, LF or CR (possibly split across network reads), `:` starts a
comment, `data` lines accumulate, a blank line dispatches the event, and an event still open at
the end of the stream is not dispatched (`close` returns it so the caller can record it).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None


class SSEDecoder:
    """Feed bytes as they arrive; get back the events they complete.

    >>> d = SSEDecoder()
    >>> d.feed(b'data: {"a"') + d.feed(b': 1}\\r\\n\\r\\ndata: [DONE]\\n\\n')
    [ServerSentEvent(data='{"a": 1}', event='message', id='', retry=None), ServerSentEvent(data='[DONE]', event='message', id='', retry=None)]
    """

    def __init__(self, *, max_event_chars: int = 1 << 20) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._id = ""
        self._retry: int | None = None
        self._open = False  # a field was seen since the last dispatch
        self._max = max_event_chars

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        self._buffer += self._text.decode(chunk)
        return self._drain(final=False)

    def close(self) -> tuple[list[ServerSentEvent], str]:
        """End of stream: the events still held back, and the data of an event left open without
        its blank line ("" if none), which the spec says not to dispatch."""
        self._buffer += self._text.decode(b"", final=True)
        events = self._drain(final=True)
        pending = "\n".join(self._data) if self._open else ""
        self._data, self._open = [], False
        return events, pending

    def _drain(self, *, final: bool) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                if final and self._buffer:
                    line, self._buffer = self._buffer, ""
                    self._field(line)
                if len(self._buffer) > self._max:
                    raise ValueError(f"an event line longer than {self._max} characters")
                return events
            end, width = cut
            if not final and width == 1 and self._buffer[end] == "\r" and end + 1 == len(self._buffer):
                return events  # a CR at the end of a read may be the first half of CRLF
            line = self._buffer[:end]
            self._buffer = self._buffer[end + width :]
            if line == "":
                if self._open:
                    events.append(self._dispatch())
                continue
            self._field(line)
            if sum(len(d) for d in self._data) > self._max:
                raise ValueError(f"an event longer than {self._max} characters")

    def _field(self, line: str) -> None:
        if line.startswith(":"):
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._open = True
        elif name == "event":
            self._event = value
            self._open = True
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)

    def _dispatch(self) -> ServerSentEvent:
        event = ServerSentEvent("\n".join(self._data), self._event or "message", self._id, self._retry)
        self._data, self._event, self._open = [], "", False
        return event


_EOL = re.compile(r"\r\n|\r|\n")


def _line_end(buffer: str) -> tuple[int, int] | None:
    found = _EOL.search(buffer)
    return None if found is None else (found.start(), found.end() - found.start())
