"""The pieces of `bench scan --engine spark` that decide what its table says."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from distillguard.engines.spark.bench import EngineRun, ProcessSampler, same_verdicts, spark_table


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_same_verdicts_wants_same_accounts_verdicts_clusters_and_risk(tmp_path: Path) -> None:
    base = [
        {"account_id": "a", "verdict": "distiller", "cluster_id": "actor-1", "risk": 0.91},
        {"account_id": "b", "verdict": "benign", "cluster_id": None, "risk": 0.02},
    ]
    reference = _write(tmp_path / "ref.jsonl", base)
    assert same_verdicts(reference, _write(tmp_path / "same.jsonl", list(reversed(base))))
    close = [dict(base[0], risk=0.91 + 5e-7), base[1]]
    assert same_verdicts(reference, _write(tmp_path / "close.jsonl", close))
    for name, changed in {
        "risk": [dict(base[0], risk=0.9101), base[1]],
        "verdict": [dict(base[0], verdict="suspicious"), base[1]],
        "cluster": [dict(base[0], cluster_id="actor-2"), base[1]],
        "missing": [base[0]],
    }.items():
        assert not same_verdicts(reference, _write(tmp_path / f"{name}.jsonl", changed)), name


def test_table_compares_each_engine_with_the_reference() -> None:
    runs = [
        EngineRun("embedded", 2, 1000, 10.0, 19.0, 2 * 1024**3, None),
        EngineRun("Spark local[2]", 2, 1000, 20.0, 38.0, 3 * 1024**3, True),
        EngineRun("Spark standalone, 1 worker", 1, 1000, 40.0, 41.0, 3 * 1024**3, False),
    ]
    lines = spark_table(runs).splitlines()
    assert "| embedded | 2 | 1,000 | 10.0 | 19.0 | 100 | 50 | 1.00× | 2.00 GiB | reference |" in lines
    assert "| Spark local[2] | 2 | 1,000 | 20.0 | 38.0 | 50 | 25 | 2.00× | 3.00 GiB | equal |" in lines
    assert lines[-1].endswith("| 25 | 25 | 4.00× | 3.00 GiB | DIFFER |")


def test_sampler_counts_the_cpu_of_a_process_tree() -> None:

    process = subprocess.Popen([sys.executable, "-c", _spinner()])
    sampler = ProcessSampler([process.pid], every_s=0.1)
    sampler.sample(baseline=True)
    while process.poll() is None:
        sampler.sample()
        time.sleep(0.1)
    # the grandchild spent 1 s of CPU (the last 0.1 s may fall after the last sample); the rest waited
    assert 0.85 < sampler.cpu_s < 3.0
    assert sampler.peak > 5 * 1024**2


def _spinner() -> str:
    return (
        "import subprocess, sys\n"
        "spin = 'import time\\nwhile time.process_time() < 1.0: pass'\n"
        "subprocess.run([sys.executable, '-c', spin], check=True)\n"
    )
