"""`distillguard bench audit` prints precision and recall per classifier, language and split, and
the classifiers hold a floor on the TEST split (a regression guard, not a target)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from distillguard.audit.bench import predict, score
from distillguard.audit.labelled import load_labelled
from distillguard.cli import main


def test_bench_audit_prints_and_writes_the_numbers(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "audit", "--json", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "written and labelled by the project" in result.output
    assert "TEST split" in result.output and "TRAIN split" in result.output
    for row in (
        "refusal      refused",
        "hedging      hedged",
        "sentiment    positive",
        "sentiment    negative",
    ):
        assert row in result.output
    data = json.loads(out.read_text())
    assert data["answers"] >= 300 and data["rows"]


def test_test_split_floors() -> None:
    rows = score(predict(load_labelled())[0])
    test = {(r["classifier"], r["class"], r["lang"]): r for r in rows if r["split"] == "test"}
    for lang in ("en", "zh"):
        refused = test[("refusal", "refused", lang)]
        assert refused["precision"] >= 0.9 and refused["recall"] >= 0.6, refused
        negative = test[("sentiment", "negative", lang)]
        assert negative["precision"] >= 0.7 and negative["recall"] >= 0.65, negative
    hedged = test[("hedging", "hedged", "all")]
    assert hedged["precision"] >= 0.6 and hedged["recall"] >= 0.7, hedged
