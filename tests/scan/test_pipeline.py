"""The scan's worker processes: a failure or a crash in one is an error naming it, never a hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from distillguard.scan import pipeline


def _job(store: Path, handover: Path) -> pipeline.ReplayJob:
    return pipeline.ReplayJob(str(store), 0, 1, False, False, 1, str(handover))


def test_a_worker_that_raises_is_reported_with_its_traceback(tmp_path: Path) -> None:
    job = _job(tmp_path / "no-such-store", tmp_path / "worker-0")
    with pytest.raises(RuntimeError, match=r"distillguard-replay-0 failed:(.|\n)*Traceback"):
        pipeline._run_workers([job])


def test_a_worker_that_dies_is_reported_with_its_exit_code(tmp_path: Path, monkeypatch) -> None:
    # the workers are forked: they run the patched function
    monkeypatch.setattr(pipeline, "_replay_partition", lambda job: os._exit(9))
    with pytest.raises(RuntimeError, match=r"ended without a result \(exit code 9"):
        pipeline._run_workers([_job(tmp_path, tmp_path / "worker-0")])


def test_replays_are_read_back_in_the_order_written(tmp_path: Path) -> None:
    import pickle

    from distillguard.scan.replay import AccountReplay

    path = tmp_path / "worker-0"
    with path.open("wb") as out:
        for name in ("b", "a", "c"):
            replay = AccountReplay(name)
            replay.window = replay.window.packed()
            pickle.dump(replay, out)
    read = list(pipeline._read_replays(path))
    assert [r.account_id for r in read] == ["b", "a", "c"]
    assert all(r.window.n == 0 for r in read)


def test_what_runs_while_the_workers_replay_stops_them_when_it_fails(tmp_path: Path, monkeypatch) -> None:
    import multiprocessing
    import time

    # workers that would run for a minute: the parent's failure must not wait for them
    monkeypatch.setattr(pipeline, "_replay_partition", lambda job: time.sleep(60))
    jobs = [_job(tmp_path, tmp_path / f"worker-{w}") for w in range(2)]

    def failing() -> None:
        raise ValueError("the scorer could not be loaded")

    started = time.monotonic()
    with pytest.raises(ValueError, match="scorer could not be loaded"):
        pipeline._run_workers(jobs, failing)
    assert time.monotonic() - started < 30
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("distillguard-replay")]


def test_what_runs_while_the_workers_replay_runs_once_after_they_started(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "_replay_partition", lambda job: ({}, {}))
    calls = []
    parts = pipeline._run_workers([_job(tmp_path, tmp_path / "worker-0")], lambda: calls.append(1))
    assert calls == [1]
    assert parts == [({}, {})]
