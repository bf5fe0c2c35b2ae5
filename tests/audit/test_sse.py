"""The SSE decoder against the WHATWG rules, fed in every split of the bytes."""

from __future__ import annotations

import pytest

from distillguard.audit.sse import ServerSentEvent, SSEDecoder


def decode_in_pieces(data: bytes, size: int) -> tuple[list[ServerSentEvent], str]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for start in range(0, len(data), size):
        events += decoder.feed(data[start : start + size])
    tail, pending = decoder.close()
    return events + tail, pending


CASES = [
    (b"data: a\n\n", [ServerSentEvent("a")], ""),
    (b"data: a\r\n\r\n", [ServerSentEvent("a")], ""),
    (b"data: a\r\rdata: b\r\r", [ServerSentEvent("a"), ServerSentEvent("b")], ""),
    (b"data: one\ndata: two\n\n", [ServerSentEvent("one\ntwo")], ""),
    (b": keep-alive\n\ndata:x\n\n", [ServerSentEvent("x")], ""),
    (b'event: error\ndata: {"m": 1}\n\n', [ServerSentEvent('{"m": 1}', event="error")], ""),
    (b"id: 7\nretry: 250\ndata: a\n\n", [ServerSentEvent("a", id="7", retry=250)], ""),
    (b"data: [DONE]\n\ndata: half", [ServerSentEvent("[DONE]")], "half"),  # no blank line: not dispatched
    (b"\n\n\n", [], ""),
    ("data: 天安门\n\n".encode(), [ServerSentEvent("天安门")], ""),  # a character split across reads
    (b"data: \xff\n\n", [ServerSentEvent("\ufffd")], ""),  # invalid UTF-8 is replaced, not fatal
    (b"unknown: field\ndata: a\n\n", [ServerSentEvent("a")], ""),
]


@pytest.mark.parametrize(("data", "events", "pending"), CASES)
@pytest.mark.parametrize("size", [1, 2, 3, 1000])
def test_decoder(data: bytes, events: list[ServerSentEvent], pending: str, size: int) -> None:
    assert decode_in_pieces(data, size) == (events, pending)


def test_an_endless_line_is_refused() -> None:
    decoder = SSEDecoder(max_event_chars=100)
    with pytest.raises(ValueError, match="longer than 100"):
        decoder.feed(b"data: " + b"x" * 200)
