"""The dashboard in a real headless Chromium (Debian's `chromium` + `chromium-driver`, driven
by Selenium; nothing is downloaded at run time): transactions posted through the command API
show up on the page as the exact strings the API sends, and Swagger UI renders at `/docs`;
neither page trips its Content-Security-Policy. A screenshot goes to .local/dashboard.png.

`make test` installs the two packages when they are missing (scripts/browser.sh); this test
is skipped, saying why, only when no Chromium can be found.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.integration.command_support import running_app
from tests.integration.conftest import TopicFactory
from tests.integration.stream_support import serve_query
from tests.integration.support import running_projector
from tests.unit.command_kit import bearer

ROOT = Path(__file__).resolve().parents[2]
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = ROOT / ".local" / "dashboard.png"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not CHROMEDRIVER.exists():
        pytest.skip(
            "no Chromium: install Debian's chromium and chromium-driver "
            "(make test does it with apt-get when it can)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1100,860",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations land there
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


async def text_of(driver: webdriver.Chrome, element_id: str) -> str:
    element = await asyncio.to_thread(driver.find_element, By.ID, element_id)
    return str(await asyncio.to_thread(lambda: element.text))


def csp_violations(driver: webdriver.Chrome) -> list[str]:
    """What the page's console said about its Content-Security-Policy (read once: the log is
    drained by reading)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [e["message"] for e in entries if "Content Security Policy" in e["message"]]


async def page_shows(driver: webdriver.Chrome, expected: dict[str, str], timeout: float) -> None:
    """Poll the page (each driver call off the event loop, which serves the APIs)."""
    seen: dict[str, str] = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                seen = {key: await text_of(driver, key) for key in expected}
                if seen == expected:
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"the page shows {seen}, expected {expected}")


async def test_the_dashboard_shows_posted_transactions_live(
    browser: webdriver.Chrome, kafka_settings: TopicFactory, database_url: str, tmp_path: Path
) -> None:
    kafka = await kafka_settings()
    async with (
        running_projector(kafka, database_url, tmp_path / "projector.log"),
        serve_query(database_url) as served,
        running_app(kafka) as (_, command),
    ):
        # another host name than the one the page came from must not matter: relative URLs
        url = served.base_url.replace("127.0.0.1", "localhost") + "/"
        await asyncio.to_thread(browser.get, url)
        await page_shows(browser, {"connection": "live", "all-count": "0"}, timeout=20)
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        for amount in ("12.34", "0.66", "100.00"):
            posted = await command.post(
                "/transactions",
                content=json.dumps({"amount": amount, "timestamp": stamp}),
                headers=bearer(),
            )
            assert posted.status_code == 201, posted.text
        expected = {
            "all-count": "3",
            "all-sum": "113.00",
            "all-avg": "37.67",
            "all-max": "100.00",
            "all-min": "0.66",
            "win-count": "3",
            "win-sum": "113.00",
            "connection": "live",
        }
        await page_shows(browser, expected, timeout=20)
        async with httpx.AsyncClient(base_url=served.base_url) as client:
            api = (await client.get("/stats")).json()
        assert api["sum"] == "113.00"
        await asyncio.sleep(2.5)  # let the rate chart draw a few points for the picture
        SCREENSHOT.parent.mkdir(exist_ok=True)
        assert await asyncio.to_thread(browser.save_screenshot, str(SCREENSHOT))
        assert await asyncio.to_thread(csp_violations, browser) == []


async def test_swagger_ui_renders_under_its_content_security_policy(
    browser: webdriver.Chrome, database_url: str
) -> None:
    async with serve_query(database_url) as served:
        await asyncio.to_thread(browser.get, served.base_url + "/docs")

        async def operations() -> int:
            found = await asyncio.to_thread(browser.find_elements, By.CSS_SELECTOR, ".opblock")
            return len(found)

        async with asyncio.timeout(20):
            while await operations() == 0:  # drawn by the inline start-up script
                await asyncio.sleep(0.1)
        title = await asyncio.to_thread(
            browser.find_element, By.CSS_SELECTOR, ".swagger-ui .info .title"
        )
        assert "Transactions query API" in await asyncio.to_thread(lambda: title.text)
        assert await asyncio.to_thread(csp_violations, browser) == []
