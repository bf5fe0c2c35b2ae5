"""Labels and verdicts readers: errors name the file and the line."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from distillguard.bench.records import BenchInputError, read_labels, read_verdicts

LABEL = '{"account_id":"a1","label":"distiller","actor":"x","tactic":"router_mixed","attack_share":0.25}'
VERDICT = (
    '{"account_id":"a1","risk":0.9,"verdict":"distiller","cluster_id":"c1",'
    '"first_flagged_at":"2026-02-12T10:22:33.123Z","calls_to_flag":7,"reasons":[]}'
)


def test_reads_labels_and_verdicts_plain_and_gzip(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl.gz"
    with gzip.open(labels, "wt", encoding="utf-8") as handle:
        handle.write(LABEL + "\n")
    verdicts = tmp_path / "accounts_out.jsonl"
    verdicts.write_text(VERDICT + "\n", encoding="utf-8")
    assert read_labels(labels)["a1"].attack_share == 0.25
    assert read_verdicts(verdicts)["a1"].calls_to_flag == 7


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        ("{broken", "invalid JSON"),
        ("", "empty line"),
        ('{"account_id":"a2","label":"maybe","actor":null,"tactic":"casual"}', "label must be one of"),
        ('{"account_id":"a2","label":"benign","actor":null}', "tactic"),
        (
            '{"account_id":"a2","label":"distiller","actor":"x","tactic":"t","attack_share":1.5}',
            "attack_share",
        ),
        (LABEL, "labelled twice"),
    ],
)
def test_bad_label_lines_name_file_and_line(tmp_path: Path, second_line: str, message: str) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(LABEL + "\n" + second_line + "\n", encoding="utf-8")
    with pytest.raises(BenchInputError, match=rf"labels\.jsonl:2: .*{message}"):
        read_labels(path)


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        (VERDICT.replace('"distiller"', '"guilty"').replace("a1", "a2"), "verdict must be one of"),
        (VERDICT.replace("0.9", "1.4").replace("a1", "a2"), "risk must be in"),
        (VERDICT.replace(":7", ":0").replace("a1", "a2"), "calls_to_flag"),
        (VERDICT.replace(',"reasons":[]', "").replace("a1", "a2"), "reasons"),
        (VERDICT, "two verdicts"),
    ],
)
def test_bad_verdict_lines_name_file_and_line(tmp_path: Path, second_line: str, message: str) -> None:
    path = tmp_path / "accounts_out.jsonl"
    path.write_text(VERDICT + "\n" + second_line + "\n", encoding="utf-8")
    with pytest.raises(BenchInputError, match=rf"accounts_out\.jsonl:2: .*{message}"):
        read_verdicts(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(BenchInputError, match=r"nope\.jsonl: no such file"):
        read_labels(tmp_path / "nope.jsonl")
