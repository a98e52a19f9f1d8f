"""The report as an engineer opens it: a real run's page rendered in headless Chromium.

The page of a real failed run (tests/fixtures/reports: stress right after `stack up`,
beside a moderate run that passed) must hold, on its first screen of a 1280x800
window, the verdict, every failed gate with its size, and the failed scenario's cause
line; the failed scenario's section must come before the passing one. The screenshot
is kept (reports/report-first-screen.png) for the README's docs/ copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from event_processor.report.html import render_standalone
from event_processor.report.schema import load_json
from event_processor.report.verdict import failed_gates, verdict_lines
from event_processor.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

REPORTS = Path(__file__).parents[1] / "fixtures" / "reports"
WINDOW = (1280, 800)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    # This machine's network is closed: no background calls, no first-run pages.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_first_screen_holds_the_verdict_and_the_failed_gates(
    browser: Any, tmp_path: Path
) -> None:
    passed = load_json(REPORTS / "moderate-passed-result.json")
    failed = load_json(REPORTS / "stress-failed-result.json")
    doc = passed.model_copy(update={"scenarios": [*passed.scenarios, *failed.scenarios]})
    page = tmp_path / "report.html"
    page.write_text(render_standalone(doc), encoding="utf-8")

    browser.get(page.as_uri())
    height = browser.execute_script("return window.innerHeight")
    verdict = browser.execute_script(
        "const e = document.getElementById('verdict'); const r = e.getBoundingClientRect();"
        "return {top: r.top, bottom: r.bottom, text: e.innerText};"
    )
    assert verdict["bottom"] <= height, "the verdict block runs below the first screen"
    h1 = browser.execute_script("return document.querySelector('h1').innerText")
    assert "FAILED" in h1
    for line in failed_gates(doc):
        assert line in verdict["text"]
    for line in verdict_lines(doc):
        assert line in verdict["text"]
    order = browser.execute_script(
        "return [...document.querySelectorAll('.ep-scenario')].map(e => e.id)"
    )
    assert order == ["scenario-stress", "scenario-moderate"]

    shot = PROJECT_ROOT / "reports" / "report-first-screen.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank window
