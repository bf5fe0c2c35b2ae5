"""Bad input gets a 4xx in OpenAI's error format, never a 5xx; a failing upstream gets the client a
correct OpenAI error, and the failure is logged."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.gateway.gateway_processes import RunningGateway, free_port, logged_calls

pytestmark = pytest.mark.slow  # real gateway processes; each module well under 2 minutes

CHAT = "/v1/chat/completions"
GOOD = b'{"model":"frontier-1","messages":[{"role":"user","content":"hi"}]}'


@pytest.fixture(scope="module")
def gateway(start_gateway, upstream: str) -> RunningGateway:
    return start_gateway(upstream, "--max-body-bytes", "65536", "--read-timeout", "1")


def is_openai_error(response: httpx.Response) -> bool:
    error = response.json().get("error")
    return isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error)


AUTH = {"Authorization": "Bearer sk-ent-0123456789"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("POST", CHAT, {"content-type": "application/json"}, b'{"model": "x", "messages": [', 400),
        ("POST", CHAT, {"content-type": "application/json"}, b"\xff\xfe{}", 400),  # invalid UTF-8
        ("POST", CHAT, {"content-type": "application/json"}, b'{"model": "\xc3\x28"}', 400),
        ("POST", CHAT, {"content-type": "application/json"}, b"[1, 2, 3]", 400),
        ("POST", CHAT, {"content-type": "application/json"}, b'"just a string"', 400),
        ("POST", CHAT, {"content-type": "application/json"}, b"", 400),
        ("POST", CHAT, {"content-type": "text/plain"}, GOOD, 415),
        ("POST", CHAT, {}, GOOD, 415),
        (
            "POST",
            CHAT,
            {"content-type": "application/json"},
            b'{"model":"m","prompt":"' + b"x" * 70000 + b'"}',
            413,
        ),
        ("POST", "/v1/completions", {"content-type": "application/json"}, b'{"model":"m","prompt":5}', 400),
        ("GET", CHAT, {}, b"", 405),
        ("POST", "/v1/nothing-here", {"content-type": "application/json"}, GOOD, 404),
        ("POST", CHAT, {"content-type": "application/json", "Authorization": "Bearer nope"}, GOOD, 401),
        ("POST", CHAT, {"content-type": "application/json", "Authorization": ""}, GOOD, 401),
    ],
)
def test_bad_input_gets_a_4xx_in_openai_format(
    gateway: RunningGateway, method: str, path: str, headers: dict, body: bytes, status: int
) -> None:
    response = httpx.request(
        method, gateway.url + path, headers={**AUTH, **headers}, content=body, timeout=10
    )
    assert response.status_code == status, response.text
    assert is_openai_error(response)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        # what the API allows passes: extra fields inside a message, null for "not given", any text
        (
            b'{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}],"x":1}]}',
            200,
            None,
        ),
        (b'{"model":"m","messages":[{"role":"user","content":"hi"}],"n":null,"temperature":0.5}', 200, None),
        (b'{"model":"m","messages":[{"role":"user","content":"caf\xc3\xa9 \xe2\x98\x95"}]}', 200, None),
        # what the gateway cannot check the way the upstream reads it is refused, naming the field
        (b'{"model":"m","messages":[{"role":"user","content":"hi"}],"zzz":[1]}', 400, "zzz"),
        (b'{"model":"m","messages":"not a list"}', 400, "messages"),
        (
            b'{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":"warm"}',
            400,
            "temperature",
        ),
        (b'{"model":"m","messages":[{"role":"user","content":{"text":"hi"}}]}', 400, "messages[0].content"),
        (b'{"model":"m","messages":[]}', 400, "messages"),
        (b'{"messages":[{"role":"user","content":"hi"}]}', 400, "model"),
    ],
)
def test_requests_are_typed_as_the_api_types_them(
    gateway: RunningGateway, body: bytes, status: int, param: str | None
) -> None:
    response = httpx.post(
        gateway.url + CHAT, headers={**AUTH, "content-type": "application/json"}, content=body
    )
    assert response.status_code == status, response.text
    if status != 200:
        assert is_openai_error(response) and response.json()["error"]["param"] == param


def api(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-ent-0123456789", max_retries=0, timeout=20)


MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(
    ("model", "error", "status", "code"),
    [
        ("fail-500", openai.APIStatusError, 502, "upstream_error"),  # a non-OpenAI 500 body is wrapped
        ("fail-json-500", openai.InternalServerError, 500, None),  # an OpenAI error passes through
        ("slow", openai.APIStatusError, 504, "upstream_timeout"),
    ],
)
def test_upstream_failures_reach_the_client_as_openai_errors(
    gateway: RunningGateway, model: str, error: type[openai.APIStatusError], status: int, code: str | None
) -> None:
    with pytest.raises(error) as caught:
        api(gateway).chat.completions.create(model=model, messages=MESSAGES)
    assert caught.value.status_code == status
    assert caught.value.body is not None and caught.value.body.get("code") == code
    calls = [c for c in logged_calls(gateway.log_dir) if c["request"].get("model") == model]
    assert calls and calls[-1]["status"] == status


def test_stream_cut_mid_way_ends_in_an_error_event_and_is_logged(start_gateway, paced_upstream: str) -> None:
    gateway = start_gateway(paced_upstream)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in api(gateway).chat.completions.create(model="cut", messages=MESSAGES, stream=True):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "stopped while streaming" in str(caught.value.message)
    assert received  # what arrived before the cut was passed on
    time.sleep(0.1)
    call = next(c for c in logged_calls(gateway.log_dir) if c["request"].get("model") == "cut")
    assert any(
        "stream" in note and ("broke" in note or "without" in note) for note in call["decision"]["notes"]
    )


def test_unreachable_upstream_gives_502(start_gateway) -> None:
    gateway = start_gateway(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(openai.APIStatusError) as caught:
        api(gateway).chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_unavailable"
    assert logged_calls(gateway.log_dir)[-1]["status"] == 502
