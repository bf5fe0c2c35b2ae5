"""The comparison report in Debian's Chromium: it renders (a screenshot of real size), its charts
draw, the CSP blocks nothing the page needs, and every answer, including one carrying markup and
script, is shown as inert text: no element is created from it and nothing runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from distillguard.cli import main
from tests.audit.audit_endpoints import answer_with, refusing, serve, withdrawing
from tests.audit.conftest import FAST, prompt, write_suite

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-sync",
]
PAYLOAD = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"><svg onload="window.__xss = 3"></svg><b>bold</b>'


@pytest.fixture(scope="module")
def browser(report_page: Path) -> Iterator[Any]:  # after the page: see report_page
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


def audit_cli(*args: str) -> Result:
    return CliRunner().invoke(main, ["audit", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three runs and their comparison page, made before the browser starts (Playwright's sync API
    holds an event loop on this thread, and `audit run` starts its own)."""
    tmp_path = tmp_path_factory.mktemp("browser")
    suite = write_suite(
        tmp_path / "s.yaml",
        [
            prompt(
                "tiananmen", "Tell me about Tiananmen (filter)", "讲讲天安门（filter）", topic="tiananmen"
            ),
            prompt("xss", f"Say {PAYLOAD}", topic="markup"),
        ],
    )
    runs = []
    for name, handler in (("refuser", refusing), ("withdrawer", withdrawing), ("echo", answer_with(PAYLOAD))):
        with serve(handler) as endpoint:
            result = audit_cli(
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
                str(tmp_path / name),
                *FAST,
            )
            assert result.exit_code == 0, result.output
        runs.append(str(tmp_path / name))
    page_path = tmp_path / "report.html"
    assert audit_cli("compare", *runs, "--out", str(page_path)).exit_code == 0
    return page_path


def test_report_renders_and_answers_stay_text(report_page: Path, browser: Any, tmp_path: Path) -> None:
    page_path = report_page
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None,
    )
    page.goto(page_path.as_uri())
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000  # a real page, not a blank one
    assert page.locator("#runs tr.run-row").count() == 3
    assert page.locator("#refusal-chart-en rect").count() >= 3  # bars were drawn
    assert page.locator("#asymmetry-chart-zh rect").count() >= 3
    assert page.locator("#withdrawal-table tr.withdrawal-row").count() >= 2
    # the stylesheet applied (its hash is in the CSP) and nothing the page needs was blocked
    assert page.evaluate("getComputedStyle(document.querySelector('h1')).fontSize") == "22px"
    assert blocked == []
    # the payload is shown as text in the answers, the prompt column and nowhere as markup
    answers = page.locator("#answers")
    assert PAYLOAD in answers.inner_text()
    assert answers.locator("script, img, b, svg[onload]").count() == 0
    assert page.locator("script").count() == 0
    assert page.evaluate("window.__xss === undefined")
    context.close()
