"""The call log's files: prompts and answers are readable by the operator and its group only."""

from __future__ import annotations

import asyncio
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from distillguard.enforcement.engine import Decision
from distillguard.events.model import Client
from distillguard.gateway.calllog import CallLog, LoggedCall


def call(i: int) -> LoggedCall:
    return LoggedCall(
        event_id=f"e{i}",
        ts=datetime.now(UTC),
        account_id="acct-1",
        client=Client(ip="203.0.113.9"),
        endpoint="/v1/chat/completions",
        request={"model": "m", "messages": [{"role": "user", "content": "a private prompt"}]},
        response={"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]},
        status=200,
        decision=Decision(),
    )


@pytest.mark.parametrize("umask", [0o022, 0o000])  # a permissive umask must not widen anything
def test_log_files_and_directories_are_private(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        root = tmp_path / "log"
        log = CallLog(root)
        log.open()
        log.append(call(1))
        segment = log.segment
        assert segment is not None
        modes = {"root": root.stat().st_mode, "segment": segment.stat().st_mode}
        asyncio.run(log.close())  # a clean shutdown rolls the segment into the store and archive
        for path in [root / "store", root / "archive", *root.glob("store/*"), *root.glob("archive/*")]:
            modes[path.name] = path.stat().st_mode
    finally:
        os.umask(old)
    assert any(name.endswith(".parquet") for name in modes) and any(name.endswith(".gz") for name in modes)
    for name, mode in modes.items():
        assert mode & 0o007 == 0, f"{name} is open to other users: {stat.filemode(mode)}"
        assert mode & 0o020 == 0, f"{name} is group-writable: {stat.filemode(mode)}"
