"""`distillguard bench detect` end to end in a subprocess, on hand-made files."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from tests.bench.bench_events import DAY0, spaced, write_events

RUN = [sys.executable, "-c", "from distillguard.cli import main; main()", "bench", "detect"]


def jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def verdict(account: str, kind: str, calls: int | None, cluster: str | None = None) -> dict[str, object]:
    return {
        "account_id": account,
        "risk": 0.9 if kind == "distiller" else 0.1,
        "verdict": kind,
        "cluster_id": cluster,
        "first_flagged_at": None,
        "calls_to_flag": calls,
        "reasons": [{"signal": "hand", "score": 0.9, "detail": "made by hand"}],
    }


def scenario(tmp: Path) -> list[str]:
    # a hydra actor of two low-rate accounts sending one template, a heavy legitimate batch
    # customer and a casual user: the rate limit catches only the batch customer (a false
    # positive) and misses the hydra; the system under test gets everything right.
    calls = (
        spaced("hydra-1", 60, "Rewrite the instruction to make it harder: task {i}", step_s=3600)
        + spaced("hydra-2", 60, "Rewrite the instruction to make it harder: task {i}", step_s=3600)
        + spaced("batch", 30, "Classify this support ticket: ticket {i}", step_s=10)
        + spaced("casual", 5, "how do I bake bread? attempt {i}", start=DAY0 + timedelta(hours=3))
    )
    events = write_events(tmp / "events.jsonl", calls)
    labels = jsonl(
        tmp / "labels.jsonl",
        [
            {"account_id": "hydra-1", "label": "distiller", "actor": "H", "tactic": "synthetic_generation"},
            {"account_id": "hydra-2", "label": "distiller", "actor": "H", "tactic": "synthetic_generation"},
            {"account_id": "batch", "label": "benign", "actor": None, "tactic": "batch_classification"},
            {"account_id": "casual", "label": "benign", "actor": None, "tactic": "casual"},
        ],
    )
    verdicts = jsonl(
        tmp / "accounts_out.jsonl",
        [
            verdict("hydra-1", "distiller", 12, "c1"),
            verdict("hydra-2", "distiller", 20, "c1"),
            verdict("batch", "benign", None),
            verdict("ghost", "benign", None),
        ],
    )
    return ["--labels", str(labels), "--verdicts", str(verdicts), "--events", str(events)]


def test_detect_prints_the_side_by_side_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = [*scenario(tmp_path), "--json", str(out), "--baseline-verdicts", str(tmp_path / "baselines")]
    # a threshold of 25 a day comes from calibrating on a separate scenario below
    calib = tmp_path / "calib"
    calib.mkdir()
    cal_events = write_events(calib / "events.jsonl", spaced("b1", 25, "q {i}") + spaced("b2", 4, "r {i}"))
    cal_labels = jsonl(
        calib / "labels.jsonl",
        [
            {"account_id": "b1", "label": "benign", "actor": None, "tactic": "casual"},
            {"account_id": "b2", "label": "benign", "actor": None, "tactic": "casual"},
        ],
    )
    args += [
        "--calibration-events",
        str(cal_events),
        "--calibration-labels",
        str(cal_labels),
        "--target-fpr",
        "0",
    ]
    done = subprocess.run([*RUN, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0]
    assert header.index("DistillGuard") < header.index("rate-limit") < header.index("PRADA-like")
    assert "1 without a verdict" in done.stdout and "1 verdicts for accounts not in the labels" in done.stdout
    assert "threshold 25 calls/UTC day" in done.stdout

    result = json.loads(out.read_text())
    system = result["system"]["readings"]["distiller"]
    assert system["recall"]["value"] == 1.0 and system["false_positive_rate"]["value"] == 0.0
    rate_limit = result["baselines"]["rate-limit"]["readings"]["distiller"]
    assert rate_limit["recall"]["value"] == 0.0  # one call an hour: 24 a day at most
    assert rate_limit["fpr_by_population"]["batch_classification"] == {"value": 1.0, "hits": 1, "total": 1}
    assert result["baseline_setup"]["rate-limit"]["threshold"] == 25
    rows = {row["metric"]: row for row in result["table"]}
    assert rows["FPR, all benign"]["meets_target"] is True
    assert rows["FPR, all benign"]["beats_baselines"] is True
    assert rows["calls to flag, median (campaigns)"]["system"] == 16.0
    assert (tmp_path / "baselines" / "rate-limit.accounts_out.jsonl").is_file()
    assert (tmp_path / "baselines" / "prada-like.accounts_out.jsonl").is_file()


def test_detect_without_events_runs_the_metrics_alone(tmp_path: Path) -> None:
    args = scenario(tmp_path)[:4]
    done = subprocess.run([*RUN, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "baselines were not run" in done.stderr
    assert "rate-limit" not in done.stdout


def test_detect_names_file_and_line_of_a_bad_verdict(tmp_path: Path) -> None:
    args = scenario(tmp_path)
    bad = tmp_path / "accounts_out.jsonl"
    bad.write_text(bad.read_text() + '{"account_id": "x"}\n', encoding="utf-8")
    done = subprocess.run([*RUN, *args], capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "accounts_out.jsonl:5:" in done.stderr


def test_bench_group_lists_its_benchmarks() -> None:
    from click.testing import CliRunner

    from distillguard.bench.cli import BENCHMARKS, bench

    result = CliRunner().invoke(bench, ["--help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in BENCHMARKS)
    assert CliRunner().invoke(bench, ["nope"]).exit_code != 0
