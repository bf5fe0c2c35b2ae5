"""`distillguard bench review` runs end to end and prints both transports (its numbers are not
asserted: a benchmark measures, it does not pass or fail on speed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from distillguard.cli import main

pytestmark = pytest.mark.slow


def test_bench_review_prints_both_transports(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["bench", "review", "--runs", "1", "--out", str(tmp_path / "review")])
    assert result.exit_code == 0, result.output
    rows = [
        line
        for line in result.output.splitlines()
        if line.startswith("| bans-file") or line.startswith("| redis")
    ]
    assert len(rows) == 2 and all(line.count(" ms") == 4 for line in rows)
