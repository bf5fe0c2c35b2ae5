"""Send a suite to an OpenAI-compatible endpoint and record every streamed answer.

Each question is one streaming chat completion. Every server-sent event is kept with its arrival
time. A request is retried (exponential backoff with jitter, Retry-After honoured and shared by
every worker) only while nothing of the answer has arrived: once text has been shown, whatever
happens next (an error, a content_filter finish, a replacement, a cut) is the observation, not a
fault to retry away. Concurrency and the total number of HTTP requests are bounded. Answers are
appended to the run's JSONL as they complete, so an interrupted run resumes where it stopped.

The API key is read from an environment variable, sent only in the Authorization header, and
removed from everything recorded (error bodies and answers that echo it included).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from distillguard.audit.records import (
    ANSWERED,
    ANSWERS,
    FORMAT_VERSION,
    MANIFEST,
    Answer,
    AnswerLog,
    Attempt,
    Chunk,
    Manifest,
    SuiteRef,
    read_answers,
    read_manifest,
    write_manifest,
)
from distillguard.audit.sse import ServerSentEvent, SSEDecoder
from distillguard.audit.suite import Suite, WorkItem

MAX_RESPONSE_BYTES = 8 << 20  # far above any max_tokens answer; a service streaming more is broken
MAX_RAW_CHARS = 2000  # how much of an error or malformed event is kept as evidence
REDACTED = "[REDACTED]"


class RunError(Exception):
    """A run that cannot start or go on (mismatched run directory, credentials refused)."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    endpoint: str
    model: str
    langs: tuple[str, ...]
    api_key: str | None = None
    api_key_env: str = "DISTILLGUARD_AUDIT_API_KEY"
    concurrency: int = 4
    max_requests: int | None = None
    retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_wait_s: float = 120.0
    timeout_s: float = 180.0
    read_timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    temperature: float | None = 0.0
    max_tokens: int | None = 1024
    seed: int | None = None
    retry_failed: bool = False
    progress: bool = True

    def params(self) -> dict[str, float | int | None]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed}


@dataclass(frozen=True, slots=True)
class Target:
    url: URL  # the chat-completions URL requests go to (may hold user info; never written)
    shown: str  # what is written and printed: scheme, host, port and path only


def chat_completions_target(endpoint: str) -> Target:
    """Accept a base URL, a `/v1` URL or the full chat-completions URL.

    >>> chat_completions_target("http://127.0.0.1:8000").shown
    'http://127.0.0.1:8000/v1/chat/completions'
    >>> chat_completions_target("https://user:secret@api.example.com/v1?key=abc").shown
    'https://api.example.com/v1/chat/completions'
    """
    url = URL(endpoint)
    if url.scheme not in ("http", "https") or not url.host:
        raise RunError(f"--endpoint {_strip_url(url)!r}: expected an http(s) URL of an OpenAI-compatible API")
    path = url.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path = path + "/chat/completions" if path.endswith("/v1") else path + "/v1/chat/completions"
    target = url.with_path(path)
    return Target(target, _strip_url(target))


def _strip_url(url: URL) -> str:
    return str(url.with_user(None).with_query(None).with_fragment(None))


_SECRET_PARAM = re.compile(r"key|token|secret|sig|pass|auth", re.IGNORECASE)


def _secret_query_values(url: URL) -> list[str]:
    return [value for name, value in url.query.items() if _SECRET_PARAM.search(name)]


class Redactor:
    """Removes the credentials from any text before it is recorded or printed."""

    def __init__(self, *secrets: str | None) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def chunks(self, chunks: list[Chunk]) -> None:
        """Redact streamed text in place, including a secret split across several deltas.

        >>> cs = [Chunk(t=0, kind="delta", content="key is sk-te"), Chunk(t=1, kind="delta", content="st1 ok")]
        >>> Redactor("sk-test1").chunks(cs); [c.content for c in cs]
        ['key is [REDACTED]', ' ok']
        """
        if not self._secrets:
            return
        for name in ("content", "reasoning", "refusal", "raw"):
            by_message: dict[int, list[Chunk]] = {}
            for chunk in chunks:
                by_message.setdefault(chunk.message, []).append(chunk)
            for group in by_message.values():
                texts = [getattr(chunk, name) for chunk in group]
                joined = "".join(texts)
                hidden = [False] * len(joined)
                starts: set[int] = set()
                for secret in self._secrets:
                    at = joined.find(secret)
                    while at >= 0:
                        starts.add(at)
                        hidden[at : at + len(secret)] = [True] * len(secret)
                        at = joined.find(secret, at + len(secret))
                if not starts:
                    continue
                offset = 0
                for chunk, text in zip(group, texts, strict=True):
                    kept = [
                        REDACTED if offset + i in starts else char
                        for i, char in enumerate(text)
                        if not hidden[offset + i] or offset + i in starts
                    ]
                    setattr(chunk, name, "".join(kept))
                    offset += len(text)


@dataclass(slots=True)
class RequestBudget:
    """The most HTTP requests a run may send (retries included); None is unbounded."""

    remaining: int | None
    sent: int = 0

    def take(self) -> bool:
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
        self.sent += 1
        return True


@dataclass(slots=True)
class RateGate:
    """A 429's Retry-After applies to the service, not to one request: every worker waits."""

    not_before: float = 0.0

    def hold(self, seconds: float) -> None:
        self.not_before = max(self.not_before, time.monotonic() + seconds)

    async def wait(self) -> float:
        delay = self.not_before - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
            return delay
        return 0.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date).

    >>> parse_retry_after("2"), parse_retry_after("soon"), parse_retry_after(None)
    (2.0, None, None)
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StreamReading:
    """Turns the events of one streamed answer into recorded chunks and a final status."""

    def __init__(self, redact: Redactor) -> None:
        self.redact = redact
        self.chunks: list[Chunk] = []
        self.message = 0
        self.has_content = False  # the current message has text
        self.any_content = False
        self.finish_reason: str | None = None
        self.done = False
        self.error: str = ""
        self.malformed: str = ""
        self.first_chunk_s: float | None = None

    def _raw(self, text: str) -> str:
        return self.redact(text[:MAX_RAW_CHARS])

    def event(self, event: ServerSentEvent, t: float) -> None:
        if self.first_chunk_s is None:
            self.first_chunk_s = t
        data = event.data
        if event.event == "error":
            self._error(data, t)
            return
        if data.strip() == "[DONE]":
            self.done = True
            self.chunks.append(Chunk(t=t, kind="done"))
            return
        if not data.strip():
            return
        try:
            obj = json.loads(data)
        except ValueError as error:
            self.note_malformed(f"not JSON ({error.__class__.__name__}: {error})", data, t)
            return
        self.chunk_object(obj, data, t)

    def chunk_object(self, obj: Any, data: str, t: float) -> None:
        if not isinstance(obj, dict):
            self.note_malformed("an event that is not a JSON object", data, t)
            return
        if obj.get("error"):
            self._error(data, t)
            return
        choices = obj.get("choices")
        if not isinstance(choices, list):
            if "usage" in obj:
                self.chunks.append(Chunk(t=t, kind="usage", raw=self._raw(data)))
            else:
                self.note_malformed("an event without `choices`", data, t)
            return
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                if not isinstance(choice, dict):
                    self.note_malformed("a choice that is not an object", data, t)
                continue  # only n=1 is requested; other choices are not part of the answer
            self._choice(choice, data, t)

    def _choice(self, choice: dict[str, Any], data: str, t: float) -> None:
        finish = choice.get("finish_reason")
        if finish is not None and not isinstance(finish, str):
            self.note_malformed("finish_reason is not a string", data, t)
            return
        whole = choice.get("message")
        delta = choice.get("delta")
        if isinstance(whole, dict):
            content, reasoning, refusal = _texts(whole)
            if None in (content, reasoning, refusal):
                self.note_malformed("message content is not a string", data, t)
                return
            if self.has_content:
                self.message += 1
            self.chunks.append(
                Chunk(
                    t=t,
                    kind="message",
                    message=self.message,
                    content=content or "",
                    reasoning=reasoning or "",
                    refusal=refusal or "",
                    finish_reason=finish,
                )
            )
            self.has_content = bool(content or refusal)
        elif isinstance(delta, dict):
            content, reasoning, refusal = _texts(delta)
            if None in (content, reasoning, refusal):
                self.note_malformed("delta content is not a string", data, t)
                return
            # a role after text has been shown starts a new message: the service is replacing it
            if delta.get("role") and self.has_content:
                self.message += 1
                self.has_content = False
            self.chunks.append(
                Chunk(
                    t=t,
                    kind="delta",
                    message=self.message,
                    content=content or "",
                    reasoning=reasoning or "",
                    refusal=refusal or "",
                    finish_reason=finish,
                )
            )
            if content or refusal:
                self.has_content = True
        elif finish is not None:
            self.chunks.append(Chunk(t=t, kind="delta", message=self.message, finish_reason=finish))
        else:
            self.note_malformed("a choice with neither `delta` nor `message`", data, t)
            return
        self.any_content = self.any_content or self.has_content
        if finish is not None:
            self.finish_reason = finish

    def _error(self, data: str, t: float) -> None:
        message = data
        try:
            obj = json.loads(data)
            inner = obj.get("error", obj) if isinstance(obj, dict) else obj
            if isinstance(inner, dict):
                message = str(inner.get("message") or inner.get("code") or data)
            elif isinstance(inner, str):
                message = inner
        except ValueError:
            pass
        self.error = self._raw(message)
        self.chunks.append(Chunk(t=t, kind="error", message=self.message, raw=self._raw(data)))

    def note_malformed(self, why: str, data: str, t: float) -> None:
        if not self.malformed:
            self.malformed = why
        self.chunks.append(Chunk(t=t, kind="malformed", message=self.message, raw=self._raw(data)))

    def status(self) -> str:
        if self.error:
            return "stream_error"
        if self.finish_reason == "content_filter":
            return "content_filter"
        if self.malformed:
            return "malformed"
        if self.finish_reason is not None or self.done:
            return "complete"
        return "truncated"


def _texts(part: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """content, reasoning and refusal of a delta or message; None for a value of the wrong type."""
    values = []
    for key in ("content", "reasoning_content", "refusal"):
        value = part.get(key)
        if key == "reasoning_content" and value is None:
            value = part.get("reasoning")
        values.append("" if value is None else value if isinstance(value, str) else None)
    return values[0], values[1], values[2]


@dataclass(slots=True)
class Client:
    session: aiohttp.ClientSession
    target: Target
    options: RunOptions
    redact: Redactor

    def body(self, prompt: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.options.model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
        }
        for name, value in self.options.params().items():
            if value is not None:
                body[name] = value
        return body

    async def ask(self, prompt: str, n: int, waited: float | None) -> Attempt:
        """One HTTP request; every outcome becomes an Attempt, none raises."""
        started_at = _now_iso()
        t0 = time.monotonic()
        reading = StreamReading(self.redact)
        http_status: int | None = None
        retry_after: float | None = None
        error = ""
        body_excerpt = ""
        streamed = True
        status: str | None = None
        headers = {"Accept": "text/event-stream"}
        if self.options.api_key:
            headers["Authorization"] = f"Bearer {self.options.api_key}"
        try:
            async with self.session.post(
                self.target.url, json=self.body(prompt), headers=headers
            ) as response:
                http_status = response.status
                if response.status != 200:
                    text = await _read_text(response, 65536)
                    body_excerpt = self.redact(text[:MAX_RAW_CHARS])
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    status = "rate_limited" if response.status == 429 else "http_error"
                    error = f"HTTP {response.status} {response.reason or ''}".strip()
                elif response.content_type == "text/event-stream":
                    status = await self._read_stream(response, reading, t0)
                elif response.content_type == "application/json":
                    streamed = False
                    text = await _read_text(response, MAX_RESPONSE_BYTES)
                    try:
                        reading.chunk_object(json.loads(text), text, time.monotonic() - t0)
                        reading.done = True
                    except ValueError:
                        reading.note_malformed("a JSON body that does not parse", text, time.monotonic() - t0)
                    status = reading.status()
                else:
                    text = await _read_text(response, 65536)
                    body_excerpt = self.redact(text[:MAX_RAW_CHARS])
                    status = "malformed"
                    error = f"expected text/event-stream, got {response.content_type or 'no content type'}"
        except TimeoutError:
            status, error = "timeout", self._timeout_note(reading, t0)
        except aiohttp.ClientPayloadError as failure:
            status, error = "truncated", self.redact(f"{failure.__class__.__name__}: {failure}")
        except (aiohttp.ClientError, OSError) as failure:
            status, error = "connection_error", self.redact(f"{failure.__class__.__name__}: {failure}")
        except ValueError as failure:  # an SSE event past the size bound
            status, error = "malformed", self.redact(str(failure))
        self.redact.chunks(reading.chunks)
        if reading.error and not error:
            error = reading.error
        elif reading.malformed and not error:
            error = reading.malformed
        return Attempt(
            n=n,
            started_at=started_at,
            status=status or reading.status(),
            elapsed_s=round(time.monotonic() - t0, 4),
            http_status=http_status,
            first_chunk_s=None if reading.first_chunk_s is None else round(reading.first_chunk_s, 4),
            retry_after_s=retry_after,
            waited_s=None if waited is None else round(waited, 3),
            error=error,
            finish_reason=reading.finish_reason,
            streamed=streamed,
            body=body_excerpt,
            chunks=reading.chunks,
        )

    async def _read_stream(self, response: aiohttp.ClientResponse, reading: StreamReading, t0: float) -> str:
        decoder = SSEDecoder()
        received = 0
        async for data in response.content.iter_any():
            received += len(data)
            if received > MAX_RESPONSE_BYTES:
                reading.note_malformed(
                    f"more than {MAX_RESPONSE_BYTES} bytes streamed; stopped reading", "", 0.0
                )
                return "malformed"
            now = time.monotonic() - t0
            for event in decoder.feed(data):
                reading.event(event, round(now, 4))
        events, pending = decoder.close()
        now = round(time.monotonic() - t0, 4)
        for event in events:
            reading.event(event, now)
        if pending:
            reading.note_malformed("the stream ended inside an event (no blank line after it)", pending, now)
        return reading.status()

    def _timeout_note(self, reading: StreamReading, t0: float) -> str:
        spent = time.monotonic() - t0
        if reading.first_chunk_s is None:
            return f"no answer after {spent:.1f} s"
        return f"the stream stalled: nothing more after {spent:.1f} s"


async def _read_text(response: aiohttp.ClientResponse, limit: int) -> str:
    """The body, or its first `limit` bytes."""
    parts: list[bytes] = []
    size = 0
    async for data in response.content.iter_chunked(65536):
        parts.append(data)
        size += len(data)
        if size >= limit:
            break
    try:
        return b"".join(parts)[:limit].decode(response.charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return b"".join(parts)[:limit].decode("utf-8", errors="replace")


def _has_content(attempt: Attempt) -> bool:
    return any(c.content or c.refusal for c in attempt.chunks)


def retryable(attempt: Attempt) -> bool:
    """Retry transport failures, never once the answer has started to show.

    >>> retryable(Attempt(n=1, started_at="", status="timeout", elapsed_s=1.0))
    True
    >>> retryable(Attempt(n=1, started_at="", status="http_error", elapsed_s=0.1, http_status=400))
    False
    """
    if _has_content(attempt):
        return False
    if attempt.status in ("timeout", "connection_error", "rate_limited", "truncated"):
        return True
    return attempt.status == "http_error" and (attempt.http_status or 0) in (408, 409, 500, 502, 503, 504)


@dataclass(slots=True)
class RunSummary:
    run_dir: Path
    total: int
    already: int
    written: int = 0
    left: int = 0
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    stopped: str = ""
    problems: list[str] = field(default_factory=list)


class Auditor:
    """One run: a suite's questions to one model, resumable from its run directory."""

    def __init__(self, suite: Suite, options: RunOptions, run_dir: Path) -> None:
        self.suite = suite
        self.options = options
        self.run_dir = run_dir
        self.target = chat_completions_target(options.endpoint)
        self.redact = Redactor(
            options.api_key, self.target.url.password, *_secret_query_values(self.target.url)
        )
        self.budget = RequestBudget(options.max_requests)
        self.gate = RateGate()
        self._stop = ""
        self._notes: list[str] = []

    def manifest(self) -> Manifest:
        try:
            own_version = version("distillguard")
        except PackageNotFoundError:
            own_version = "unknown"
        return Manifest(
            format=FORMAT_VERSION,
            model=self.options.model,
            endpoint=self.target.shown,
            suites=[
                SuiteRef(name=s.name, path=s.path, sha256=s.sha256, licence=s.licence)
                for s in self.suite.sources
            ],
            langs=list(self.options.langs),
            params=self.options.params(),
            api_key_env=self.options.api_key_env,
            created_at=_now_iso(),
            distillguard_version=own_version,
        )

    def _check_existing(self, fresh: Manifest) -> None:
        if not (self.run_dir / MANIFEST).exists():
            if (self.run_dir / ANSWERS).exists():
                raise RunError(f"{self.run_dir}: holds {ANSWERS} but no {MANIFEST}; use another --out")
            write_manifest(self.run_dir, fresh)
            return
        try:
            old = read_manifest(self.run_dir)
        except ValueError as error:
            raise RunError(str(error)) from error
        if old.endpoint != fresh.endpoint:
            # the same model may be served from another address after a restart: note it, go on
            self._notes.append(f"note: the endpoint was {old.endpoint}, now {fresh.endpoint}")
        for name in ("model", "langs", "params"):
            if getattr(old, name) != getattr(fresh, name):
                raise RunError(
                    f"{self.run_dir / MANIFEST}: {name} is {getattr(old, name)!r} but this run asks for "
                    f"{getattr(fresh, name)!r}; a run directory holds one run: use another --out"
                )
        old_suites = sorted((s.name, s.sha256) for s in old.suites)
        new_suites = sorted((s.name, s.sha256) for s in fresh.suites)
        if old_suites != new_suites:
            raise RunError(
                f"{self.run_dir / MANIFEST}: suites {old_suites} differ from this run's {new_suites} "
                "(a suite file changed since the run began); use another --out"
            )

    async def run(self, *, echo: Callable[[str], None] = lambda _: None) -> RunSummary:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._check_existing(self.manifest())
        for note in self._notes:
            echo(note)
        existing = read_answers(self.run_dir)
        items = self.suite.items(self.options.langs)
        done = {
            key
            for key, answer in existing.answers.items()
            if not (self.options.retry_failed and answer.status not in ANSWERED and not _observed(answer))
        }
        todo = [item for item in items if item.key not in done]
        summary = RunSummary(self.run_dir, total=len(items), already=len(items) - len(todo))
        summary.problems = existing.problems
        for problem in existing.problems:
            echo(f"note: {problem}; that question is asked again")
        if not todo:
            return summary
        log = AnswerLog(self.run_dir / ANSWERS)
        progress = _progress(len(todo), self.options)
        queue: asyncio.Queue[WorkItem] = asyncio.Queue()
        for item in todo:
            queue.put_nowait(item)
        connector = aiohttp.TCPConnector(limit=self.options.concurrency)
        timeout = aiohttp.ClientTimeout(
            total=self.options.timeout_s,
            sock_connect=self.options.connect_timeout_s,
            sock_read=self.options.read_timeout_s,
        )
        try:
            # trust_env: an auditor behind a proxy reaches a hosted API through HTTP(S)_PROXY, as curl does
            async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=True) as session:
                client = Client(session, self.target, self.options, self.redact)

                async def worker() -> None:
                    while not self._stop:
                        try:
                            item = queue.get_nowait()
                        except asyncio.QueueEmpty:
                            return
                        answer = await self.ask_item(client, item)
                        if answer is None:
                            return
                        log.write(answer)
                        summary.written += 1
                        summary.statuses[answer.status] += 1
                        progress.update(1)
                        progress.set_postfix(dict(summary.statuses), refresh=False)

                await asyncio.gather(*(worker() for _ in range(max(1, self.options.concurrency))))
        finally:
            log.close()
            progress.close()
        summary.requests = self.budget.sent
        summary.left = len(todo) - summary.written
        summary.stopped = self._stop
        return summary

    async def ask_item(self, client: Client, item: WorkItem) -> Answer | None:
        """Ask one question, retrying as `retryable` allows; None when the run stops first."""
        attempts: list[Attempt] = []
        paused = 0.0  # backoff and Retry-After waited before the attempt about to be sent
        for n in range(1, self.options.retries + 2):
            paused += await self.gate.wait()
            if self._stop:
                return None
            if not self.budget.take():
                self._stop = self._stop or "the request budget (--max-requests) is spent"
                return None
            attempt = await client.ask(item.text, n, paused if n > 1 else None)
            attempts.append(attempt)
            if attempt.http_status in (401, 404) and not _has_content(attempt):
                # every later request would meet the same wall: stop the run, record nothing
                self._stop = (
                    f"the endpoint answered HTTP {attempt.http_status} for model {self.options.model!r} "
                    f"({attempt.body[:200] or 'no body'}); check --endpoint, --model and "
                    f"${self.options.api_key_env}"
                )
                return None
            if not retryable(attempt) or n > self.options.retries:
                break
            if attempt.retry_after_s is not None:
                if attempt.retry_after_s > self.options.max_wait_s:
                    attempt.error += (
                        f"; Retry-After {attempt.retry_after_s:g} s is longer than --max-wait "
                        f"{self.options.max_wait_s:g} s: not retried"
                    )
                    break
                self.gate.hold(attempt.retry_after_s)  # the next gate.wait() sleeps it, for every worker
                paused = 0.0
                continue
            delay = min(self.options.max_backoff_s, self.options.backoff_s * 2 ** (n - 1))
            delay *= 0.5 + random.random() / 2  # jitter: workers that failed together retry apart
            await asyncio.sleep(delay)
            paused = delay
        return _answer(item, attempts)


def _observed(answer: Answer) -> bool:
    """A non-answer that is still behaviour (a content-filter refusal), not a transport failure."""
    from distillguard.audit.measures import measure_answer  # measures read records; no cycle at import

    return measure_answer(answer).measured


def _answer(item: WorkItem, attempts: Sequence[Attempt]) -> Answer:
    lang = item.lang
    return Answer(
        key=item.key,
        item=item.item,
        lang=lang,
        topic=item.topic,
        prompt=item.text,
        status=attempts[-1].status,
        completed_at=_now_iso(),
        attempts=list(attempts),
        pair=item.pair,
        side=item.side,
        kind=item.kind,
        subject=item.subject.name if item.subject else None,
        subject_terms=list(item.subject.terms.get(lang, [])) if item.subject else [],
        other_subject=item.other.name if item.other else None,
        other_terms=list(item.other.terms.get(lang, [])) if item.other else [],
    )


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, values: dict[str, int], refresh: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, options: RunOptions) -> Any:
    if not options.progress:
        return _NoProgress()
    from tqdm import tqdm  # the project's progress bar everywhere

    return tqdm(total=total, unit="answer", desc=options.model[:30], file=sys.stderr, dynamic_ncols=True)
