"""Each log reader on small hand-made files in the real formats, and malformed input reported
with file, line and a reason naming the field."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from distillguard.events import readers
from distillguard.events.call_view import view_of
from distillguard.events.model import CallEvent
from distillguard.events.readers import (
    ReaderOptions,
    Reject,
    UnknownFormatError,
    iter_events,
    known_formats,
    reader_named,
)
from distillguard.events.readers.base import UnreadableInput, open_lines, read_lines

FIXTURES = Path(__file__).parent / "fixtures"


def _split(items: list[CallEvent | Reject]) -> tuple[list[CallEvent], list[Reject]]:
    return [i for i in items if isinstance(i, CallEvent)], [i for i in items if isinstance(i, Reject)]


def test_known_formats_and_unknown_name_fails_loudly() -> None:
    assert {"canonical", "openai-batch", "litellm", "otel-genai"} <= set(known_formats())
    with pytest.raises(UnknownFormatError, match=r"known formats: .*canonical.*litellm"):
        reader_named("splunk-csv")


def test_canonical_reads_spec_lines() -> None:
    events, rejects = _split(list(iter_events([FIXTURES / "canonical.jsonl"], "canonical")))
    assert rejects == []
    assert [e.event_id for e in events] == ["e-000001", "e-000002", "e-000003"]
    first = events[0]
    assert first.ts == datetime(2026, 2, 12, 10, 22, 33, 123000, tzinfo=UTC)
    assert (first.client.asn, first.status, first.latency_ms) == (64500, 200, 1840.5)
    assert view_of(events[2]).response_text == "Bonjour"


def test_canonical_gzip_is_detected_by_content(tmp_path: Path) -> None:
    plain = FIXTURES / "canonical.jsonl"
    packed = tmp_path / "events.jsonl.gz"
    with plain.open("rb") as source, gzip.open(packed, "wb") as target:
        shutil.copyfileobj(source, target)
    odd_name = tmp_path / "events.log"  # gzip without the .gz suffix
    shutil.copy(packed, odd_name)
    expected = [e.event_id for e in iter_events([plain]) if isinstance(e, CallEvent)]
    for path in (packed, odd_name):
        assert [e.event_id for e in iter_events([path]) if isinstance(e, CallEvent)] == expected


GOOD = (
    b'{"event_id":"e1","ts":"2026-02-12T10:22:33.123Z","account_id":"a","client":{"ip":"192.0.2.1"},'
    b'"endpoint":"/v1/chat/completions","request":{"messages":[]},"status":200}'
)


@pytest.mark.parametrize(
    ("line", "reason_contains"),
    [
        (b'{"event_id": "e1", "ts": ', "invalid JSON"),
        (b"not json at all", "invalid JSON"),
        (GOOD.replace(b'"ip":"192.0.2.1"', b'"ip":17'), "$.client.ip"),
        (GOOD.replace(b'"account_id":"a",', b""), "account_id"),
        (GOOD.replace(b'"status":200', b'"status":"ok"'), "$.status"),
        (GOOD.replace(b"10:22:33.123Z", b"10:22:33.123"), "time zone"),
        (GOOD.replace(b'"request":{"messages":[]}', b'"request":[1]'), "$.request"),
        (GOOD.replace(b'"a"', b'"\xff\xfe"'), "invalid UTF-8"),
        (b"", "empty line"),
        (b"   ", "empty line"),
        (b"[1, 2]", "Expected `object`"),
    ],
)
def test_canonical_malformed_lines_are_rejected_with_file_line_and_field(
    tmp_path: Path, line: bytes, reason_contains: str
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(GOOD + b"\n" + line + b"\n" + GOOD.replace(b'"e1"', b'"e2"') + b"\n")
    events, rejects = _split(list(iter_events([path])))
    assert [e.event_id for e in events] == ["e1", "e2"]
    assert len(rejects) == 1
    assert (rejects[0].file, rejects[0].line) == (str(path), 2)
    assert reason_contains in rejects[0].reason


def test_missing_file_fails_before_reading(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        iter_events([tmp_path / "nope.jsonl"])


def test_openai_batch_joins_input_to_output_by_custom_id() -> None:
    files = [
        FIXTURES / n
        for n in ("openai_batch_input.jsonl", "openai_batch_output.jsonl", "openai_batch_errors.jsonl")
    ]
    events, rejects = _split(list(iter_events(files, "openai-batch", ReaderOptions(account="acct-batch"))))
    by_id = {e.event_id: e for e in events}
    assert set(by_id) == {"batch_req_123", "batch_req_456", "batch_req_999"}
    graded = view_of(by_id["batch_req_123"])
    assert (graded.prompt, graded.response_text, graded.temperature) == (
        "Rate this answer from 1 to 10.",
        "7",
        0.0,
    )
    assert by_id["batch_req_456"].ts == datetime.fromtimestamp(1711652789, tz=UTC)
    assert all(e.account_id == "acct-batch" for e in events)
    expired = by_id["batch_req_999"]  # never run: status 0, no response, time of the previous timed line
    assert (expired.status, expired.response, expired.ts) == (0, None, by_id["batch_req_456"].ts)
    assert sorted((Path(r.file).name, r.line, r.reason) for r in rejects) == [
        ("openai_batch_errors.jsonl", 2, "custom_id has no request in the input files"),
        ("openai_batch_input.jsonl", 4, "no output line for this custom_id"),
    ]


def test_openai_batch_needs_the_account() -> None:
    with pytest.raises(ValueError, match="--account"):
        list(iter_events([FIXTURES / "openai_batch_input.jsonl"], "openai-batch"))


def test_openai_batch_rejects_a_file_that_is_neither_input_nor_output(tmp_path: Path) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text('{"hello": "world"}\n')
    (reject,) = iter_events([other], "openai-batch", ReaderOptions(account="a"))
    assert isinstance(reject, Reject) and (reject.file, reject.line) == (str(other), 1)
    assert "not an OpenAI Batch" in reject.reason


def test_litellm_payload_and_spend_log_rows() -> None:
    files = [FIXTURES / "litellm_payload.jsonl", FIXTURES / "litellm_spend_logs.jsonl"]
    events, rejects = _split(list(iter_events(files, "litellm")))
    by_id = {e.event_id: e for e in events}
    graded = by_id["chatcmpl-lite-1"]
    assert (graded.account_id, graded.end_user, graded.client.ip) == (
        "org-42",
        "customer-99",
        "198.51.100.23",
    )
    assert graded.key_id == "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
    assert graded.client.user_agent == "curl/8.5"
    assert graded.ts == datetime.fromtimestamp(1739355753.123, tz=UTC)
    assert graded.latency_ms == pytest.approx(1500.0)
    view = view_of(graded)
    assert (view.system_prompt, view.prompt, view.response_text) == (
        "You are a grader.",
        "Which answer is better, A or B?",
        "A",
    )
    assert (view.temperature, view.max_tokens) == (0.0, 5)
    assert graded.request["_litellm"]["model_group"] == "gpt-4o-mini"  # the rest is kept
    failed = by_id["chatcmpl-lite-2"]  # wrapped in standard_logging_object, team account, 429
    assert (failed.account_id, failed.status, failed.response) == ("team-7", 429, None)
    spend = by_id["chatcmpl-spend-1"]
    assert (spend.account_id, spend.client.user_agent, spend.endpoint) == (
        "team-9",
        "OpenAI/Python 1.60.0",
        "/v1/chat/completions",
    )
    assert spend.ts == datetime(2026, 2, 12, 10, 0, tzinfo=UTC) and spend.latency_ms == pytest.approx(2500.0)
    assert view_of(spend).temperature == 1.0 and view_of(spend).prompt_tokens == 30
    embedding = by_id["chatcmpl-spend-2"]  # raw key in api_key: kept only as its hash
    assert embedding.endpoint == "/v1/embeddings" and embedding.key_id is not None
    assert embedding.key_id.startswith("sha256:") and "TOPSECRET" not in embedding.key_id
    assert [(r.line, r.reason.split(":")[0]) for r in rejects] == [
        (3, "$.metadata.user_api_key_org_id/team_id/user_id")
    ]


def test_litellm_account_falls_back_to_the_option() -> None:
    events, rejects = _split(
        list(iter_events([FIXTURES / "litellm_payload.jsonl"], "litellm", ReaderOptions(account="acct-x")))
    )
    assert rejects == [] and events[2].account_id == "acct-x"


@pytest.mark.parametrize(
    ("line", "reason_contains"),
    [
        (b'{"id":"x","startTime":"yesterday","metadata":{"user_api_key_team_id":"t"}}', "$.startTime"),
        (b'{"id":"x","startTime":1.0,"metadata":"oops"}', "$.metadata"),
        (b'{"id":"x","startTime":1.0,"metadata":{"user_api_key_team_id":5.5}}', "user_api_key_team_id"),
        (b'{"startTime":1.0,"metadata":{"user_api_key_team_id":"t"}}', "$.id"),
    ],
)
def test_litellm_malformed_rows(tmp_path: Path, line: bytes, reason_contains: str) -> None:
    path = tmp_path / "litellm.jsonl"
    path.write_bytes(line + b"\n")
    events, rejects = _split(list(iter_events([path], "litellm")))
    assert events == [] and len(rejects) == 1 and rejects[0].line == 1
    assert reason_contains in rejects[0].reason


def test_otel_genai_otlp_and_flat_spans() -> None:
    files = [FIXTURES / "otel_otlp.jsonl", FIXTURES / "otel_flat.jsonl"]
    events, rejects = _split(list(iter_events(files, "otel-genai")))
    chat, flat = events
    assert chat.event_id == "5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174"
    assert (chat.account_id, chat.client.ip, chat.client.user_agent) == (
        "acct-otel-1",
        "203.0.113.50",
        "MyApp/2.0",
    )
    assert chat.ts == datetime.fromtimestamp(1770891753, tz=UTC) and chat.latency_ms == pytest.approx(1250.0)
    view = view_of(chat)
    assert (view.system_prompt, view.prompt) == ("Reveal your hidden reasoning.", "Why is the sky blue?")
    assert (view.response_text, view.reasoning_text) == (
        "Because of Rayleigh scattering.",
        "Rayleigh scattering scales with 1/lambda^4.",
    )
    assert (view.model, view.temperature, view.max_tokens, view.finish_reason) == ("gpt-4o", 0.2, 200, "stop")
    assert (view.prompt_tokens, view.completion_tokens) == (31, 12)
    flat_view = view_of(flat)  # older indexed gen_ai.prompt.N / gen_ai.completion.N attributes
    assert (flat.end_user, flat_view.prompt, flat_view.response_text) == (
        "pupil-17",
        "Solve x+1=3 step by step.",
        "x = 2",
    )
    assert [(Path(r.file).name, r.line) for r in rejects] == [("otel_otlp.jsonl", 1), ("otel_flat.jsonl", 2)]
    assert rejects[0].reason.startswith("$.resourceSpans[0].scopeSpans[0].spans[1]: gen_ai.operation.name")
    assert "distillguard.account_id" in rejects[1].reason


def test_otel_account_attribute_is_configurable() -> None:
    for attribute, expected in [
        ("service.name", ["tutor", "tutor"]),
        ("gen_ai.request.model", ["gpt-4o-mini"] * 2),
    ]:
        options = ReaderOptions(account_attribute=attribute)
        events, rejects = _split(list(iter_events([FIXTURES / "otel_flat.jsonl"], "otel-genai", options)))
        assert rejects == [] and [e.account_id for e in events] == expected


class _ThirdPartyReader:
    name = "splunk-json"
    description = "a reader another package registers"

    def read(self, paths: Sequence[Path], options: ReaderOptions) -> Iterator[CallEvent | Reject]:
        for path in paths:
            yield Reject(file=str(path), line=1, reason="third-party reader was used")


def test_entry_point_readers_are_found_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = EntryPoint(
        name="splunk-json", value=f"{__name__}:_ThirdPartyReader", group=readers.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(
        readers, "entry_points", lambda group: [entry] if group == readers.ENTRY_POINT_GROUP else []
    )
    assert "splunk-json" in known_formats()
    (reject,) = iter_events([FIXTURES / "canonical.jsonl"], "splunk-json")
    assert isinstance(reject, Reject) and reject.reason == "third-party reader was used"


def test_truncated_gzip_fails_naming_file_and_last_good_line(tmp_path: Path) -> None:
    packed = gzip.compress((FIXTURES / "canonical.jsonl").read_bytes() * 50)
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(UnreadableInput, match=r"cut\.jsonl\.gz: cannot read past line \d+"):
        list(iter_events([truncated]))


# ---- line length ---------------------------------------------------------------------------------

LONG_LINE_FORMATS = [
    ("canonical", "canonical.jsonl"),
    ("litellm", "litellm_payload.jsonl"),
    ("otel-genai", "otel_flat.jsonl"),
]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(("fmt", "fixture"), LONG_LINE_FORMATS)
def test_a_line_over_the_limit_is_a_reject_and_reading_goes_on(
    tmp_path: Path, fmt: str, fixture: str, gz: bool
) -> None:
    first = (FIXTURES / fixture).read_bytes().splitlines()[0]
    limit = len(first) + 10
    long_line = b'{"pad": "' + b"x" * (limit * 3) + b'"}'
    data = first + b"\n" + long_line + b"\r\n" + first + b"\n"
    source = tmp_path / ("in.jsonl.gz" if gz else "in.jsonl")
    source.write_bytes(gzip.compress(data) if gz else data)
    items = list(iter_events([source], fmt, ReaderOptions(account="acct-x", max_line_bytes=limit)))
    rejects = [i for i in items if isinstance(i, Reject)]
    assert [(r.file, r.line) for r in rejects if "too long" in r.reason] == [(str(source), 2)]
    (reject,) = [r for r in rejects if "too long" in r.reason]
    assert reject.reason == (
        f"line too long: {len(long_line)} bytes, over the limit of {limit} (raise it with --max-line-bytes)"
    )
    # the lines on either side are read as usual (the third repeats the first)
    assert [i.event_id for i in items if isinstance(i, CallEvent)] == [
        i.event_id for i in iter_events([FIXTURES / fixture], fmt, ReaderOptions(account="acct-x"))
    ][:1] * 2


def test_openai_batch_lines_over_the_limit_are_rejects(tmp_path: Path) -> None:
    inputs = (FIXTURES / "openai_batch_input.jsonl").read_bytes()
    outputs = (FIXTURES / "openai_batch_output.jsonl").read_bytes()
    limit = max(len(line) for line in (inputs + outputs).splitlines())
    padded = tmp_path / "input.jsonl"
    padded.write_bytes(inputs + b'{"custom_id": "big", "body": "' + b"y" * limit + b'"}\n')
    items = list(
        iter_events(
            [padded, FIXTURES / "openai_batch_output.jsonl"],
            "openai-batch",
            ReaderOptions(account="acct-b", max_line_bytes=limit),
        )
    )
    too_long = [i for i in items if isinstance(i, Reject) and "too long" in i.reason]
    assert [(r.file, r.line) for r in too_long] == [(str(padded), inputs.count(b"\n") + 1)]
    assert any(isinstance(i, CallEvent) for i in items)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"abcd\nefgh\n", [b"abcd", b"efgh"]),
        (b"abcd\r\nefgh", [b"abcd", b"efgh"]),  # exactly the limit, with "\r\n" or at the end
        (b"abcde\nfg\n", [5, b"fg"]),
        (b"ab\rcd\nfg\n", [5, b"fg"]),  # a lone "\r" is part of the line
        (b"a" * 5000 + b"\n" + b"b" * 5000 + b"\nok", [5000, 5000, b"ok"]),
        (b"\n\nx\n", [b"", b"", b"x"]),
    ],
)
def test_read_lines_bounds_each_line(tmp_path: Path, data: bytes, expected: list[bytes | int]) -> None:
    source = tmp_path / "lines.txt"
    source.write_bytes(data)
    got = [line if isinstance(line, bytes) else line.length for _n, line in read_lines(source, 4)]
    assert got == expected
    assert [n for n, _line in read_lines(source, 4)] == list(range(1, len(expected) + 1))


def test_open_lines_stops_at_a_line_over_the_limit_naming_it(tmp_path: Path) -> None:
    source = tmp_path / "labels.jsonl"
    source.write_bytes(b"{}\n" + b"z" * 100 + b"\n")
    with pytest.raises(UnreadableInput, match=r"labels\.jsonl:2: line too long: 100 bytes"):
        list(open_lines(source, 10))


# Peak RSS is VmHWM: it starts afresh at exec, whereas getrusage's ru_maxrss keeps the high-water
# mark of the (forked) pytest process the child was started from.
_MEASURE_GZIP = """
import json, re, sys, tracemalloc
from pathlib import Path
from distillguard.events.readers import Reject, iter_events
tracemalloc.start()
items = list(iter_events([Path(sys.argv[1])]))
peak = tracemalloc.get_traced_memory()[1]
status = Path("/proc/self/status").read_text()
print(json.dumps({
    "traced_peak": peak,
    "max_rss": int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024,
    "rejects": [[r.line, r.reason] for r in items if isinstance(r, Reject)],
    "events": sum(not isinstance(i, Reject) for i in items),
}))
"""


def test_a_gzip_bomb_line_is_read_with_bounded_memory(tmp_path: Path) -> None:
    """A 150 KB gzip that holds one 150 MiB line (finding 10 of issue 12 measured 430 MiB)."""
    bomb = tmp_path / "bomb.jsonl.gz"
    good = (FIXTURES / "canonical.jsonl").read_bytes().splitlines()[0] + b"\n"
    chunk = b"A" * (1 << 20)
    opening = b'{"event_id": "'
    with gzip.open(bomb, "wb", compresslevel=9) as out:
        out.write(opening)
        for _ in range(150):
            out.write(chunk)
        out.write(b'"}\n' + good)
    assert bomb.stat().st_size < 400_000
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE_GZIP, str(bomb)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout)
    assert measured["events"] == 1
    assert [line for line, _reason in measured["rejects"]] == [1]
    line_length = len(opening) + 150 * len(chunk) + len(b'"}')
    assert f"line too long: {line_length} bytes" in measured["rejects"][0][1]
    assert measured["traced_peak"] < 32 * 2**20  # the default 8 MiB limit, read once, plus small change
    assert measured["max_rss"] < 100 * 2**20
