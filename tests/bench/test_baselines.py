"""Reference baselines on tiny call lists whose answers are known."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from distillguard.bench.baselines import (
    CallLog,
    PradaBaseline,
    RateLimitBaseline,
    read_event_calls,
    read_store_calls,
    run_baselines,
)
from distillguard.bench.records import BenchInputError
from distillguard.events.model import Label
from tests.bench.bench_events import DAY0, spaced, write_events


def log(calls: list[tuple[str, datetime, str]]) -> CallLog:
    return CallLog(
        [a for a, _t, _p in calls],
        np.asarray([t.timestamp() for _a, t, _p in calls]),
        [p for _a, _t, p in calls],
    )


def benign(account: str) -> Label:
    return Label(account_id=account, label="benign", actor=None, tactic="casual")


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ([0, 0, 0], [1, 2, 3]),
        ([0, 1, 1, 2], [1, 1, 2, 1]),
        ([5], [1]),
    ],
)
def test_running_day_counts(days: list[int], expected: list[int]) -> None:
    assert RateLimitBaseline._running_day_counts(np.asarray(days)).tolist() == expected


def test_rate_limit_flags_the_call_that_crosses_the_threshold_in_one_utc_day() -> None:
    # "heavy": 2 calls on day 0, then 4 on day 1 -> its 4th call of day 1 (6th overall) crosses 3
    heavy = spaced("heavy", 2, "q{i}") + spaced("heavy", 4, "q{i}", start=DAY0 + timedelta(days=1))
    light = spaced("light", 3, "q{i}") + spaced("light", 3, "q{i}", start=DAY0 + timedelta(days=1))
    # 4 calls within one hour but across midnight UTC: 2 per UTC day
    midnight = spaced("midnight", 4, "q{i}", start=DAY0 + timedelta(hours=23, minutes=58), step_s=60)
    # shuffled: the baseline must sort each account's calls by time itself
    calls = log(list(reversed(heavy + light + midnight)))
    verdicts = RateLimitBaseline(threshold=3).verdicts(calls)
    assert verdicts["heavy"].verdict == "distiller"
    assert verdicts["heavy"].calls_to_flag == 6
    assert verdicts["heavy"].first_flagged_at == DAY0 + timedelta(days=1, minutes=3)
    assert verdicts["light"].verdict == "benign" and verdicts["light"].calls_to_flag is None
    assert verdicts["midnight"].verdict == "benign"
    assert all(0.0 <= v.risk <= 1.0 and v.reasons for v in verdicts.values())


@pytest.mark.parametrize(("target_fpr", "expected"), [(0.25, 5), (0.0, 10), (0.5, 3), (1.0, 0)])
def test_rate_limit_calibration_meets_the_target_fpr(target_fpr: float, expected: int) -> None:
    peaks = {"a": 10, "b": 5, "c": 3, "d": 2}
    calls = log([c for account, n in peaks.items() for c in spaced(account, n, "q{i}")])
    baseline = RateLimitBaseline()
    assert baseline.calibrate(calls, {a: benign(a) for a in peaks}, target_fpr) == expected
    flagged = sum(v.verdict == "distiller" for v in baseline.verdicts(calls).values())
    assert flagged <= target_fpr * len(peaks)


def constant_rows(values: list[float]) -> np.ndarray:
    """A distance matrix where query q is at distance values[q] from every earlier query, so the
    minimum distance PRADA records for q is values[q] whatever its growing set holds."""
    matrix = np.zeros((len(values), len(values)))
    for q, value in enumerate(values):
        matrix[q, :q] = value
        matrix[:q, q] = value
    return matrix


def test_prada_replay_does_not_flag_normally_distributed_distances() -> None:
    values = [0.0, *np.random.default_rng(7).normal(1.0, 0.1, 120).tolist()]
    tests = PradaBaseline()._replay(constant_rows(values))
    assert tests and min(w for _seen, w in tests) > 0.95
    assert tests[0][0] == 51  # the first test runs once 50 distances exist, i.e. at the 51st call
    assert [seen for seen, _w in tests[:3]] == [51, 56, 61]


def test_prada_replay_flags_templated_near_copies_under_the_default_delta() -> None:
    # a harvest of one template: nine near-copies, then a new item, over and over
    values = [0.0, *([0.02] * 9 + [1.0]) * 12]
    tests = PradaBaseline()._replay(constant_rows(values))
    assert max(w for _seen, w in tests) < PradaBaseline().delta


def test_prada_on_text_flags_exact_repeats_and_leaves_short_accounts_untested(tmp_path: Path) -> None:
    calls = spaced("repeater", 80, "Classify this support ticket.") + spaced("short", 30, "question {i}")
    path = write_events(tmp_path / "events.jsonl", calls)
    verdicts = PradaBaseline().verdicts(read_event_calls(path))
    assert verdicts["repeater"].verdict == "distiller"
    assert verdicts["repeater"].calls_to_flag == 51
    assert verdicts["short"].verdict == "benign"
    assert "not tested" in verdicts["short"].reasons[0].detail


def test_prada_replays_only_the_first_max_calls(tmp_path: Path) -> None:
    calls = spaced("late", 100, "distinct question number {i} about topic " + "x" * 3)
    verdicts = PradaBaseline(max_calls=40).verdicts(log(calls))
    assert verdicts["late"].verdict == "benign"
    assert "40 calls replayed" in verdicts["late"].reasons[0].detail


def test_prada_calibration_sets_delta_to_meet_the_target_fpr() -> None:
    calls = log(
        spaced("repeater", 60, "same") + spaced("varied", 60, "{i} " * 1 + "a question about item {i}")
    )
    labels = {"repeater": benign("repeater"), "varied": benign("varied")}
    baseline = PradaBaseline()
    delta = baseline.calibrate(calls, labels, 0.0)
    assert delta == 0.0  # the repeater's W is 0: nothing below 0 is flagged
    assert all(v.verdict == "benign" for v in baseline.verdicts(calls).values())


def test_run_baselines_reports_its_setup() -> None:
    calls = log(spaced("a", 3, "q{i}"))
    outputs, setup = run_baselines(calls)
    assert set(outputs) == {"rate-limit", "PRADA-like"}
    assert setup["rate-limit"] == {"threshold": 2000, "calibrated_to_fpr": None}
    assert setup["PRADA-like"]["delta"] == 0.40


def test_event_reader_counts_rejected_lines(tmp_path: Path) -> None:
    path = write_events(tmp_path / "events.jsonl", spaced("a", 2, "q{i}"))
    path.write_text(path.read_text() + "{not json\n", encoding="utf-8")
    calls = read_event_calls(path)
    assert len(calls) == 2
    assert calls.rejected_lines == 1 and ":3:" in calls.reject_examples[0]


def test_store_calls_match_event_calls(tmp_path: Path) -> None:
    from distillguard.events.readers import iter_events
    from distillguard.events.store import CallStore

    calls = spaced("a", 3, "question {i}") + spaced("b", 2, "other {i}", start=DAY0 + timedelta(days=1))
    path = write_events(tmp_path / "events.jsonl", calls)
    CallStore.ingest(tmp_path / "store", iter_events([path]), sources=[str(path)])
    from_store = read_store_calls(tmp_path / "store")
    from_events = read_event_calls(path)

    def rows(log: CallLog) -> list[tuple[str, float, str]]:
        return sorted(zip(log.accounts, log.ts.tolist(), log.texts, strict=True))

    assert rows(from_store) == rows(from_events)
    assert len(from_store) == 5


def test_calibration_without_benign_accounts_is_an_input_error() -> None:
    calls = log(spaced("a", 3, "q{i}"))
    distiller = {"a": Label(account_id="a", label="distiller", actor="x", tactic="cot_extraction")}
    with pytest.raises(BenchInputError, match="no call of an account labelled benign"):
        RateLimitBaseline().calibrate(calls, distiller, 0.001)
    with pytest.raises(BenchInputError, match="no call of an account labelled benign"):
        PradaBaseline().calibrate(calls, distiller, 0.001)
