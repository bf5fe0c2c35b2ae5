"""One conformance suite run against every built-in reader (the Ibis habit): the same promises
hold whatever the format, so a new reader is checked by adding one row to READERS."""

from __future__ import annotations

import gzip
from pathlib import Path

import msgspec
import pytest

from distillguard.events.model import CallEvent
from distillguard.events.readers import BUILTIN_READERS, ReaderOptions, Reject, iter_events

FIXTURES = Path(__file__).parent / "fixtures"

# format -> (fixture files, options); the files hold at least one good call each
READERS: dict[str, tuple[list[str], ReaderOptions]] = {
    "canonical": (["canonical.jsonl"], ReaderOptions()),
    "openai-batch": (
        ["openai_batch_input.jsonl", "openai_batch_output.jsonl"],
        ReaderOptions(account="acct-b"),
    ),
    "litellm": (["litellm_payload.jsonl", "litellm_spend_logs.jsonl"], ReaderOptions(account="acct-l")),
    "otel-genai": (["otel_otlp.jsonl", "otel_flat.jsonl"], ReaderOptions()),
}


def test_every_builtin_reader_is_in_the_suite() -> None:
    assert set(READERS) == set(BUILTIN_READERS)


def _read(fmt: str, paths: list[Path]) -> list[CallEvent | Reject]:
    return list(iter_events(paths, fmt, READERS[fmt][1]))


@pytest.fixture(params=sorted(READERS))
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_yields_valid_calls_and_located_rejects(fmt: str) -> None:
    paths = [FIXTURES / n for n in READERS[fmt][0]]
    items = _read(fmt, paths)
    calls = [i for i in items if isinstance(i, CallEvent)]
    assert calls and all(isinstance(i, CallEvent | Reject) for i in items)
    for call in calls:
        assert call.ts.tzinfo is not None and call.account_id and call.event_id
        assert isinstance(call.request, dict) and call.endpoint
        # a call survives the canonical encoding round trip (what `scan` and the gateway share)
        assert msgspec.json.decode(msgspec.json.encode(call), type=CallEvent) == call
    assert len({c.event_id for c in calls}) == len(calls)
    for reject in (i for i in items if isinstance(i, Reject)):
        assert reject.file in {str(p) for p in paths} and reject.line >= 1 and reject.reason


def test_gzip_gives_the_same_calls(fmt: str, tmp_path: Path) -> None:
    plain = [FIXTURES / n for n in READERS[fmt][0]]
    packed = []
    for path in plain:
        target = tmp_path / (path.name + ".gz")
        target.write_bytes(gzip.compress(path.read_bytes()))
        packed.append(target)
    calls = [i for i in _read(fmt, plain) if isinstance(i, CallEvent)]
    assert calls == [i for i in _read(fmt, packed) if isinstance(i, CallEvent)]


@pytest.mark.parametrize(
    ("bad", "reason_contains"),
    # invalid UTF-8 in a field a typed decoder skips is rejected for the missing fields instead
    [(b"", "empty line"), (b"{not json", "invalid JSON"), (b'{"x": "\xff\xfe"}', "")],
)
def test_malformed_line_is_a_reject_at_its_line(
    fmt: str, tmp_path: Path, bad: bytes, reason_contains: str
) -> None:
    names = READERS[fmt][0]
    paths = []
    for name in names:
        target = tmp_path / name
        lines = (FIXTURES / name).read_bytes().splitlines()
        target.write_bytes(b"\n".join([lines[0], bad, *lines[1:]]) + b"\n")
        paths.append(target)
    rejects = [i for i in _read(fmt, paths) if isinstance(i, Reject)]
    matching = [r for r in rejects if r.line == 2 and reason_contains in r.reason]
    assert {r.file for r in matching} == {str(p) for p in paths}
