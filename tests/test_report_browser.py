"""report.html in a real browser: headless Chromium (Debian's chromium + chromium-driver) opens the
file from disk; it must render without console errors and show every chart.

Skipped when Chromium is not installed, unless CALIBRATE_REQUIRE_BROWSER=1 (set by `.ci/run`,
which installs it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # renders the report in a real browser: not in `make test-fast`

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CALIBRATE_REQUIRE_BROWSER") == "1":
        raise RuntimeError(
            "CALIBRATE_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed"
        )
    pytest.skip("Debian's chromium and chromium-driver are not installed", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from calibrate.cli.app import app  # noqa: E402

CHARTS = (
    "frontier.svg",
    "thresholds.svg",
    "escalation_by_region.svg",
    "reliability.svg",
    "segments.svg",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,1600",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_report_renders_without_errors_and_shows_every_chart(
    browser, sample_logs: Path, tmp_path: Path
) -> None:
    args = ["sweep", str(sample_logs), "--tiers", str(sample_logs / "tiers.yaml")]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    browser.get((tmp_path / "report.html").resolve().as_uri())
    assert browser.title == "calibrate report"
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    figures = browser.find_elements(By.CSS_SELECTOR, "figure.chart")
    assert [f.get_attribute("id") for f in figures] == [
        "segments.svg",
        "frontier.svg",
        "thresholds.svg",
        "escalation_by_region.svg",
        "reliability.svg",
    ]
    for figure in figures:
        svg = figure.find_element(By.TAG_NAME, "svg")
        browser.execute_script("arguments[0].scrollIntoView();", svg)
        assert svg.is_displayed(), figure.get_attribute("id")
        assert svg.size["width"] > 200 and svg.size["height"] > 100, figure.get_attribute("id")
        # something was drawn: the chart holds paths or images, not an empty frame
        assert len(svg.find_elements(By.CSS_SELECTOR, "path, image")) > 5
    assert browser.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
