"""Headless Chromium for the `browser` tests: Debian's browser and driver, driven by Selenium.

The browser is never downloaded: `chromium` and `chromedriver` must be on PATH (`bash
scripts/ensure-chromium.sh` installs Debian's `chromium` and `chromium-driver` packages; `make
test` runs it). Selenium Manager is not used because the driver's path is given explicitly.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["headless_chromium", "screenshot_on_failure"]


@contextlib.contextmanager
def headless_chromium(profile: Path) -> Iterator[Any]:
    """A Selenium WebDriver for headless Chromium with its profile in `profile`; quit on exit.

    Fails the test (with how to install them) when Chromium or its driver is missing.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.fail(
            "chromium and chromedriver are needed: bash scripts/ensure-chromium.sh", pytrace=False
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root in CI containers
        "--disable-dev-shm-usage",  # containers have a small /dev/shm
        "--window-size=1400,1000",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield chrome
    finally:
        chrome.quit()


@contextlib.contextmanager
def screenshot_on_failure(chrome: Any, directory: Path) -> Iterator[None]:
    """On an exception in the block, save a screenshot and the page's HTML to `directory`, print
    both paths (pytest shows them with the failure) and add them to the exception as a note."""
    try:
        yield
    except BaseException as exc:
        png, html = directory / "failure.png", directory / "failure.html"
        url = "?"
        with contextlib.suppress(Exception):  # the browser itself may be what failed
            url = chrome.current_url
            chrome.save_screenshot(str(png))
            html.write_text(chrome.page_source)
        message = f"browser at {url}; screenshot {png}, page {html}"
        print(message)
        exc.add_note(message)
        raise
