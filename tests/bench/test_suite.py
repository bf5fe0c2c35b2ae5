"""`bench detect-suite` refuses what would make its numbers meaningless before simulating anything."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from distillguard.bench.suite import detect_suite


def test_dev_measured_on_the_calibration_seed_is_refused(tmp_path: Path) -> None:
    done = CliRunner().invoke(
        detect_suite,
        [
            "--preset",
            "small",
            "--split",
            "dev",
            "--seed",
            "202",
            "--calibration-seed",
            "202",
            "--work",
            str(tmp_path),
        ],
    )
    assert done.exit_code == 2 and "another seed" in done.output
    assert not any(tmp_path.iterdir())  # nothing simulated


def test_also_needs_a_name_and_an_existing_folder(tmp_path: Path) -> None:
    for spec in ("no-equals-sign", f"old={tmp_path / 'missing'}", f"={tmp_path}"):
        done = CliRunner().invoke(detect_suite, ["--also", spec, "--work", str(tmp_path)])
        assert done.exit_code == 2 and "NAME=FOLDER" in done.output, spec
