"""Reasoning protection on whole answers and on streams split at awkward places."""

from __future__ import annotations

import copy

import pytest

from distillguard.gateway.reasoning import SUMMARY_NOTE, ReasoningProtector, ThinkFilter, protect_response


@pytest.mark.parametrize(
    ("pieces", "visible", "hidden"),
    [
        (["<think>secret</think>answer"], "answer", "secret"),
        (["<thi", "nk>sec", "ret</th", "ink>\n\nans", "wer"], "answer", "secret"),
        (["plain ", "text < 3 and <b>bold</b>"], "plain text < 3 and <b>bold</b>", ""),
        (["a<", "think>x</think>b"], "ab", "x"),
        (["<|begin_of_thought|>t<|end_of_thought|>", "ok"], "ok", "t"),
        (["<think>never closed"], "", "never closed"),
        (["answer ends with <"], "answer ends with <", ""),
    ],
)
def test_think_filter_across_deltas(pieces: list[str], visible: str, hidden: str) -> None:
    think = ThinkFilter()
    out = "".join(think.feed(p) for p in pieces) + think.flush()
    assert out == visible
    assert "".join(think.hidden) == hidden


def chat(message: dict) -> dict:
    return {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }


@pytest.mark.parametrize(
    ("action", "message", "expected"),
    [
        ("strip", {"content": "<think>a. b.</think>\n\nHi", "reasoning_content": "x"}, {"content": "Hi"}),
        (
            "keep",
            {"content": "<think>a</think>Hi", "reasoning": "x"},
            {"content": "<think>a</think>Hi", "reasoning": "x"},
        ),
        (
            "summary",
            {"content": "Hi", "reasoning_content": "First. Middle. Last."},
            {"content": "Hi", "reasoning_content": f"First. … Last. {SUMMARY_NOTE}"},
        ),
    ],
)
def test_protect_whole_chat_answer(action: str, message: dict, expected: dict) -> None:
    body = chat(dict(message))
    protect_response(body, action)
    assert body["choices"][0]["message"] == expected


def test_protect_responses_api_output() -> None:
    body = {
        "object": "response",
        "output": [
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "s"}],
                "content": [{"text": "raw"}],
            },
            {"type": "message", "content": [{"type": "output_text", "text": "<think>t</think>answer"}]},
        ],
    }
    summarised = copy.deepcopy(body)
    assert protect_response(body, "strip") > 0
    assert [item["type"] for item in body["output"]] == ["message"]
    assert body["output"][0]["content"][0]["text"] == "answer"
    protect_response(summarised, "summary")  # the provider's own summary stays, the raw trace goes
    assert summarised["output"][0] == {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "s"}],
    }


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def test_stream_protector_drops_reasoning_only_chunks_and_summarises_once() -> None:
    stream = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "Okay so. "}),
        chunk({"reasoning_content": "The answer is 4."}),
        chunk({"content": "<think>"}),
        chunk({"content": "hmm</think>"}),
        chunk({"content": "Four."}),
        chunk({}, "stop"),
    ]
    for action, reasoning_seen in (
        ("strip", []),
        ("summary", [f"Okay so. … hmm {SUMMARY_NOTE}"]),
    ):
        protector = ReasoningProtector(action)
        sent = [protector.chat_chunk(copy.deepcopy(c)) for c in stream]
        kept = [c for c in sent if c is not None]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in kept)
        reasoning = [
            c["choices"][0]["delta"]["reasoning_content"]
            for c in kept
            if "reasoning_content" in c["choices"][0]["delta"]
        ]
        assert text == "Four."
        assert len(kept) == 3  # role, answer, finish: nothing betrays the hidden chunks
        assert reasoning == reasoning_seen
        assert protector.hidden_chars > 0
