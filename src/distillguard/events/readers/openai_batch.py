"""Reader for OpenAI Batch API files: the uploaded input JSONL (one request per line with
`custom_id`, `method`, `url`, `body`) joined by `custom_id` to the output and error JSONL files
(`id`, `custom_id`, `response{status_code, request_id, body}`, `error`).

What the files do not say, and how it is filled:
- account: a batch is uploaded by one organisation and its files never name it, so the account
  comes from `ReaderOptions.account` (`--account` on the command line) and is required.
- time: `response.body.created` (epoch seconds). A line without it (a failed or expired request)
  takes the time of the previous timed line of the output files (give the output file before
  the error file); a line before any timed one is rejected.
- client IP, key, latency: not recorded by the Batch API; left empty ("" / null / 0).
- status: `response.status_code`; 0 when the batch never ran the request (`response` is null and
  `error` says why, e.g. `batch_expired`).

The files may be given in any order; each is recognised by its first line. Input files are held
in memory as raw lines (a batch input is at most 200 MB), output files are streamed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from distillguard.events.credentials import may_hold_secret, strip_event_credentials
from distillguard.events.model import CallEvent, Client
from distillguard.events.readers.base import (
    OverlongLine,
    ReaderOptions,
    Reject,
    decoded_lines,
    read_lines,
    ts_from_epoch,
)


class BatchRequestLine(msgspec.Struct):
    custom_id: str
    method: str
    url: str
    body: dict[str, Any]


class BatchResponse(msgspec.Struct):
    status_code: int
    body: dict[str, Any] | None = None
    request_id: str | None = None


class BatchOutputLine(msgspec.Struct):
    custom_id: str
    id: str | None = None
    response: BatchResponse | None = None
    error: dict[str, Any] | None = None


_request_decoder = msgspec.json.Decoder(BatchRequestLine)
_output_decoder = msgspec.json.Decoder(BatchOutputLine)


class _BatchClock:
    """The time of the latest timed output line, shared across the output and error files."""

    last: datetime | None = None


def _kind_of(path: Path, max_line_bytes: int) -> str | None:
    """'input' or 'output' from the first non-blank line that is a JSON object, else None."""
    for _number, line in read_lines(path, max_line_bytes):
        if isinstance(line, OverlongLine) or not line.strip():
            continue
        try:
            first = msgspec.json.decode(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(first, dict):
            if "body" in first and "url" in first:
                return "input"
            if "response" in first or "error" in first:
                return "output"
        return None
    return None


class OpenAIBatchReader:
    name = "openai-batch"
    # one run's files are read together (inputs joined to outputs): a distributed ingest keeps them
    # in one task
    joins_files = True
    description = (
        "OpenAI Batch API input .jsonl joined by custom_id to its output/error .jsonl (needs --account)"
    )

    def read(self, paths: Sequence[Path], options: ReaderOptions) -> Iterator[CallEvent | Reject]:
        if not options.account:
            raise ValueError(
                "openai-batch: Batch API files do not name the account that uploaded them; "
                "pass it with --account"
            )
        inputs: list[Path] = []
        outputs: list[Path] = []
        for path in paths:
            kind = _kind_of(path, options.max_line_bytes)
            if kind == "input":
                inputs.append(path)
            elif kind == "output":
                outputs.append(path)
            else:
                yield Reject(
                    file=str(path),
                    line=1,
                    reason="not an OpenAI Batch input (custom_id, method, url, body) "
                    "or output (custom_id, response, error) file",
                )
        # custom_id -> (file, line, raw request line); consumed as outputs are joined to it.
        pending: dict[str, tuple[str, int, bytes]] = {}
        for path in inputs:
            yield from self._index_inputs(path, pending, options.max_line_bytes)
        clock = _BatchClock()
        for path in outputs:
            yield from self._join_outputs(path, pending, options.account, options.max_line_bytes, clock)
        for file, number, _raw in pending.values():
            yield Reject(file=file, line=number, reason="no output line for this custom_id")

    def _index_inputs(
        self, path: Path, pending: dict[str, tuple[str, int, bytes]], max_line_bytes: int
    ) -> Iterator[Reject]:
        file = str(path)
        for item in decoded_lines(path, _request_decoder.decode, max_line_bytes):
            if isinstance(item, Reject):
                yield item
                continue
            number, line, request = item
            if request.custom_id in pending:
                first = pending[request.custom_id]
                yield Reject(
                    file=file, line=number, reason=f"custom_id repeats the request at {first[0]}:{first[1]}"
                )
                continue
            pending[request.custom_id] = (file, number, line)

    def _join_outputs(
        self,
        path: Path,
        pending: dict[str, tuple[str, int, bytes]],
        account: str,
        max_line_bytes: int,
        clock: _BatchClock,
    ) -> Iterator[CallEvent | Reject]:
        file = str(path)
        for item in decoded_lines(path, _output_decoder.decode, max_line_bytes):
            if isinstance(item, Reject):
                yield item
                continue
            number, line, output = item
            source = pending.pop(output.custom_id, None)
            if source is None:
                yield Reject(file=file, line=number, reason="custom_id has no request in the input files")
                continue
            request = _request_decoder.decode(source[2])
            body = output.response.body if output.response is not None else None
            created = body.get("created") if body is not None else None
            if isinstance(created, int | float) and not isinstance(created, bool):
                clock.last = ts_from_epoch(float(created))
            elif clock.last is None:
                yield Reject(
                    file=file,
                    line=number,
                    reason="no time: $.response.body.created is missing and no earlier line has one",
                )
                continue
            event = CallEvent(
                event_id=output.id or f"batch:{output.custom_id}",
                ts=clock.last,
                account_id=account,
                client=Client(ip=""),
                endpoint=request.url,
                request=request.body,
                response=body,
                status=output.response.status_code if output.response is not None else 0,
            )
            if may_hold_secret(source[2]) or may_hold_secret(line):
                strip_event_credentials(event)
            yield event
