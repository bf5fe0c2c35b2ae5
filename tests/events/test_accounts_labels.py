"""accounts.jsonl and labels.jsonl: read whole, every bad line named with file and line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from distillguard.events.accounts import RecordFileError, read_accounts, read_labels


def test_reads_accounts(tmp_path: Path) -> None:
    path = tmp_path / "accounts.jsonl"
    path.write_text(
        '{"account_id":"a1","created_at":"2026-01-02T03:04:05Z","payment_fingerprint":"pf-1","email_domain":"x.org",'
        '"signup_ip":"192.0.2.1","tier":"free","sanctioned_distillation":false}\n'
        '{"account_id":"a2","created_at":null,"tier":"enterprise","sanctioned_distillation":true,"extra":1}\n'
    )
    accounts = read_accounts(path)
    assert accounts["a1"].created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert accounts["a2"].sanctioned_distillation is True and accounts["a2"].payment_fingerprint is None


def test_reads_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(
        '{"account_id":"a1","label":"distiller","actor":"act-1","tactic":"router_mixed","attack_share":0.25}\n'
        '{"account_id":"a2","label":"benign","actor":null,"tactic":"casual"}\n'
    )
    labels = read_labels(path)
    assert (labels["a1"].attack_share, labels["a2"].actor) == (0.25, None)


@pytest.mark.parametrize(
    ("reader", "bad_line", "reason_contains"),
    [
        (read_accounts, '{"account_id": 5}', "$.account_id"),
        (read_accounts, '{"account_id": "a9", "created_at": "2026-01-02T03:04:05"}', "created_at"),
        (read_accounts, '{"account_id": "a1"}', "repeats line 1"),
        (read_accounts, "", "empty line"),
        (read_labels, '{"account_id":"a9","label":"evil","actor":null,"tactic":"x"}', "$.label"),
        (read_labels, '{"account_id":"a9","label":"benign","actor":null}', "tactic"),
        (
            read_labels,
            '{"account_id":"a9","label":"benign","actor":null,"tactic":"x","attack_share":2}',
            "attack_share",
        ),
        (read_labels, '{"account_id":"a9", "label": ', "invalid JSON"),
    ],
)
def test_bad_lines_are_listed_with_file_and_line(
    tmp_path: Path, reader: Callable[[Path], dict[str, Any]], bad_line: str, reason_contains: str
) -> None:
    first = (
        '{"account_id":"a1","label":"benign","actor":null,"tactic":"casual"}'
        if reader is read_labels
        else '{"account_id":"a1"}'
    )
    path = tmp_path / "records.jsonl"
    path.write_text(first + "\n" + bad_line + "\n")
    with pytest.raises(RecordFileError) as caught:
        reader(path)
    assert [line for line, _ in caught.value.problems] == [2]
    assert reason_contains in caught.value.problems[0][1]
    assert f"{path}:2:" in str(caught.value)
