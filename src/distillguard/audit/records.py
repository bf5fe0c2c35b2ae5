"""What an audit run writes: a manifest, and one append-only JSONL line per answered question with
every attempt and every streamed chunk with its time, so each measure can show its evidence.

A run directory holds `run.json` (the manifest) and `answers.jsonl`. The last line for a key wins,
so a retried question appends a newer record instead of rewriting the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

ANSWERS = "answers.jsonl"
MANIFEST = "run.json"
FORMAT_VERSION = 1

# Final status of an attempt. The first three carry an answer (or its withdrawal) from the model;
# the rest are transport outcomes, recorded as such and left out of the behaviour measures unless
# their evidence says otherwise (an HTTP error whose body names the service's content filter is a
# refusal; see measures).
STATUSES = (
    "complete",  # the stream finished (finish_reason or [DONE])
    "content_filter",  # finish_reason content_filter
    "stream_error",  # an error event inside a 200 stream
    "truncated",  # the connection closed before a finish_reason or [DONE]
    "malformed",  # events that are not OpenAI chunks (bad JSON, wrong shape, not SSE)
    "timeout",
    "rate_limited",  # 429 after every retry, or a Retry-After longer than the run may wait
    "http_error",
    "connection_error",
)
ANSWERED = frozenset({"complete", "content_filter", "stream_error"})


class Chunk(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One server-sent event as the model's service sent it, with when it arrived."""

    t: float  # seconds since the request was sent
    kind: str  # delta | message | error | malformed | done | usage
    message: int = 0  # 0 for the first message; a later message replaces what came before
    content: str = ""
    reasoning: str = ""
    refusal: str = ""
    finish_reason: str | None = None
    raw: str = ""  # the event's data for error and malformed events (capped, key redacted)


class Attempt(msgspec.Struct, kw_only=True, omit_defaults=True):
    n: int
    started_at: str
    status: str
    elapsed_s: float
    http_status: int | None = None
    first_chunk_s: float | None = None
    retry_after_s: float | None = None
    waited_s: float | None = None  # how long the run waited before this attempt
    error: str = ""
    finish_reason: str | None = None
    streamed: bool = True  # False when the service answered a stream request with one JSON body
    body: str = ""  # excerpt of a non-stream body (errors, HTML), capped, key redacted
    chunks: list[Chunk] = []


class Answer(msgspec.Struct, kw_only=True, omit_defaults=True):
    key: str
    item: str
    lang: str
    topic: str
    prompt: str
    status: str
    completed_at: str
    attempts: list[Attempt]
    pair: str | None = None
    side: str | None = None
    kind: str | None = None
    # who the answer is about, and the words naming them in this language (copied from the suite
    # so a run directory can be measured without the suite file)
    subject: str | None = None
    subject_terms: list[str] = []
    other_subject: str | None = None
    other_terms: list[str] = []


class SuiteRef(msgspec.Struct, kw_only=True):
    name: str
    path: str
    sha256: str
    licence: str


class Manifest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The run's identity. A resumed run must ask the same model the same suites the same way."""

    format: int
    model: str
    endpoint: str  # scheme, host and path only: no user info, no query
    suites: list[SuiteRef]
    langs: list[str]
    params: dict[str, float | int | None]
    api_key_env: str
    created_at: str
    distillguard_version: str


@dataclass(slots=True)
class Message:
    """The text of one assistant message within an attempt, and when it was shown."""

    index: int
    text: str = ""
    first_t: float | None = None
    last_t: float | None = None
    replaced_whole: bool = False  # came as one full `message`, not as deltas
    refusal: str = ""


def messages_of(attempt: Attempt) -> list[Message]:
    """Rebuild the messages a client would have shown, in order.

    >>> a = Attempt(n=1, started_at="", status="complete", elapsed_s=1.0, chunks=[
    ...     Chunk(t=0.1, kind="delta", content="Tiananmen "), Chunk(t=0.2, kind="delta", content="Square"),
    ...     Chunk(t=0.9, kind="message", message=1, content="Sorry, I can't.")])
    >>> [(m.index, m.text) for m in messages_of(a)]
    [(0, 'Tiananmen Square'), (1, "Sorry, I can't.")]
    """
    found: dict[int, Message] = {}
    for chunk in attempt.chunks:
        if chunk.kind not in ("delta", "message"):
            continue
        message = found.setdefault(chunk.message, Message(chunk.message))
        if chunk.kind == "message":
            message.text = chunk.content
            message.refusal = chunk.refusal
            message.replaced_whole = True
        else:
            message.text += chunk.content
            message.refusal += chunk.refusal
        if chunk.content or chunk.refusal:
            message.first_t = chunk.t if message.first_t is None else message.first_t
            message.last_t = chunk.t
    return [found[index] for index in sorted(found)]


def final_attempt(answer: Answer) -> Attempt:
    return answer.attempts[-1]


_encoder = msgspec.json.Encoder()


class AnswerLog:
    """The append-only answers file: one line per answer, flushed and synced as it is written, so a
    crash loses at most the answer being written (and never a line already there)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("ab")
        # a run killed mid-write leaves a partial last line; start on a fresh line after it
        if self._file.tell() > 0:
            with path.open("rb") as existing:
                existing.seek(-1, os.SEEK_END)
                if existing.read(1) != b"\n":
                    self._file.write(b"\n")

    def write(self, answer: Answer) -> None:
        self._file.write(_encoder.encode(answer) + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


@dataclass(slots=True)
class RunFiles:
    """The answers of a run directory: the newest record per key, and every line that could not be
    read (named by file and line; such a question counts as not yet asked)."""

    answers: dict[str, Answer] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


_decoder = msgspec.json.Decoder(Answer)


def read_answers(run_dir: Path) -> RunFiles:
    result = RunFiles()
    path = run_dir / ANSWERS
    if not path.exists():
        return result
    for number, line in _lines(path):
        try:
            answer = _decoder.decode(line)
        except msgspec.DecodeError as error:
            result.problems.append(f"{path}:{number}: not a complete answer record ({error})")
            continue
        result.answers[answer.key] = answer
    return result


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, line


def read_manifest(run_dir: Path) -> Manifest:
    path = run_dir / MANIFEST
    try:
        return msgspec.json.decode(path.read_bytes(), type=Manifest)
    except FileNotFoundError as error:
        raise ValueError(f"{run_dir}: not an audit run directory (no {MANIFEST})") from error
    except msgspec.DecodeError as error:
        raise ValueError(f"{path}: {error}") from error


def write_manifest(run_dir: Path, manifest: Manifest) -> None:
    target = run_dir / MANIFEST
    temporary = target.with_suffix(".json.tmp")
    temporary.write_bytes(msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n")
    temporary.replace(target)
