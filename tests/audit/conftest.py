"""Helpers for the audit tests: write a suite file, run `distillguard audit ...` in-process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from distillguard.cli import main

# fast transport settings so a test run of the failure cases takes seconds
FAST = ["--backoff", "0.05", "--retries", "2", "--timeout", "5", "--read-timeout", "1", "--no-progress"]


def write_suite(
    path: Path, prompts: Sequence[dict[str, Any]] = (), pairs: Sequence[dict[str, Any]] = ()
) -> Path:
    document: dict[str, Any] = {"name": path.stem, "licence": "test", "prompts": list(prompts)}
    if pairs:
        document["pairs"] = list(pairs)
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def prompt(pid: str, en: str, zh: str | None = None, topic: str = "test", **extra: Any) -> dict[str, Any]:
    text = {"en": en} if zh is None else {"en": en, "zh": zh}
    return {"id": pid, "topic": topic, "text": text, **extra}


@pytest.fixture
def audit_cli() -> Callable[..., Result]:
    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, ["audit", *args], env=env, catch_exceptions=False)

    return run
