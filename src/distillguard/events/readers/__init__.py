"""Log readers: each turns one kind of API log into canonical CallEvents, reporting every line it
cannot use as a Reject (file, line, reason) instead of skipping it.

Readers are chosen by name. The built-in ones are listed in `BUILTIN_READERS`; third-party
packages add their own through the `distillguard.readers` entry-point group (the value is a
`module:attribute` naming a `Reader`). An unknown name fails loudly, listing the known ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

from distillguard.events.model import CallEvent
from distillguard.events.readers.base import ReaderOptions, Reject

__all__ = [
    "BUILTIN_READERS",
    "Reader",
    "ReaderOptions",
    "Reject",
    "UnknownFormatError",
    "iter_events",
    "known_formats",
    "reader_named",
]

ENTRY_POINT_GROUP = "distillguard.readers"


@runtime_checkable
class Reader(Protocol):
    """One log format. `read` receives every source path of a run at once, because some formats
    (OpenAI Batch) join several files."""

    name: str
    description: str

    def read(self, paths: Sequence[Path], options: ReaderOptions) -> Iterator[CallEvent | Reject]: ...


# name -> "module:attribute"; imported only when asked for, so naming one format loads one reader.
BUILTIN_READERS: dict[str, str] = {
    "canonical": "distillguard.events.readers.canonical:CanonicalReader",
    "openai-batch": "distillguard.events.readers.openai_batch:OpenAIBatchReader",
    "litellm": "distillguard.events.readers.litellm:LiteLLMReader",
    "otel-genai": "distillguard.events.readers.otel_genai:OtelGenAIReader",
}


class UnknownFormatError(ValueError):
    """Raised for a format name no reader is registered under."""


def _registered() -> dict[str, str]:
    found = dict(BUILTIN_READERS)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


def known_formats() -> list[str]:
    """Every format name a reader is registered under (built-in and entry points)."""
    return sorted(_registered())


def reader_named(name: str) -> Reader:
    """The reader registered under `name`; `UnknownFormatError` lists the known names otherwise."""
    target = _registered().get(name)
    if target is None:
        raise UnknownFormatError(f"unknown log format {name!r}; known formats: {', '.join(known_formats())}")
    module_name, _, attr = target.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    reader = factory() if isinstance(factory, type) else factory
    if not isinstance(reader, Reader):
        raise TypeError(f"reader {name!r} ({target}) does not implement the Reader protocol")
    return reader


def iter_events(
    paths: Iterable[str | Path], fmt: str = "canonical", options: ReaderOptions | None = None
) -> Iterator[CallEvent | Reject]:
    """Stream the calls (and rejected lines) of log files in format `fmt`, credentials removed.

    This is what `scan` uses to read event files directly, without building a store first.
    """
    sources = [Path(p) for p in paths]
    for source in sources:
        if not source.is_file():
            raise FileNotFoundError(f"no such log file: {source}")
    return reader_named(fmt).read(sources, options or ReaderOptions())
