"""The parameter table: (endpoint, request) -> the 400 naming the parameter, or what the call asks
of a tier; and the per-tier table: (asks, tier) -> the parameter refused."""

from __future__ import annotations

from typing import Any

import pytest

from distillguard.enforcement.parameters import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    PARAMETERS,
    RESPONSES,
    TIER_LIMITS,
    Ask,
    RequestError,
    asks,
    check_request,
    tier_violation,
)
from distillguard.enforcement.policy import Requests, Tier, default_policy

REFUSE = Requests()
PASS = Requests(unknown_parameters="pass")
MESSAGES = [{"role": "user", "content": "hi"}]


def chat(**params: Any) -> dict[str, Any]:
    return {"model": "m", "messages": MESSAGES, **params}


@pytest.mark.parametrize(
    ("endpoint", "request_body", "param", "code"),
    [
        (CHAT, chat(n="8"), "n", "invalid_type"),
        (CHAT, chat(n=2.0), "n", "invalid_type"),
        (CHAT, chat(n=True), "n", "invalid_type"),
        (CHAT, chat(temperature="warm"), "temperature", "invalid_type"),
        (CHAT, chat(temperature=float("nan")), "temperature", "invalid_type"),
        (CHAT, chat(logprobs=1), "logprobs", "invalid_type"),
        (CHAT, chat(logit_bias=[[1, 5]]), "logit_bias", "invalid_type"),
        (CHAT, chat(logit_bias={"1": "5"}), "logit_bias", "invalid_type"),
        (CHAT, chat(allowed_token_ids=["1"]), "allowed_token_ids", "invalid_type"),
        (CHAT, chat(stop=[1]), "stop", "invalid_type"),
        (CHAT, chat(stream="yes"), "stream", "invalid_type"),
        (CHAT, chat(echo="true"), "echo", "invalid_type"),
        (CHAT, chat(vendor_knob=1), "vendor_knob", "unknown_parameter"),
        (CHAT, chat(input="hi"), "input", "unknown_parameter"),  # a responses parameter on chat
        (CHAT, {"messages": MESSAGES}, "model", "missing_required_parameter"),
        (CHAT, {"model": "m"}, "messages", "missing_required_parameter"),
        (CHAT, {"model": "m", "messages": []}, "messages", "empty_array"),
        (CHAT, {"model": "m", "messages": ["hi"]}, "messages[0]", "invalid_type"),
        (CHAT, {"model": "m", "messages": [{"content": "hi"}]}, "messages[0].role", "invalid_type"),
        (
            CHAT,
            {"model": "m", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "invalid_type",
        ),
        (
            CHAT,
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": ["a"]}]}]},
            "messages[0].content[0].text",
            "invalid_type",
        ),
        (COMPLETIONS, {"model": "m", "prompt": "hi", "logprobs": True}, "logprobs", "invalid_type"),
        (COMPLETIONS, {"model": "m", "prompt": {"text": "hi"}}, "prompt", "invalid_type"),
        (COMPLETIONS, {"model": "m", "prompt": "hi", "best_of": "2"}, "best_of", "invalid_type"),
        (RESPONSES, {"model": "m", "input": "hi", "include": "x"}, "include", "invalid_type"),
        (RESPONSES, {"model": "m", "input": [5]}, "input[0]", "invalid_type"),
        (RESPONSES, {"model": "m", "input": "hi", "logprobs": True}, "logprobs", "unknown_parameter"),
        (EMBEDDINGS, {"model": "m", "input": [{"a": 1}]}, "input", "invalid_type"),
    ],
)
def test_requests_that_do_not_follow_the_api_are_refused_naming_the_parameter(
    endpoint: str, request_body: dict, param: str, code: str
) -> None:
    with pytest.raises(RequestError) as refused:
        check_request(request_body, endpoint, REFUSE)
    assert (refused.value.param, refused.value.code) == (param, code)


@pytest.mark.parametrize(
    ("endpoint", "request_body", "expected"),
    [
        (CHAT, chat(), ()),
        (CHAT, chat(n=None, logprobs=None, logit_bias=None), ()),  # null: not given
        (CHAT, chat(logprobs=False, top_logprobs=0), ()),
        (
            CHAT,
            chat(logprobs=True, top_logprobs=5),
            (
                ("logprobs", "logprobs", 1),
                ("logprobs", "top_logprobs", 1),
                ("top_logprobs", "top_logprobs", 5),
            ),
        ),
        (CHAT, chat(n=3, best_of=4), (("n", "n", 3), ("best_of", "best_of", 4))),
        (CHAT, chat(logit_bias={"1": 5, "2": -5}), (("logit_bias", "logit_bias", 2),)),
        (CHAT, chat(logit_bias={}), ()),
        (CHAT, chat(prompt_logprobs=0), (("prompt_logprobs", "prompt_logprobs", 1),)),
        (CHAT, chat(allowed_token_ids=[7]), (("allowed_token_ids", "allowed_token_ids", 1),)),
        (CHAT, chat(echo=True), ()),  # vLLM's chat echo repeats the last message, no log-probabilities
        (
            COMPLETIONS,
            {"model": "m", "prompt": "x", "logprobs": 0},
            (("logprobs", "logprobs", 1), ("top_logprobs", "logprobs", 0)),
        ),
        (COMPLETIONS, {"model": "m", "prompt": "x", "echo": True}, (("echo", "echo", 1),)),
        (
            RESPONSES,
            {
                "model": "m",
                "input": "x",
                "include": ["message.output_text.logprobs", "file_search_call.results"],
            },
            (
                ("logprobs", "include", 1),
                ("include", "include", "message.output_text.logprobs"),
                ("include", "include", "file_search_call.results"),
            ),
        ),
    ],
)
def test_what_a_call_asks_of_its_tier(endpoint: str, request_body: dict, expected: tuple) -> None:
    assert check_request(request_body, endpoint, REFUSE).asks == tuple(Ask(*a) for a in expected)


def test_unknown_parameters_pass_where_the_policy_says_and_are_named() -> None:
    assert check_request(chat(vendor_knob=1), CHAT, PASS).unknown == ("vendor_knob",)
    named = Requests(pass_parameters=["vendor_knob"])
    assert check_request(chat(vendor_knob=1), CHAT, named).unknown == ("vendor_knob",)
    with pytest.raises(RequestError):
        check_request(chat(other=1), CHAT, named)


FREE = default_policy().tier("free")
ENTERPRISE = default_policy().tier("enterprise")


@pytest.mark.parametrize(
    ("ask", "tier", "refused"),
    [
        (Ask("logprobs", "logprobs"), FREE, "logprobs"),
        (Ask("logprobs", "include"), FREE, "include"),
        (Ask("logprobs", "logprobs"), ENTERPRISE, None),
        (Ask("top_logprobs", "top_logprobs", 21), ENTERPRISE, "top_logprobs"),
        (Ask("top_logprobs", "logprobs", 20), ENTERPRISE, None),
        (Ask("n", "n", 2), FREE, "n"),
        (Ask("n", "n", 8), ENTERPRISE, None),
        (Ask("best_of", "best_of", 2), FREE, "best_of"),
        (Ask("echo", "echo"), FREE, "echo"),
        (Ask("echo", "echo"), ENTERPRISE, None),
        (Ask("logit_bias", "logit_bias", 1), FREE, "logit_bias"),
        (Ask("prompt_logprobs", "prompt_logprobs"), ENTERPRISE, "prompt_logprobs"),
        (Ask("allowed_token_ids", "allowed_token_ids", 3), ENTERPRISE, "allowed_token_ids"),
        (Ask("include", "include", "file_search_call.results"), FREE, None),
        (Ask("include", "include", "message.output_text.logprobs"), FREE, None),  # checked as logprobs
        (Ask("include", "include", "no.such.entry"), ENTERPRISE, "include"),
        (Ask("include", "include", "file_search_call.results"), Tier(include=[]), "include"),
    ],
)
def test_the_tier_table(ask: Ask, tier: Tier, refused: str | None) -> None:
    found = tier_violation([ask], tier, "t")
    assert (found[0] if found else None) == refused


def test_every_extraction_parameter_draws_on_a_tier_limit() -> None:
    extraction = (
        "logprobs",
        "top_logprobs",
        "n",
        "best_of",
        "echo",
        "logit_bias",
        "prompt_logprobs",
        "allowed_token_ids",
        "include",
    )
    assert set(TIER_LIMITS) == set(extraction)
    requested = chat(
        logprobs=True,
        top_logprobs=3,
        n=2,
        best_of=2,
        logit_bias={"1": 1},
        prompt_logprobs=1,
        allowed_token_ids=[1],
    )
    assert {a.param for a in asks(requested, CHAT)} >= set(extraction) - {"echo", "include"}
    known = {p.name for p in PARAMETERS}
    assert set(extraction) <= known
