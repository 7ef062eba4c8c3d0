"""The dashboard in a real browser (headless Chromium through selenium) on a bot trading on
the embedded exchange: it shows the same fill count and realized PnL as ``/api/v1/pnl``,
Pause (confirmed in the dialog) stops new orders, and a dead server shows as unreachable.
The run saves a screenshot into its tmp folder; with ``BX_SAVE_SCREENSHOT=1`` it refreshes
``docs/dashboard.png`` (linked from the README) — never otherwise, so a test run leaves
the checkout as it was.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); skipped with
that reason when they are absent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios.harness import SIM_OPTIONS
from tests.web.harness import TOKEN, WebBot, exchange_orders, wait_until, web_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)")


def _browser(profile_dir: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-dev-shm-usage", f"--user-data-dir={profile_dir}",
                "--window-size=1280,1500"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)


async def _page_until(driver: Any, check: Callable[[Any], bool], timeout: float, what: str) -> None:
    """Poll the page (in a thread: selenium blocks, the bot's loop must keep running)."""
    async def poll() -> None:
        while not await asyncio.to_thread(check, driver):
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for the page to show {what}") from None


def _text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def _shown(driver: Any, element_id: str) -> bool:
    from selenium.webdriver.common.by import By

    return bool(driver.find_element(By.ID, element_id).is_displayed())


def _chart_drawn(driver: Any) -> bool:
    return len(driver.find_elements("css selector", "#equity-chart polyline")) == 1


def _click_and_confirm(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, element_id).click()
    WebDriverWait(driver, 5).until(expected_conditions.alert_is_present())
    alert = driver.switch_to.alert
    text = str(alert.text)
    alert.accept()
    return text


@pytest.mark.sim_options(**SIM_OPTIONS)
async def test_dashboard_in_chromium(sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BX_WEB_TOKEN", TOKEN)
    async with WebBot(sim, web_config(tmp_path)) as w:
        bot = w.bot
        await wait_until(lambda: bot.tracker.stats.fills >= 3, 20, "3 fills")
        driver = await asyncio.to_thread(_browser, tmp_path / "chromium-profile")
        try:
            # The token rides in the fragment (never sent to the server); the page keeps it in
            # the tab's session storage and drops it from the address bar.
            await asyncio.to_thread(driver.get, f"{w.url}/#token={TOKEN}")
            await _page_until(driver, lambda d: _text(d, "conn-state") == "live", 15, "live")
            assert "token" not in str(driver.current_url)
            await _page_until(driver, lambda d: _text(d, "pnl-all-fills") not in ("-", "0"), 10, "fills")

            confirm = await asyncio.to_thread(_click_and_confirm, driver, "btn-pause")
            assert "Pause" in confirm
            await wait_until(lambda: bot.manager.paused, 10, "the bot to pause")
            await _page_until(driver, lambda d: _shown(d, "paused-badge"), 5, "the PAUSED badge")
            await bot.manager.drain(10)
            before = exchange_orders(sim)
            asked = bot.manager.counts["paused"]
            await wait_until(lambda: bot.manager.counts["paused"] >= asked + 4, 20,
                             "the strategy to try 4 orders while paused")
            await bot.manager.drain(10)
            assert exchange_orders(sim) == before, "an order reached the exchange while paused"

            # Paused, the figures settle: the page must show what the API says.
            api: dict[str, Any] = {}

            def same(d: Any) -> bool:
                return (_text(d, "pnl-all-fills") == str(api.get("fills"))
                        and _text(d, "pnl-all-realized") == api.get("realized"))

            async def api_matches_page() -> bool:
                _, pnl, _ = await w.get("/api/v1/pnl?period=all")
                api.update(fills=pnl["fills"], realized=pnl["totals"]["USDT"]["realized"])
                return await asyncio.to_thread(same, driver)

            async def poll() -> None:
                while not await api_matches_page():
                    await asyncio.sleep(0.2)

            await asyncio.wait_for(poll(), 15)
            assert api["fills"] >= 3 and api["fills"] == bot.tracker.stats.fills
            run_pnl = (await w.get("/api/v1/pnl?period=run"))[1]
            assert _text(driver, "pnl-run-realized") == run_pnl["totals"]["USDT"]["realized"]
            await _page_until(driver, _chart_drawn,
                              10, "the equity chart")
            shot = tmp_path / "dashboard.png"
            assert await asyncio.to_thread(driver.save_screenshot, str(shot))
            assert shot.stat().st_size > 10_000
            if os.environ.get("BX_SAVE_SCREENSHOT") == "1":
                shutil.copyfile(shot, README_SCREENSHOT)

            # The server goes away: the page says so.
            await bot.oversight.web.stop()
            await _page_until(driver, lambda d: _shown(d, "unreachable"), 15, "the unreachable banner")
            assert _text(driver, "conn-state") == "unreachable"
        finally:
            await asyncio.to_thread(driver.quit)
        actions = await bot.store.operator_actions(run_id=bot.run_id)
        assert [(a["action"], a["source"]) for a in actions] == [("pause", "web")]
