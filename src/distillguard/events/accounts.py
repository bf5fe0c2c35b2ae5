"""Reading `accounts.jsonl` and `labels.jsonl` (shared/spec/events.md §2, §3): whole files that are
small next to the call log, validated line by line with errors that name the file and line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from distillguard.events.model import Account, Label, account_decoder, label_decoder
from distillguard.events.readers.base import (
    DEFAULT_MAX_LINE_BYTES,
    OverlongLine,
    blank_reason,
    decode_error_reason,
    overlong_reason,
    read_lines,
)

LABELS = ("distiller", "benign")
_MAX_LISTED = 20

Record = TypeVar("Record", Account, Label)


class RecordFileError(ValueError):
    """An accounts or labels file with bad lines; `problems` holds (line, reason) for each."""

    def __init__(self, path: Path, problems: list[tuple[int, str]]) -> None:
        self.path = path
        self.problems = problems
        listed = "\n".join(f"  {path}:{line}: {reason}" for line, reason in problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        super().__init__(f"{path}: {len(problems)} bad line(s)\n{listed}{more}")


def _read(
    path: Path, decode: Callable[[bytes], Record], check: Callable[[Record], str | None]
) -> dict[str, Record]:
    records: dict[str, Record] = {}
    first_line: dict[str, int] = {}
    problems: list[tuple[int, str]] = []
    for number, line in read_lines(Path(path)):
        if isinstance(line, OverlongLine):
            problems.append((number, overlong_reason(line, DEFAULT_MAX_LINE_BYTES)))
            continue
        blank = blank_reason(line)
        if blank:
            problems.append((number, blank))
            continue
        try:
            record = decode(line)
        except (ValueError, UnicodeDecodeError) as error:
            problems.append((number, decode_error_reason(error)))
            continue
        problem = check(record)
        if problem:
            problems.append((number, problem))
        elif record.account_id in records:
            problems.append((number, f"account_id repeats line {first_line[record.account_id]}"))
        else:
            records[record.account_id] = record
            first_line[record.account_id] = number
    if problems:
        raise RecordFileError(Path(path), problems)
    return records


def _check_account(account: Account) -> str | None:
    if not account.account_id:
        return "invalid field: account_id is empty - at `$.account_id`"
    if account.created_at is not None and account.created_at.tzinfo is None:
        return "invalid field: created_at has no time zone - at `$.created_at`"
    return None


def _check_label(label: Label) -> str | None:
    if not label.account_id:
        return "invalid field: account_id is empty - at `$.account_id`"
    if label.label not in LABELS:
        return f"invalid field: label must be one of {', '.join(LABELS)} - at `$.label`"
    if label.attack_share is not None and not 0.0 <= label.attack_share <= 1.0:
        return "invalid field: attack_share must be in [0, 1] - at `$.attack_share`"
    return None


def read_accounts(path: str | Path) -> dict[str, Account]:
    """account_id -> Account; RecordFileError lists every bad or repeated line."""
    return _read(Path(path), account_decoder.decode, _check_account)


def read_labels(path: str | Path) -> dict[str, Label]:
    """account_id -> Label; RecordFileError lists every bad or repeated line."""
    return _read(Path(path), label_decoder.decode, _check_label)
