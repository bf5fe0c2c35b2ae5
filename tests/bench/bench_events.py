"""Tiny hand-made event files for the bench tests (imported by them; pytest puts this folder on sys.path)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

DAY0 = datetime(2026, 2, 12, tzinfo=UTC)


def event_line(number: int, account: str, ts: datetime, prompt: str) -> str:
    return json.dumps(
        {
            "event_id": f"e-{number}",
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "account_id": account,
            "client": {"ip": "203.0.113.9"},
            "endpoint": "/v1/chat/completions",
            "request": {"model": "m", "messages": [{"role": "user", "content": prompt}]},
            "response": None,
            "status": 200,
        }
    )


def write_events(path: Path, calls: list[tuple[str, datetime, str]]) -> Path:
    path.write_text(
        "".join(event_line(i, a, t, p) + "\n" for i, (a, t, p) in enumerate(calls)), encoding="utf-8"
    )
    return path


def spaced(
    account: str, count: int, prompt: str, start: datetime = DAY0, step_s: float = 60.0
) -> list[tuple[str, datetime, str]]:
    return [(account, start + timedelta(seconds=i * step_s), prompt.format(i=i)) for i in range(count)]
