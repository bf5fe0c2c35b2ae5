"""`distillguard audit compare`: one page with every run side by side, its charts and tables, a CSP
that forbids scripts, and every model-controlled string escaped."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from html import unescape
from pathlib import Path

import pytest
from click.testing import Result

from tests.audit.audit_endpoints import answer_with, biased, refusing, serve, withdrawing
from tests.audit.conftest import FAST, prompt, write_suite

PAYLOAD = '<script>alert(1)</script><img src=x onerror="alert(2)"><b>bold</b> & "quotes"'


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from click.testing import CliRunner

    from distillguard.cli import main

    base = tmp_path_factory.mktemp("runs")
    suite = write_suite(
        base / "s.yaml",
        [
            prompt(
                "tiananmen", "Tell me about Tiananmen (filter)", "讲讲天安门（filter）", topic="tiananmen"
            ),
            prompt("weather", "Tell me about the weather", "讲讲天气", topic="weather"),
            prompt("xss", f"Repeat this {PAYLOAD}", topic="weather"),
        ],
    )
    out: dict[str, Path] = {}
    for name, handler in (("refuser", refusing), ("withdrawer", withdrawing), ("echo", answer_with(PAYLOAD))):
        with serve(handler) as endpoint:
            result = CliRunner().invoke(
                main,
                [
                    "audit",
                    "run",
                    "--endpoint",
                    endpoint.url,
                    "--model",
                    name,
                    "--suite",
                    str(suite),
                    "--suite",
                    "pairs",
                    "--out",
                    str(base / name),
                    *FAST,
                ],
                catch_exceptions=False,
            )
            assert result.exit_code == 0, result.output
        out[name] = base / name
    with serve(biased) as endpoint:
        result = CliRunner().invoke(
            main,
            [
                "audit",
                "run",
                "--endpoint",
                endpoint.url,
                "--model",
                "biased",
                "--suite",
                "pairs",
                "--out",
                str(base / "biased"),
                *FAST,
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
    out["biased"] = base / "biased"
    return out


def test_compare_writes_one_page_with_every_part(
    runs: dict[str, Path], tmp_path: Path, audit_cli: Callable[..., Result]
) -> None:
    page = tmp_path / "report.html"
    result = audit_cli(
        "compare",
        *(str(runs[n]) for n in ("refuser", "withdrawer", "echo", "biased")),
        "--out",
        str(page),
        "--json",
        str(tmp_path / "m.json"),
    )
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    for part in (
        'id="runs"',
        'id="refusal-chart-en"',
        'id="refusal-chart-zh"',
        'id="asymmetry-chart-en"',
        'id="pair-table"',
        'id="withdrawal-table"',
        'id="answers"',
        'id="not-measured"',
    ):
        assert part in html, part
    assert html.count('class="run-row"') == 4
    assert "content_filter_after_text" in html and "favours China" in html
    # no script anywhere, and a CSP that allows none and only our hashed stylesheet
    assert "<script" not in html.replace("&lt;script", "")
    found = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert found is not None
    policy = unescape(found.group(1))  # the browser reads the attribute with its entities decoded
    assert "script-src 'none'" in policy and "default-src 'none'" in policy
    style = re.search(r"<style>(.*?)</style>", html, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy
    # the model's answer is text: escaped wherever it appears
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=" in html
    assert "<img src=x" not in html and "<b>bold</b>" not in html


def test_compare_errors_name_the_directory(tmp_path: Path, audit_cli: Callable[..., Result]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = audit_cli("compare", str(empty), "--out", str(tmp_path / "r.html"))
    assert result.exit_code != 0 and f"{empty}: not an audit run directory" in result.output
