"""Reading the benchmark's inputs: ground-truth labels and scan verdicts, with errors that name the
file and line, because a benchmark that silently drops a line reports the wrong numbers."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import msgspec

from distillguard.events.model import VERDICTS, AccountVerdict, Label, label_decoder, verdict_decoder
from distillguard.events.readers.base import decode_error_reason, open_lines

LABEL_VALUES = ("distiller", "benign")
Row = TypeVar("Row")


class BenchInputError(ValueError):
    """A labels or verdicts file the benchmark cannot use; the message names file and line."""


def _decode_lines(path: Path, decoder: msgspec.json.Decoder[Row]) -> list[tuple[int, Row]]:
    if not path.is_file():
        raise BenchInputError(f"{path}: no such file")
    rows: list[tuple[int, Row]] = []
    for number, line in open_lines(path):
        if not line.strip():
            raise BenchInputError(f"{path}:{number}: empty line")
        try:
            rows.append((number, decoder.decode(line)))
        except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as error:
            raise BenchInputError(f"{path}:{number}: {decode_error_reason(error)}") from error
    return rows


def read_labels(path: str | Path) -> dict[str, Label]:
    """Ground truth by account id. Rejects unknown label values, negative or >1 attack shares and
    an account labelled twice."""
    path = Path(path)
    labels: dict[str, Label] = {}
    for number, row in _decode_lines(path, label_decoder):
        where = f"{path}:{number}"
        if row.label not in LABEL_VALUES:
            raise BenchInputError(f"{where}: label must be one of {LABEL_VALUES}, got {row.label!r}")
        if row.attack_share is not None and not 0.0 <= row.attack_share <= 1.0:
            raise BenchInputError(f"{where}: attack_share must be in [0, 1], got {row.attack_share}")
        if row.account_id in labels:
            raise BenchInputError(f"{where}: account {row.account_id!r} is labelled twice")
        labels[row.account_id] = row
    return labels


def read_verdicts(path: str | Path) -> dict[str, AccountVerdict]:
    """Scan verdicts by account id (the spec's accounts_out.jsonl). Rejects unknown verdicts, a risk
    outside [0, 1], a negative calls_to_flag and an account given twice."""
    path = Path(path)
    verdicts: dict[str, AccountVerdict] = {}
    for number, row in _decode_lines(path, verdict_decoder):
        where = f"{path}:{number}"
        if row.verdict not in VERDICTS:
            raise BenchInputError(f"{where}: verdict must be one of {VERDICTS}, got {row.verdict!r}")
        if not 0.0 <= row.risk <= 1.0:
            raise BenchInputError(f"{where}: risk must be in [0, 1], got {row.risk}")
        if row.calls_to_flag is not None and row.calls_to_flag < 1:
            raise BenchInputError(f"{where}: calls_to_flag must be >= 1, got {row.calls_to_flag}")
        if row.account_id in verdicts:
            raise BenchInputError(f"{where}: account {row.account_id!r} has two verdicts")
        verdicts[row.account_id] = row
    return verdicts
