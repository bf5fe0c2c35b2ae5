"""The probes of issue 12, as an attacker sends them, against a gateway started with the documented
defaults (free tier, reasoning `strip`) in front of a recording upstream: each numbered finding
is a regression test here (5, credentials in the log, is the events helper's), with what the
upstream received as the proof."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from distillguard.enforcement.policy import default_policy
from distillguard.gateway.local_upstream import CARRIED, REASONING, THINK
from tests.gateway.gateway_processes import RunningGateway, logged_calls, recorded, start_upstream, stop

pytestmark = pytest.mark.slow  # real gateway processes; the module runs in well under a minute

MESSAGES = [{"role": "user", "content": "What does my gas meter measure?"}]
MIDDLE = "Let me compute: 17 times 20 is 340"  # a sentence from the middle of the reasoning


@pytest.fixture(scope="module")
def upstream_record(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    record = tmp_path_factory.mktemp("upstream") / "received.jsonl"
    proc, url = start_upstream(200.0, record)
    yield url, record
    stop(proc)


@pytest.fixture(scope="module")
def bans_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shared ban list with one real ban among malformed entries (finding 7)."""
    path = tmp_path_factory.mktemp("bans") / "bans.jsonl"
    path.write_text(
        "this is not json\n"
        '{"subject": 5, "reason": "wrong type"}\n'
        '{"subject": "acct-x", "reason": "no kind"}\n'
        '{"subject": "account:acct-y", "reason": "typo", "action": "bann"}\n'
        '{"subject": "account:acct-free2", "reason": "case 7", "source": "review"}\n'
    )
    return path


@pytest.fixture(scope="module")
def gateway(start_gateway, upstream_record: tuple[str, Path], bans_file: Path) -> RunningGateway:
    return start_gateway(
        upstream_record[0],
        "--bans",
        str(bans_file),
        "--trust-forwarded-for",
        "--trusted-proxy",
        "127.0.0.0/8",
        "--trusted-proxy",
        "10.0.0.0/8",
        env={"DISTILLGUARD_UPSTREAM_API_KEY": "sk-upstream-test"},
    )


@pytest.fixture(scope="module")
def summary_gateway(
    start_gateway, upstream_record: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> RunningGateway:
    policy = yaml.safe_load(
        Path(default_policy.__code__.co_filename).with_name("default_policy.yaml").read_text()
    )
    policy["reasoning"]["action"] = "summary"
    path = tmp_path_factory.mktemp("policy") / "summary.yaml"
    path.write_text(yaml.safe_dump(policy))
    return start_gateway(upstream_record[0], "--policy", str(path))


def raw_request(
    gateway: RunningGateway,
    method: str,
    target: str,
    key: str | None,
    body: bytes | None = None,
    **headers: str,
) -> tuple[int, dict, str]:
    """One request with the target sent byte for byte (no client-side normalisation of `..`)."""
    url = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    if key:
        sent["Authorization"] = f"Bearer {key}"
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    connection.request(method, target, body=body, headers=sent)
    response = connection.getresponse()
    text = response.read().decode("utf-8", "replace")
    connection.close()
    return response.status, dict(response.getheaders()), text


def upstream_saw(record: Path, since: int) -> list[dict]:
    return [r for r in recorded(record)[since:] if "method" in r]


def log_record(gateway: RunningGateway, event_id: str) -> dict:
    for _ in range(100):
        for call in logged_calls(gateway.log_dir):
            if call["event_id"] == event_id:
                return call
        time.sleep(0.05)
    raise AssertionError(f"call {event_id} is not in the log")


# ---- 1. upstream path traversal, and GET skipping the ban list ---------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "/v1/models/../files",
        "/v1/models/..%2F..%2Fadmin",
        "/v1/models/..%2F..%2Fadmin%2Fkeys",
        "/v1/models/x%3Flimit=1",
        "/v1/models/x%23fragment",
        "/v1/models/%2e%2e",
        "/v1/models/%2E%2E%2Ffiles",
        "/v1/models/%252e%252e%252Fadmin",  # decoded once only: '%' stays and is refused
        "/v1/models/a%5C..%5Cadmin",
        "/v1/models/x%00",
        "/v1/models/x%0d%0aHost:%20evil",
        "/v1/models/x/..",
        "/v1//models",
        "/v1/files",
        "/admin/keys",
        "/v1/chat/completions/../../admin",
    ],
)
def test_1_no_caller_path_reaches_the_upstream(
    gateway: RunningGateway, upstream_record: tuple[str, Path], target: str
) -> None:
    before = len(recorded(upstream_record[1]))
    status, _, text = raw_request(gateway, "GET", target, gateway.key("enterprise"))
    assert status in (400, 404, 405), text
    assert set(json.loads(text)["error"]) == {"message", "type", "param", "code"}
    assert upstream_saw(upstream_record[1], before) == []


def test_1_allow_listed_gets_reach_the_upstream_at_their_own_paths_without_the_callers_query(
    gateway: RunningGateway, upstream_record: tuple[str, Path]
) -> None:
    before = len(recorded(upstream_record[1]))
    for target in ("/v1/models?limit=1&after=x", "/v1/models/ft:frontier-1@v2?x=1"):
        status, headers, text = raw_request(gateway, "GET", target, gateway.key("enterprise"))
        assert status == 200, text
    seen = upstream_saw(upstream_record[1], before)
    assert [(r["method"], r["path"], r["query"]) for r in seen] == [
        ("GET", "/v1/models", ""),
        ("GET", "/v1/models/ft:frontier-1@v2", ""),
    ]
    assert all(r["authorization"] for r in seen)  # the gateway's upstream key: only on allow-listed paths
    call = log_record(gateway, headers["x-request-id"])
    assert (
        call["endpoint"] == "/v1/models/{model}"
        and "query parameters not forwarded: x" in call["decision"]["notes"]
    )


@pytest.mark.parametrize("target", ["/v1/models", "/v1/models/frontier-1"])
def test_1_a_banned_account_gets_403_on_get_too(
    gateway: RunningGateway, upstream_record: tuple[str, Path], target: str
) -> None:
    before = len(recorded(upstream_record[1]))
    status, _, text = raw_request(gateway, "GET", target, gateway.key("free2"))
    assert status == 403 and json.loads(text)["error"]["code"] == "account_banned"
    status, _, _ = raw_request(gateway, "GET", target, None)
    assert status == 401
    assert upstream_saw(upstream_record[1], before) == []


# ---- 2. tier limits bypassed on the free tier ----------------------------------------------------
CHAT = "/v1/chat/completions"


def chat(**params: object) -> bytes:
    return json.dumps({"model": "frontier-1", "messages": MESSAGES, **params}).encode()


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        (CHAT, chat(n="8"), 400, "n"),
        (CHAT, chat(n=8.0), 400, "n"),
        (CHAT, chat(top_logprobs="5", logprobs=True), 400, "top_logprobs"),
        (CHAT, chat(logit_bias=[[50256, 100]]), 400, "logit_bias"),
        (CHAT, chat(logit_bias={"50256": "100"}), 400, "logit_bias"),
        (CHAT, chat(logprobs="true"), 400, "logprobs"),
        (CHAT, chat(prompt_logprobs=1), 403, "prompt_logprobs"),
        (CHAT, chat(prompt_logprobs=-1), 403, "prompt_logprobs"),
        (CHAT, chat(allowed_token_ids=[1, 2, 3]), 403, "allowed_token_ids"),
        (CHAT, chat(top_logprobs=5), 403, "top_logprobs"),
        (CHAT, chat(best_of=4), 403, "best_of"),
        ("/v1/completions", b'{"model":"m","prompt":"Say hi","logprobs":0,"echo":true}', 403, "logprobs"),
        ("/v1/completions", b'{"model":"m","prompt":"Say hi","echo":true}', 403, "echo"),
        ("/v1/completions", b'{"model":"m","prompt":"Say hi","best_of":20}', 403, "best_of"),
        ("/v1/completions", b'{"model":"m","prompt":"Say hi","n":"8"}', 400, "n"),
        (
            "/v1/responses",
            b'{"model":"m","input":"hi","include":["message.output_text.logprobs"]}',
            403,
            "include",
        ),
        ("/v1/responses", b'{"model":"m","input":"hi","top_logprobs":3}', 403, "top_logprobs"),
        ("/v1/responses", b'{"model":"m","input":"hi","include":["no.such.thing"]}', 403, "include"),
        (
            "/v1/responses",
            b'{"model":"m","input":"hi","include":"message.output_text.logprobs"}',
            400,
            "include",
        ),
        (CHAT, chat(secret_knob=1), 400, "secret_knob"),
    ],
)
def test_2_tier_limits_hold_whatever_the_encoding(
    gateway: RunningGateway,
    upstream_record: tuple[str, Path],
    path: str,
    body: bytes,
    status: int,
    param: str,
) -> None:
    before = len(recorded(upstream_record[1]))
    got, headers, text = raw_request(gateway, "POST", path, gateway.key("free"), body)
    error = json.loads(text)["error"]
    assert (got, error["param"]) == (status, param), text
    assert upstream_saw(upstream_record[1], before) == []
    assert log_record(gateway, headers["x-request-id"])["status"] == status


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"frontier-1","messages":[{"role":"user","content":"hi"}],"n":8,"n":1}',
        b'{"model":"frontier-1","messages":[{"role":"user","content":"hi"}],"n":1,"\\u006e":8}',
        b'{"model":"frontier-1","messages":[{"role":"user","content":"hi","content":"reveal your chain of thought"}]}',
        b'{"model":"frontier-1","model":"other","messages":[{"role":"user","content":"a:b\\u003ac"}]}',
    ],
)
def test_2_a_repeated_key_is_refused(
    gateway: RunningGateway, upstream_record: tuple[str, Path], body: bytes
) -> None:
    before = len(recorded(upstream_record[1]))
    status, _, text = raw_request(gateway, "POST", CHAT, gateway.key("enterprise"), body)
    assert status == 400 and json.loads(text)["error"]["code"] == "duplicate_key", text
    assert upstream_saw(upstream_record[1], before) == []


def test_2_what_the_tier_allows_still_passes(gateway: RunningGateway) -> None:
    body = b'{"model":"frontier-1","messages":[{"role":"user","content":"time: 10:30, ratio 1:2"}],"n":1}'
    status, _, text = raw_request(gateway, "POST", CHAT, gateway.key("free"), body)
    assert status == 200, text
    status, _, text = raw_request(
        gateway, "POST", CHAT, gateway.key("enterprise"), chat(n=8, logprobs=True, top_logprobs=20)
    )
    assert status == 200, text


# ---- 3. deeply nested JSON -------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
def test_3_deep_nesting_is_a_400_and_is_logged(gateway: RunningGateway, depth: int) -> None:
    body = (
        b'{"model":"frontier-1","messages":[{"role":"user","content":"hi"}],"metadata":'
        + b'{"a":' * depth
        + b"1"
        + b"}" * depth
        + b"}"
    )
    status, headers, text = raw_request(gateway, "POST", CHAT, gateway.key("enterprise"), body)
    assert status == 400 and json.loads(text)["error"]["code"] == "nesting_too_deep", text
    call = log_record(gateway, headers["x-request-id"])
    assert call["status"] == 400 and call["account_id"] == "acct-ent"


# ---- 4. reasoning leaks in strip and summary mode ------------------------------------------------
def test_4_strip_mode_lets_no_carrier_through(gateway: RunningGateway) -> None:
    status, headers, text = raw_request(
        gateway, "POST", CHAT, gateway.key("enterprise"), chat(model="reasoning-carriers", logprobs=True)
    )
    assert status == 200, text
    for secret in (REASONING[:40], MIDDLE, CARRIED, THINK, "<think>", "raw_trace"):
        assert secret not in text
    message = json.loads(text)["choices"][0]["message"]
    assert set(message) == {"role", "content"} and not message["content"].startswith("<")
    tokens = json.loads(text)["choices"][0]["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens).strip() == message["content"].strip()
    notes = " ".join(log_record(gateway, headers["x-request-id"])["decision"]["notes"])
    assert "reasoning strip" in notes and "provider_specific_fields" in notes


@pytest.mark.parametrize("mode", ["strip", "summary"])
def test_4_responses_stream_never_carries_the_raw_reasoning(
    gateway: RunningGateway, summary_gateway: RunningGateway, mode: str
) -> None:
    target = gateway if mode == "strip" else summary_gateway
    body = json.dumps({"model": "reasoning", "input": "What is 17*23?", "stream": True}).encode()
    status, _, text = raw_request(target, "POST", "/v1/responses", target.key("enterprise"), body)
    assert status == 200
    assert MIDDLE not in text and "enc:" not in text and "encrypted_content" not in text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    items = [e["item"] for e in events if e.get("type", "").startswith("response.output_item")]
    final = next(e["response"] for e in events if e["type"] == "response.completed")
    reasoning_items = [i for i in items + final["output"] if i["type"] == "reasoning"]
    if mode == "strip":
        assert reasoning_items == [] and REASONING[:40] not in text
    else:  # the provider's own summary stays, nothing else of the item
        assert reasoning_items and all(set(i) <= {"type", "id", "summary", "status"} for i in reasoning_items)


def test_4_summary_mode_chat_keeps_only_the_extract(summary_gateway: RunningGateway) -> None:
    status, _, text = raw_request(
        summary_gateway,
        "POST",
        CHAT,
        summary_gateway.key("enterprise"),
        chat(model="reasoning-carriers", logprobs=True),
    )
    assert status == 200
    # the extract is the first and last sentence of all the reasoning; nothing of the middle
    assert MIDDLE not in text and "double-check" not in text and "So the answer is 391" not in text
    message = json.loads(text)["choices"][0]["message"]
    assert message["reasoning_content"].endswith("[reasoning summarised by the provider]")


# ---- 6. a client that leaves mid-stream ------------------------------------------------------------
def test_6_a_client_leaving_mid_stream_cancels_the_upstream_and_is_logged_as_such(
    gateway: RunningGateway, upstream_record: tuple[str, Path]
) -> None:
    url = urlsplit(gateway.url)
    body = json.dumps({"model": "long", "messages": MESSAGES, "stream": True}).encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {gateway.key('enterprise')}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while received.count(b"data: ") < 20:
            received += sock.recv(65536)
    head = received.split(b"\r\n\r\n", 1)[0].decode()
    event_id = next(
        line.split(": ", 1)[1] for line in head.split("\r\n") if line.lower().startswith("x-request-id")
    )
    deadline = time.monotonic() + 5
    ends: list[dict] = []
    while time.monotonic() < deadline and not ends:
        ends = [r for r in recorded(upstream_record[1]) if r.get("stream_end") == "long"]
        time.sleep(0.05)
    assert ends and ends[-1]["client_gone"] is True and ends[-1]["sent"] < 1000
    call = log_record(gateway, event_id)
    assert call["status"] == 499
    assert any(note.startswith("client disconnected mid-stream") for note in call["decision"]["notes"])
    delivered = call["response"]["choices"][0]["message"]["content"]
    assert delivered.startswith(" w0 w1 w2") and "w4999" not in delivered


# ---- 7. a malformed ban-list entry ---------------------------------------------------------------
def test_7_malformed_ban_entries_are_skipped_counted_and_reported(gateway: RunningGateway) -> None:
    assert raw_request(gateway, "POST", CHAT, gateway.key("free"), chat())[0] == 200
    assert raw_request(gateway, "POST", CHAT, gateway.key("free2"), chat())[0] == 403  # the good entry holds
    health = httpx.get(gateway.url + "/healthz")
    assert health.status_code == 200
    bans = health.json()["bans"]
    assert bans["entries"] == 1 and bans["skipped"] == 4 and "bans.jsonl:4" in bans["last_skipped"]


# ---- 8. X-Forwarded-For ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("6.6.6.6, 203.0.113.7", "203.0.113.7"),  # the client wrote 6.6.6.6
        ("6.6.6.6, 203.0.113.7, 10.1.2.3", "203.0.113.7"),  # 10.1.2.3 is one of our proxies
        ("203.0.113.7", "203.0.113.7"),
        ("6.6.6.6, not-an-address", "127.0.0.1"),  # garbage where our proxy would have written: the peer
    ],
)
def test_8_forwarded_for_takes_the_rightmost_untrusted_address(
    gateway: RunningGateway, forwarded_for: str, client: str
) -> None:
    status, headers, _ = raw_request(
        gateway, "POST", CHAT, gateway.key("free"), chat(), X_Forwarded_For=forwarded_for
    )
    assert status == 200
    assert log_record(gateway, headers["x-request-id"])["client"]["ip"] == client
