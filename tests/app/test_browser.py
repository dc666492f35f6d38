"""The page in a real browser: headless Chromium (Debian's `chromium`, not a Playwright download) driven by
Playwright loads the app, runs PET on the sample video with two clicks, and sees a playable result video; it saves
a screenshot. Skips where Chromium or Playwright is missing (`apt-get install chromium`, `pip install playwright`;
never `playwright install`)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from .conftest import Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 60_000
ONE_POINT = re.compile(r"^\d+,\d+$")
TWO_POINTS = re.compile(r"^\d+,\d+; \d+,\d+$")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH: apt-get install chromium")]


def test_pet_on_the_sample_in_a_browser(server: Server, tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright: pip install playwright")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server.url)
            page.locator("#video-info").get_by_text("sample").wait_for()

            page.locator("#task label", has_text="PET").click()
            image = page.locator("#points-image img")
            image.wait_for()
            image.click(position={"x": 60, "y": 50})
            points = page.locator("#points textarea")
            sync_api.expect(points).to_have_value(ONE_POINT)
            image.click(position={"x": 200, "y": 120})
            sync_api.expect(points).to_have_value(TWO_POINTS)
            page.locator("#run").click()

            page.wait_for_function("() => { const v = document.querySelector('#result-video video');"
                                   " return v !== null && v.readyState >= 1 && v.duration > 0; }")
            page.screenshot(path=tmp_path / "app.png", full_page=True)
            assert "PET on sample" in page.locator("#status").inner_text()
            assert page.locator("#result-table [role=grid]").get_attribute("aria-rowcount") == "3"  # header + 2
        finally:
            browser.close()
    assert (tmp_path / "app.png").stat().st_size > 0
