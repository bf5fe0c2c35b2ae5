"""`distillguard audit run` end to end against local OpenAI-compatible endpoints (real HTTP and SSE):
a service that refuses a topic list, one that withdraws answers after streaming them, one that
fails in every transport way; retries, the request budget, resuming, the concurrency limit, and
the API key that must never reach a file or the terminal."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from distillguard.audit.measures import measure_run, topic_rates
from distillguard.audit.records import ANSWERS, Attempt, messages_of, read_answers, read_manifest
from distillguard.audit.runner import Redactor, chat_completions_target, parse_retry_after, retryable
from tests.audit.audit_endpoints import (
    REFUSED_TOPICS,
    SHOWN_EN,
    SHOWN_ZH,
    broken,
    refusing,
    serve,
    slow,
    unauthorised,
    withdrawing,
)
from tests.audit.conftest import FAST, prompt, write_suite

Cli = Callable[..., Result]


def test_refusing_service_on_the_packaged_suite(tmp_path: Path, audit_cli: Cli) -> None:
    out = tmp_path / "run"
    with serve(refusing) as endpoint:
        result = audit_cli("run", "--endpoint", endpoint.url, "--model", "refuser", "--out", str(out), *FAST)
    assert result.exit_code == 0, result.output
    run = measure_run(out)
    assert len(run.measures) == 250  # 143 deccp prompts + 14 pairs x 2 sides, in each language they have
    assert all(m.status == "complete" and m.measured for m in run.measures)
    # every answer is judged as the service decided: refused exactly when it named a listed topic
    for m in run.measures:
        expected = any(topic in m.prompt for topic in REFUSED_TOPICS)
        assert (m.refusal.label != "none") == expected, (m.prompt, m.refusal)
        if expected:
            assert m.refusal.evidence and m.refusal.matched, m.key
    rates = {(r["topic"], r["lang"]): r for r in topic_rates(run.measures)}
    for lang in ("en", "zh"):
        assert rates[("taiwan", lang)]["rate"] == 1.0
    assert rates[("other_countries", "en")]["rate"] == 0.0
    assert "refused (zh):" in result.output and (out / "measures.json").is_file()
    # every chunk was recorded with its arrival time, in order
    answer = next(iter(read_answers(out).answers.values()))
    times = [c.t for c in answer.attempts[0].chunks]
    assert len(times) > 3 and times == sorted(times) and times[0] >= 0


def test_a_run_resumes_and_never_asks_twice(tmp_path: Path, audit_cli: Cli) -> None:
    suite = write_suite(
        tmp_path / "s.yaml", [prompt(f"q{i}", f"Question number {i}?", f"第{i}个问题？") for i in range(6)]
    )
    out = tmp_path / "run"
    with serve(refusing) as endpoint:
        first = audit_cli(
            "run",
            "--endpoint",
            endpoint.url,
            "--model",
            "m",
            "--suite",
            str(suite),
            "--out",
            str(out),
            "--max-requests",
            "5",
            *FAST,
        )
        assert first.exit_code == 0, first.output
        assert "request budget" in first.output and "5 answers recorded now" in first.output
        assert len(endpoint.requests) == 5
        # a crash mid-write leaves half a line: it is reported by file and line and asked again
        with (out / ANSWERS).open("a", encoding="utf-8") as handle:
            handle.write('{"key": "q5@zh", "item": "q5", "lang": "zh", "top')
        second = audit_cli(
            "run", "--endpoint", endpoint.url, "--model", "m", "--suite", str(suite), "--out", str(out), *FAST
        )
        assert second.exit_code == 0, second.output
        assert f"{out / ANSWERS}:6: not a complete answer record" in second.output
        assert "7 answers recorded now, 5 from before, 0 left of 12" in second.output
        third = audit_cli(
            "run", "--endpoint", endpoint.url, "--model", "m", "--suite", str(suite), "--out", str(out), *FAST
        )
        assert "0 answers recorded now, 12 from before" in third.output
        assert sorted(endpoint.seen.values()) == [1] * 12  # each question asked exactly once over three runs
    assert len(read_answers(out).answers) == 12
    # a run directory holds one run: another model is refused, naming the field
    with serve(refusing) as endpoint:
        other = audit_cli(
            "run",
            "--endpoint",
            endpoint.url,
            "--model",
            "other",
            "--suite",
            str(suite),
            "--out",
            str(out),
            *FAST,
        )
    assert other.exit_code != 0 and "run.json: model is 'm'" in other.output


def test_concurrency_is_bounded(tmp_path: Path, audit_cli: Cli) -> None:
    suite = write_suite(tmp_path / "s.yaml", [prompt(f"q{i}", f"Question {i}?") for i in range(8)])
    with serve(slow(0.15)) as endpoint:
        result = audit_cli(
            "run",
            "--endpoint",
            endpoint.url,
            "--model",
            "m",
            "--suite",
            str(suite),
            "--lang",
            "en",
            "--out",
            str(tmp_path / "run"),
            "--concurrency",
            "3",
            *FAST,
        )
    assert result.exit_code == 0, result.output
    assert endpoint.max_in_flight == 3


WITHDRAWN = [
    prompt("filter", "Tell me about June 1989 (filter)", "讲讲1989年6月（filter）"),
    prompt("error", "Tell me about June 1989 (error)", "讲讲1989年6月（error）"),
    prompt("replace", "Tell me about June 1989 (replace)"),
    prompt("retract", "Tell me about June 1989 (retract)"),
    prompt("cut", "Tell me about June 1989 (cut)"),
    prompt("plain", "Tell me about the weather"),
]


def test_withdrawn_answers_are_recorded_with_what_was_shown(tmp_path: Path, audit_cli: Cli) -> None:
    suite = write_suite(tmp_path / "s.yaml", WITHDRAWN)
    out = tmp_path / "run"
    with serve(withdrawing) as endpoint:
        result = audit_cli(
            "run", "--endpoint", endpoint.url, "--model", "m", "--suite", str(suite), "--out", str(out), *FAST
        )
    assert result.exit_code == 0, result.output
    measures = {m.key: m for m in measure_run(out).measures}
    expected = {
        "filter@en": ("content_filter_after_text", SHOWN_EN),
        "filter@zh": ("content_filter_after_text", SHOWN_ZH),
        "error@en": ("error_after_text", SHOWN_EN),
        "error@zh": ("error_after_text", SHOWN_ZH),
        "replace@en": ("replaced_by_refusal", SHOWN_EN),
        "retract@en": ("contradicted", SHOWN_EN),
        "cut@en": ("cut_off", SHOWN_EN),
    }
    for key, (kind, shown) in expected.items():
        w = measures[key].withdrawal
        assert w is not None and w.kind == kind, (key, w)
        assert w.before == shown  # the exact text the user saw before it went
        assert measures[key].refusal.label == "withdrawn"
        assert (
            w.shown_until_s is not None
            and w.withdrawn_at_s is not None
            and w.withdrawn_at_s >= w.shown_until_s
        )
    assert measures["replace@en"].withdrawal.after.startswith("Sorry, that's beyond my current scope")
    assert measures["retract@en"].withdrawal.after.startswith("Correction:")
    assert "Content Exists Risk" in measures["error@en"].withdrawal.after
    assert measures["plain@en"].withdrawal is None and measures["plain@en"].refusal.label == "none"
    # withdrawals are observations: nothing was retried
    assert all(len(m.attempts) == 1 for m in read_answers(out).answers.values())
    assert "withdrawn: " in result.output


BROKEN = [
    prompt("malformed", "please malformed"),
    prompt("stall", "please stall"),
    prompt("slow-once", "please slow-once"),
    prompt("ratelimit-then-ok", "please ratelimit-then-ok"),
    prompt("ratelimit-forever", "please ratelimit-forever"),
    prompt("server-error", "please server-error"),
    prompt("html", "please html"),
    prompt("not-stream", "please not-stream"),
    prompt("blocked", "please blocked"),
    prompt("fine", "please answer"),
]


def test_every_transport_failure_is_recorded_as_such(tmp_path: Path, audit_cli: Cli) -> None:
    suite = write_suite(tmp_path / "s.yaml", BROKEN)
    out = tmp_path / "run"
    with serve(broken) as endpoint:
        result = audit_cli(
            "run",
            "--endpoint",
            endpoint.url,
            "--model",
            "m",
            "--suite",
            str(suite),
            "--lang",
            "en",
            "--out",
            str(out),
            "--max-wait",
            "10",
            *FAST,
        )
    assert result.exit_code == 0, result.output
    answers = {a.item: a for a in read_answers(out).answers.values()}
    status = {item: a.status for item, a in answers.items()}
    assert status == {
        "malformed": "malformed",
        "stall": "timeout",
        "slow-once": "complete",
        "ratelimit-then-ok": "complete",
        "ratelimit-forever": "rate_limited",
        "server-error": "http_error",
        "html": "malformed",
        "not-stream": "complete",
        "blocked": "http_error",
        "fine": "complete",
    }
    malformed = answers["malformed"].attempts[-1]
    assert any(c.kind == "malformed" and "this is not json" in c.raw for c in malformed.chunks)
    assert len(answers["stall"].attempts) == 3 and "no answer after" in answers["stall"].attempts[-1].error
    assert [a.status for a in answers["slow-once"].attempts] == ["timeout", "complete"]
    limited = answers["ratelimit-then-ok"].attempts
    assert [a.http_status for a in limited] == [429, 429, 200]
    assert limited[0].retry_after_s == 1.0 and limited[1].waited_s is not None and limited[1].waited_s >= 0.9
    forever = answers["ratelimit-forever"].attempts
    assert len(forever) == 1 and "longer than --max-wait" in forever[0].error
    assert [a.http_status for a in answers["server-error"].attempts] == [503, 503, 503]
    assert "expected text/event-stream" in answers["html"].attempts[-1].error
    assert "Gateway maintenance" in answers["html"].attempts[-1].body
    assert answers["not-stream"].attempts[-1].streamed is False
    # measured: the content-filter 400 is the service refusing; transport failures are set apart
    measures = {m.item: m for m in measure_run(out).measures}
    assert measures["blocked"].measured and measures["blocked"].refusal.label == "blocked"
    assert measures["not-stream"].measured and measures["not-stream"].refusal.label == "none"
    for item in ("malformed", "stall", "ratelimit-forever", "server-error", "html"):
        assert not measures[item].measured and measures[item].refusal.label == "n/a", item
    # --retry-failed asks the failures again and appends newer records
    with serve(broken) as endpoint:
        again = audit_cli(
            "run",
            "--endpoint",
            endpoint.url,
            "--model",
            "m",
            "--suite",
            str(suite),
            "--lang",
            "en",
            "--out",
            str(out),
            "--max-wait",
            "10",
            "--retry-failed",
            *FAST,
        )
        assert again.exit_code == 0, again.output
        assert set(endpoint.seen) == {
            f"please {i}" for i in ("malformed", "stall", "ratelimit-forever", "server-error", "html")
        }


def test_the_api_key_never_reaches_a_file_or_the_terminal(tmp_path: Path, audit_cli: Cli) -> None:
    secret = "sk-audit-SECRET-0123456789abcdef"
    suite = write_suite(
        tmp_path / "s.yaml", [prompt("echo", "please echo-key"), prompt("err", "please echo-error")]
    )
    out = tmp_path / "run"
    with serve(broken) as endpoint:
        result = audit_cli(
            "run",
            "--endpoint",
            endpoint.url,
            "--model",
            "m",
            "--suite",
            str(suite),
            "--lang",
            "en",
            "--out",
            str(out),
            "--api-key-env",
            "AUDIT_TEST_KEY",
            *FAST,
            env={"AUDIT_TEST_KEY": secret},
        )
        assert result.exit_code == 0, result.output
        assert endpoint.authorizations == [f"Bearer {secret}"] * 2  # it was sent, as a bearer token
    answers = read_answers(out).answers
    echoed = messages_of(answers["echo@en"].attempts[-1])[0].text
    assert echoed.startswith("You sent the header Bearer [REDACTED] to me.")  # even split across deltas
    assert "[REDACTED]" in answers["err@en"].attempts[-1].body
    for path in out.rglob("*"):
        assert secret not in path.read_text(encoding="utf-8"), path
        assert secret[-12:] not in path.read_text(encoding="utf-8"), path
    assert secret not in result.output
    assert read_manifest(out).api_key_env == "AUDIT_TEST_KEY"


def test_refused_credentials_stop_the_run_and_record_nothing(tmp_path: Path, audit_cli: Cli) -> None:
    suite = write_suite(tmp_path / "s.yaml", [prompt(f"q{i}", f"Question {i}?") for i in range(5)])
    out = tmp_path / "run"
    with serve(unauthorised) as endpoint:
        result = audit_cli(
            "run",
            "--endpoint",
            endpoint.url,
            "--model",
            "m",
            "--suite",
            str(suite),
            "--lang",
            "en",
            "--out",
            str(out),
            "--concurrency",
            "1",
            *FAST,
        )
        assert len(endpoint.requests) == 1
    assert result.exit_code != 0
    assert "HTTP 401" in result.output and "$DISTILLGUARD_AUDIT_API_KEY" in result.output
    assert read_answers(out).answers == {}


def test_an_endpoint_that_is_not_listening_is_a_connection_error(tmp_path: Path, audit_cli: Cli) -> None:
    suite = write_suite(tmp_path / "s.yaml", [prompt("q", "Question?")])
    out = tmp_path / "run"
    with serve(refusing) as endpoint:
        url = endpoint.url  # the port is free again once the server is gone
    result = audit_cli(
        "run",
        "--endpoint",
        url,
        "--model",
        "m",
        "--suite",
        str(suite),
        "--lang",
        "en",
        "--out",
        str(out),
        *FAST,
    )
    assert result.exit_code == 0, result.output
    (answer,) = read_answers(out).answers.values()
    assert answer.status == "connection_error" and len(answer.attempts) == 3
    assert json.loads((out / "measures.json").read_text())["summary"]["measured"] == 0


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1/chat/completions"),
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1/chat/completions"),
        ("https://api.example.com/v1/chat/completions", "https://api.example.com/v1/chat/completions"),
        (
            "https://u:p@api.example.com/openai/v1?api-key=k",
            "https://api.example.com/openai/v1/chat/completions",
        ),
    ],
)
def test_endpoint_urls(endpoint: str, url: str) -> None:
    assert chat_completions_target(endpoint).shown == url


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("0", 0.0),
        (" 12 ", 12.0),
        ("-3", None),
        ("1.5", None),
        ("", None),
        ("Thu, 01 Jan 1970 00:00:10 GMT", 0.0),
    ],
)
def test_retry_after(header: str, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


@pytest.mark.parametrize(
    ("status", "http_status", "content", "expected"),
    [
        ("timeout", None, "", True),
        ("connection_error", None, "", True),
        ("rate_limited", 429, "", True),
        ("http_error", 503, "", True),
        ("http_error", 400, "", False),
        ("malformed", 200, "", False),
        ("truncated", 200, "", True),
        ("truncated", 200, "Some text was shown", False),  # once text is shown, a cut is an observation
        ("timeout", 200, "Some text was shown", False),
    ],
)
def test_what_is_retried(status: str, http_status: int | None, content: str, expected: bool) -> None:
    from distillguard.audit.records import Chunk

    chunks = [Chunk(t=0.1, kind="delta", content=content)] if content else []
    attempt = Attempt(
        n=1, started_at="", status=status, elapsed_s=1.0, http_status=http_status, chunks=chunks
    )
    assert retryable(attempt) is expected


def test_redactor_ignores_short_secrets() -> None:
    assert Redactor("abc")("abc abc") == "abc abc"  # too short to be a key, and would shred text
    assert Redactor("sk-long-key")("x sk-long-key y") == "x [REDACTED] y"


@pytest.mark.parametrize(
    ("events", "status", "text"),
    [
        (
            ['{"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}', "[DONE]"],
            "complete",
            "Hi",
        ),
        (
            ['{"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]}'],
            "complete",
            "Hi",
        ),
        (['{"choices": [{"index": 0, "delta": {"content": "Hi"}}]}'], "truncated", "Hi"),
        (
            ['{"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "content_filter"}]}'],
            "content_filter",
            "Hi",
        ),
        (
            ['{"choices": [{"index": 0, "delta": {"content": "Hi"}}]}', '{"error": {"message": "boom"}}'],
            "stream_error",
            "Hi",
        ),
        (['{"choices": [{"index": 0, "delta": {"content": 5}}]}', "[DONE]"], "malformed", ""),
        (["[1, 2]", "[DONE]"], "malformed", ""),
        (['{"object": "chat.completion.chunk"}', "[DONE]"], "malformed", ""),
        (['{"choices": [], "usage": {"total_tokens": 3}}', "[DONE]"], "complete", ""),  # an empty answer
        (['{"choices": [{"index": 1, "delta": {"content": "other choice"}}]}', "[DONE]"], "complete", ""),
        (
            [
                '{"choices": [{"index": 0, "delta": {"reasoning_content": "think", "content": "A"}}]}',
                "[DONE]",
            ],
            "complete",
            "A",
        ),
    ],
)
def test_stream_events_to_status(events: list[str], status: str, text: str) -> None:
    from distillguard.audit.records import Attempt as RecordedAttempt
    from distillguard.audit.runner import StreamReading
    from distillguard.audit.sse import ServerSentEvent

    reading = StreamReading(Redactor())
    for t, data in enumerate(events):
        reading.event(ServerSentEvent(data), float(t))
    assert reading.status() == status
    recorded = RecordedAttempt(n=1, started_at="", status=status, elapsed_s=1.0, chunks=reading.chunks)
    assert "".join(m.text for m in messages_of(recorded)) == text
    assert [c.t for c in reading.chunks] == sorted(c.t for c in reading.chunks)


def test_a_role_after_text_starts_a_new_message() -> None:
    from distillguard.audit.runner import StreamReading
    from distillguard.audit.sse import ServerSentEvent

    reading = StreamReading(Redactor())
    for data in (
        '{"choices": [{"index": 0, "delta": {"role": "assistant", "content": "First."}}]}',
        '{"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Second."}}]}',
        '{"choices": [{"index": 0, "message": {"role": "assistant", "content": "Third."}}]}',
    ):
        reading.event(ServerSentEvent(data), 0.0)
    attempt = Attempt(n=1, started_at="", status="truncated", elapsed_s=1.0, chunks=reading.chunks)
    assert [m.text for m in messages_of(attempt)] == ["First.", "Second.", "Third."]
