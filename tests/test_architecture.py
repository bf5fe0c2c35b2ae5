"""The flow's stages import downwards only: the stages below the scan (events, signals, features,
scoring, linking) and the gateway never import the scan or the training that replays through it,
and the engines (which run the ingest and the scan) are chosen by command-line modules alone.
Checked on the source (imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "distillguard"
BELOW_THE_SCAN = ("events", "signals", "features", "scoring", "linking", "gateway")
ABOVE = ("distillguard.scan", "distillguard.training")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("stage", BELOW_THE_SCAN)
def test_stages_below_the_scan_do_not_import_it(stage: str) -> None:
    offending = [
        f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        for path in sorted((PACKAGE / stage).rglob("*.py"))
        for line, module in imported_modules(path)
        if any(module == above or module.startswith(above + ".") for above in ABOVE)
    ]
    assert not offending, "\n".join(offending)


def test_engines_are_chosen_by_command_line_modules_only() -> None:
    offending = [
        f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "engines" not in path.relative_to(PACKAGE).parts
        and not (path.name == "cli.py" or path.name.endswith("_cli.py") or path.name == "bench.py")
        for line, module in imported_modules(path)
        if module == "distillguard.engines" or module.startswith("distillguard.engines.")
    ]
    assert not offending, "\n".join(offending)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from distillguard.scan.pipeline import decide\n", encoding="utf-8")
    assert imported_modules(source) == [(2, "distillguard.scan.pipeline")]
