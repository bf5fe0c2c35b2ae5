"""SSE splitting as bytes arrive, and reassembly of streamed chunks into the logged object."""

from __future__ import annotations

import json

from distillguard.gateway.sse import EventSplitter, StreamAssembler, event_data


def test_splitter_handles_any_chunking() -> None:
    raw = b'data: {"a":1}\n\ndata: {"b":2}\r\n\r\nevent: x\ndata: [DONE]\n\n'
    for size in (1, 3, 7, len(raw)):
        splitter = EventSplitter()
        events = []
        for i in range(0, len(raw), size):
            events += splitter.feed(raw[i : i + size])
        assert [event_data(e) for e in events] == [b'{"a":1}', b'{"b":2}', b"[DONE]"]
        assert splitter.rest() == b""


def test_assembler_rebuilds_chat_with_tool_calls_and_usage() -> None:
    assembler = StreamAssembler("/v1/chat/completions")
    chunks = [
        {
            "id": "c1",
            "model": "m",
            "created": 1,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}],
        },
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "lo", "reasoning_content": "r"}}]},
        {
            "id": "c1",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "t", "function": {"name": "f", "arguments": '{"x"'}}
                        ]
                    },
                }
            ],
        },
        {
            "id": "c1",
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]},
                    "finish_reason": "stop",
                }
            ],
        },
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
    ]
    for c in chunks:
        assembler.add(json.loads(json.dumps(c)))
    body = assembler.result()
    assert body is not None
    message = body["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == ("Hello", "r")
    assert message["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"x":1}'}
    assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["total_tokens"] == 3
    assert (body["id"], body["model"], body["object"]) == ("c1", "m", "chat.completion")


def test_assembler_takes_the_final_responses_object() -> None:
    assembler = StreamAssembler("/v1/responses")
    assembler.add({"type": "response.output_text.delta", "delta": "x"})
    assembler.add({"type": "response.completed", "response": {"id": "r1", "output": []}})
    assert assembler.result() == {"id": "r1", "output": []}
