"""The scan benchmark's table and its verdicts against the issue's targets."""

from __future__ import annotations

import pytest

from distillguard.scan.bench import Measurement, table, verdict_lines

GiB = 1024**3


def test_table_has_one_row_per_stage_with_calls_per_second() -> None:
    rows = [
        Measurement("scan", 1_000_000, 20.0, 38.0, 2 * GiB),
        Measurement("floor", 1_000_000, 0.5, 1.0, GiB),
    ]
    text = table(rows).splitlines()
    assert len(text) == 4
    assert text[2] == "| scan | 1,000,000 | 20.00 | 38.00 | 50,000 | 2,048 MiB |"
    assert text[3].endswith("| 2,000,000 | 1,024 MiB |")


@pytest.mark.parametrize(
    ("scan_wall", "peak", "expected"),
    [
        (100.0, 1 * GiB, ["met", "met", "met"]),  # 100k calls/s, 5x the floor, 1 GiB
        (101.0, 1 * GiB, ["met", "MISSED", "met"]),  # just over 5x the floor
        (250.0, 5 * GiB, ["MISSED", "MISSED", "MISSED"]),  # 40k calls/s, 12.5x, 5 GiB
    ],
)
def test_verdicts_compare_against_the_targets(scan_wall: float, peak: int, expected: list[str]) -> None:
    scan = Measurement("scan", 10_000_000, scan_wall, scan_wall, peak)
    floor = Measurement("floor", 10_000_000, 20.0, 20.0, GiB)
    lines = verdict_lines(scan, floor)
    assert [line.rsplit(": ", 1)[1] for line in lines] == expected


def test_peak_memory_below_ten_million_calls_is_not_called_met() -> None:
    scan = Measurement("scan", 1_000_000, 300.0, 300.0, 2 * GiB)
    floor = Measurement("floor", 1_000_000, 0.3, 0.3, GiB)
    assert verdict_lines(scan, floor)[2].endswith("not decided below 10M calls (run --preset large)")
    over = Measurement("scan", 1_000_000, 300.0, 300.0, 5 * GiB)  # already over at 1M: missed
    assert verdict_lines(over, floor)[2].endswith("MISSED")


def test_the_large_preset_decides_peak_memory_although_it_draws_fewer_than_ten_million() -> None:
    floor = Measurement("floor", 9_099_818, 1.0, 2.0, GiB)
    under = Measurement("scan", 9_099_818, 400.0, 700.0, int(3.6 * GiB))
    assert verdict_lines(under, floor, large_preset=True)[2].endswith("met")
    over = Measurement("scan", 9_099_818, 400.0, 700.0, int(4.2 * GiB))
    assert verdict_lines(over, floor, large_preset=True)[2].endswith("MISSED")
    assert "not decided" in verdict_lines(under, floor)[2]
