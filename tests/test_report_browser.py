"""report.html of `make demo` in a real browser: headless Chromium (Debian's chromium +
chromium-driver) opens the file from disk in an 800 px wide window. It must render without console
errors, load every image, show every chart with its alt text and caption, and never scroll the
page sideways (wide tables scroll inside their own box).

The first screen is docs/report-screenshot.png (shown in the README): `pytest
tests/test_report_browser.py --update-goldens` rewrites it, and without the option the test checks
the committed one was taken the same way (same size).

Skipped when Chromium is not installed, unless CALIBRATE_REQUIRE_BROWSER=1 (set by `.ci/run`,
which installs it)."""

from __future__ import annotations

import os
import shutil
import struct
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
from test_sweep_outputs import demo_args, sweep_sample  # noqa: E402

WIDTH, HEIGHT = 800, 1200  # a narrow laptop window; the screenshot is its first screen
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "report-screenshot.png"
CHARTS = (
    "segments.svg",
    "frontier.svg",
    "thresholds.svg",
    "escalation_by_region.svg",
    "reliability.svg",
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
        "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    metrics = {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # the exact viewport
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, sample_logs: Path, tmp_path_factory: pytest.TempPathFactory):
    """The browser on the demo's report.html (what `make demo` writes)."""
    out = tmp_path_factory.mktemp("demo")
    sweep_sample(sample_logs, out, *demo_args(sample_logs))
    browser.get((out / "report.html").resolve().as_uri())
    assert browser.title == "calibrate report"
    return browser


def test_report_renders_without_console_errors_and_loads_every_image(page) -> None:
    errors = [e for e in page.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    broken = page.execute_script(
        "return Array.from(document.images)"
        ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
    )
    assert broken == []


def test_report_does_not_scroll_sideways_at_800_px(page) -> None:
    width = page.execute_script("return document.documentElement.clientWidth")
    assert width == WIDTH
    assert page.execute_script("return document.documentElement.scrollWidth") <= width
    # the demo's strategy table is wider than the window: it scrolls inside its own box
    scrolling = page.execute_script(
        "return Array.from(document.querySelectorAll('div.table'))"
        ".filter(d => d.scrollWidth > d.clientWidth).length"
    )
    assert scrolling >= 1


def test_every_chart_is_drawn_with_alt_text_and_a_caption(page) -> None:
    figures = page.find_elements(By.CSS_SELECTOR, "figure.chart")
    assert [f.get_attribute("id") for f in figures] == list(CHARTS)
    for figure in figures:
        name = figure.get_attribute("id")
        svg = figure.find_element(By.TAG_NAME, "svg")
        page.execute_script("arguments[0].scrollIntoView();", svg)
        assert svg.is_displayed(), name
        assert 200 < svg.size["width"] <= WIDTH and svg.size["height"] > 100, name
        # something was drawn: the chart holds paths or images, not an empty frame
        assert len(svg.find_elements(By.CSS_SELECTOR, "path, image")) > 5, name
        alt = svg.get_attribute("aria-label")
        assert svg.get_attribute("role") == "img" and len(alt) > 40, name
        title = page.execute_script("return arguments[0].querySelector('title').textContent", svg)
        assert title == alt, name
        caption = figure.find_element(By.TAG_NAME, "figcaption").text
        heading = figure.find_element(By.CSS_SELECTOR, "figcaption strong").text
        # the caption says more than the title: at least a sentence after it
        assert caption.startswith(heading) and len(caption) > len(heading) + 60, name


def test_screenshot_of_the_first_screen(page, request: pytest.FixtureRequest, tmp_path) -> None:
    page.execute_script("window.scrollTo(0, 0);")
    shot = tmp_path / "report.png"
    assert page.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if request.config.getoption("--update-goldens"):
        shutil.copyfile(shot, SCREENSHOT)
    assert _png_size(SCREENSHOT) == _png_size(shot), (
        "docs/report-screenshot.png was taken another way; rerun with --update-goldens"
    )


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", head[16:24])
    return width, height
