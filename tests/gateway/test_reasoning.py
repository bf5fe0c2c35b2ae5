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


# ---- every known carrier, whole and streamed (issue 12, finding 4) ------------------------------
SECRET = "The hidden method is to split seventeen into ten and seven, then add both partial products."


@pytest.mark.parametrize(
    "message",
    [
        {"content": "Hi", "reasoning_content": SECRET},
        {"content": "Hi", "reasoning": SECRET},
        {"content": "Hi", "reasoning_details": [{"type": "reasoning.text", "text": SECRET}]},
        {"content": "Hi", "reasoning_text": SECRET},
        {"content": "Hi", "thinking": SECRET},
        {"content": "Hi", "thinking_blocks": [{"type": "thinking", "thinking": SECRET, "signature": "s"}]},
        {"content": "Hi", "thoughts": SECRET},
        {"content": f"<think>{SECRET}</think>Hi"},
        {"content": f"<thinking>{SECRET}</thinking>Hi"},
        {"content": f"<reasoning>{SECRET}</reasoning>Hi"},
        {"content": [{"type": "thinking", "thinking": SECRET}, {"type": "text", "text": "Hi"}]},
        {"content": [{"type": "text", "text": f"<think>{SECRET}</think>Hi"}]},
        {
            "content": "Hi",
            "vendor_trace": {"nested": [SECRET]},
        },  # unlisted: the message keeps only API fields
    ],
)
def test_strip_leaves_nothing_of_any_carrier(message: dict) -> None:
    body = chat(copy.deepcopy(message))
    protector = ReasoningProtector("strip")
    assert protector.response(body)
    assert SECRET[:30] not in str(body)
    assert "Hi" in str(body["choices"][0]["message"]["content"])


def test_withheld_tokens_leave_the_log_probabilities_too() -> None:
    tokens = ["<think>", "The", " hidden", " method", "</think>", "\n\n", "Four", "."]
    body = chat({"content": "".join(tokens)})
    body["choices"][0]["logprobs"] = {
        "content": [{"token": t, "logprob": -1.0, "top_logprobs": []} for t in tokens]
    }
    ReasoningProtector("strip").response(body)
    assert [t["token"] for t in body["choices"][0]["logprobs"]["content"]] == ["\n\n", "Four", "."]


def test_reasoning_tokens_before_the_answer_leave_the_log_probabilities() -> None:
    """A server whose log-probabilities cover the separately returned reasoning, then the answer."""
    tokens = ["The", " hidden", " method", "Four", "."]
    body = chat({"content": "Four.", "reasoning_content": "The hidden method"})
    body["choices"][0]["logprobs"] = {"content": [{"token": t, "logprob": -1.0} for t in tokens]}
    ReasoningProtector("strip").response(body)
    assert [t["token"] for t in body["choices"][0]["logprobs"]["content"]] == ["Four", "."]


def test_completions_log_probabilities_lose_the_withheld_tokens() -> None:
    tokens = ["<think>", "secret", "</think>", "Four"]
    body = {
        "object": "text_completion",
        "choices": [
            {
                "index": 0,
                "text": "".join(tokens),
                "logprobs": {
                    "tokens": tokens,
                    "token_logprobs": [-1.0, -2.0, -3.0, -4.0],
                    "top_logprobs": [{t: -1.0} for t in tokens],
                    "text_offset": [0, 7, 13, 21],
                },
            }
        ],
    }
    ReasoningProtector("strip").response(body)
    choice = body["choices"][0]
    assert choice["text"] == "Four"
    assert choice["logprobs"]["tokens"] == ["Four"] and choice["logprobs"]["token_logprobs"] == [-4.0]


def test_tokens_that_cannot_be_laid_over_the_text_are_all_dropped() -> None:
    body = chat({"content": "<think>x</think>Four", "reasoning_content": "r"})
    body["choices"][0]["logprobs"] = {"content": [{"token": "unrelated", "logprob": -1.0}]}
    ReasoningProtector("strip").response(body)
    assert body["choices"][0]["logprobs"]["content"] == []


def test_final_scan_removes_withheld_reasoning_from_an_unknown_place() -> None:
    body = chat({"content": "Hi", "reasoning_content": SECRET})
    body["debug"] = {"trace": "prefix " + SECRET + " suffix"}  # a carrier nobody listed, outside the message
    body["choices"][0]["message"]["content"] = "Hi. " + SECRET  # the answer itself is left alone
    protector = ReasoningProtector("strip")
    protector.response(body)
    assert "trace" not in body["debug"]
    assert protector.scan_removed == ["$.debug.trace"]
    assert any("found and removed" in note for note in protector.notes())


def test_summary_keeps_the_extract_and_scans_for_the_rest() -> None:
    trace = "First I add the tens. " + SECRET + " Then I check the total twice. So it is four."
    body = chat({"content": "Four.", "reasoning_content": trace})
    body["debug"] = [SECRET]
    ReasoningProtector("summary").response(body)
    assert body["choices"][0]["message"]["reasoning_content"].startswith(
        "First I add the tens. … So it is four."
    )
    assert body["debug"] == []


def responses_stream(reasoning: str) -> list[dict]:
    item = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Added."}],
        "content": [{"type": "reasoning_text", "text": reasoning}],
        "encrypted_content": "enc-" + reasoning,
    }
    message = {
        "type": "message",
        "id": "m1",
        "content": [{"type": "output_text", "text": "<think>x</think>Four"}],
    }
    final = {"id": "r", "object": "response", "output": [item, message]}
    return [
        {"type": "response.created", "response": {"id": "r", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
        {
            "type": "response.content_part.added",
            "output_index": 0,
            "part": {"type": "reasoning_text", "text": ""},
        },
        {"type": "response.reasoning_text.delta", "output_index": 0, "delta": reasoning[:20]},
        {"type": "response.reasoning_text.delta", "output_index": 0, "delta": reasoning[20:]},
        {"type": "response.reasoning_summary_text.delta", "output_index": 0, "delta": "Added."},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {
            "type": "response.output_text.delta",
            "output_index": 1,
            "item_id": "m1",
            "content_index": 0,
            "delta": "<think>x</think>",
        },
        {
            "type": "response.output_text.delta",
            "output_index": 1,
            "item_id": "m1",
            "content_index": 0,
            "delta": "Four",
        },
        {"type": "response.output_text.done", "output_index": 1, "text": "<think>x</think>Four"},
        {"type": "response.completed", "response": final},
    ]


@pytest.mark.parametrize("action", ["strip", "summary"])
def test_responses_stream_events_never_carry_raw_reasoning(action: str) -> None:
    protector = ReasoningProtector(action)
    sent = [protector.responses_event(copy.deepcopy(e)) for e in responses_stream(SECRET)]
    kept = [e for e in sent if e is not None]
    assert SECRET[:20] not in str(kept) and SECRET[20:40] not in str(kept) and "enc-" not in str(kept)
    text = "".join(e["delta"] for e in kept if e["type"] == "response.output_text.delta")
    assert text == "Four"
    done = next(e for e in kept if e["type"] == "response.output_text.done")
    assert (
        done["text"] == "Four" if action == "strip" else done["text"].endswith(f"{SUMMARY_NOTE}</think>Four")
    )
    reasoning_items = [
        e["item"]
        for e in kept
        if e["type"].startswith("response.output_item") and e["item"]["type"] == "reasoning"
    ]
    final = next(e for e in kept if e["type"] == "response.completed")["response"]["output"]
    summaries = [e for e in kept if e["type"].startswith("response.reasoning_summary")]
    if action == "strip":
        assert reasoning_items == [] and [i["type"] for i in final] == ["message"] and summaries == []
    else:
        assert all(set(i) <= {"type", "id", "summary", "status"} for i in reasoning_items) and reasoning_items
        assert summaries and final[0] == {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Added."}],
        }


def test_stream_chunks_drop_the_log_probabilities_of_withheld_tokens() -> None:
    protector = ReasoningProtector("strip")
    chunks = [
        chunk({"content": "<think>"}),
        chunk({"content": "secret"}),
        chunk({"content": "</think>"}),
        chunk({"content": "Four"}),
    ]
    for c in chunks:
        c["choices"][0]["logprobs"] = {
            "content": [{"token": c["choices"][0]["delta"]["content"], "logprob": -1}]
        }
    sent = [protector.chat_chunk(c) for c in chunks]
    kept = [c for c in sent if c is not None]
    assert [c["choices"][0]["delta"]["content"] for c in kept] == ["Four"]
    assert kept[0]["choices"][0]["logprobs"]["content"][0]["token"] == "Four"
    assert "secret" not in str(kept)


def test_stream_unlisted_delta_fields_and_scan() -> None:
    protector = ReasoningProtector("strip")
    first = protector.chat_chunk(chunk({"reasoning_content": SECRET}))
    second = protector.chat_chunk(chunk({"content": "Four", "vendor_trace": "x"}))
    usage_chunk = {"object": "chat.completion.chunk", "choices": [], "usage": {"note": SECRET}}
    third = protector.chat_chunk(usage_chunk)
    assert first is None and second is not None and "vendor_trace" not in second["choices"][0]["delta"]
    assert third is not None and "note" not in third["usage"]
