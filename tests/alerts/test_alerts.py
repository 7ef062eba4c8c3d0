"""Alerts received by a local HTTP server standing in for a webhook and Telegram's Bot API:
delivery, retry with backoff, a dead endpoint logged once per interval, a full queue that
drops instead of blocking, secrets never logged; and, from a bot trading on the embedded
exchange, the alerts it sends (fills, operator actions, kill file, stale stream,
reconciliation with differences, daily summary, unclean end)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from executor.alerts import Alerter, AlertSettings, TelegramChannel, WebhookChannel
from executor.run.shutdown import Shutdown
from tests.scenarios.harness import SIM_OPTIONS, BotRun, scenario_config
from tests.web.harness import wait_until

BOT_TOKEN = "123456:secret-telegram-token-abc"
CHAT_ID = "987654321"


class Receiver:
    """A local server: ``/hook`` (webhook) and ``/bot<token>/sendMessage`` (Telegram)."""

    def __init__(self) -> None:
        self.hook: list[dict[str, Any]] = []
        self.telegram: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.fail_next = 0  # answer 500 this many times
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/bot{token}/sendMessage", self._telegram)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _failing(self) -> bool:
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        return False

    async def _hook(self, request: web.Request) -> web.Response:
        if self._failing():
            return web.Response(status=500)
        self.hook.append(await request.json())
        return web.json_response({"ok": True})

    async def _telegram(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        if request.match_info["token"] != BOT_TOKEN:
            return web.json_response({"ok": False, "error_code": 401}, status=401)
        if self._failing():
            return web.Response(status=502)
        self.telegram.append(await request.json())
        return web.json_response({"ok": True, "result": {"message_id": len(self.telegram)}})

    def kinds(self) -> list[str]:
        return [h["kind"] for h in self.hook]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


FAST = AlertSettings(retries=3, backoff_s=0.01, max_backoff_s=0.05, dead_log_interval_s=60, queue_size=100)


async def test_webhook_and_telegram_receive_with_retries(receiver: Receiver,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    alerter = Alerter([WebhookChannel(receiver.url + "/hook"),
                       TelegramChannel(BOT_TOKEN, CHAT_ID, base_url=receiver.url)], FAST)
    alerter.start()
    try:
        receiver.fail_next = 2  # the first two requests fail (500/502); retries deliver them
        alerter.send("pause", "operator pause from web: new orders refused", run_id=7)
        assert await alerter.flush(5)
    finally:
        await alerter.close()
    assert receiver.hook == [{"kind": "pause", "text": "operator pause from web: new orders refused",
                              "at_ms": receiver.hook[0]["at_ms"], "bot": "binance-executor",
                              "data": {"run_id": 7}}]
    assert receiver.telegram == [{"chat_id": CHAT_ID, "text": "operator pause from web: new orders refused",
                                  "disable_web_page_preview": True}]
    assert set(receiver.paths) == {f"/bot{BOT_TOKEN}/sendMessage"}
    stats = alerter.stats()
    assert stats["webhook"]["delivered"] == 1 and stats["telegram"]["delivered"] == 1
    assert BOT_TOKEN not in caplog.text and CHAT_ID not in caplog.text


async def test_dead_endpoint_logged_once_per_interval_and_never_blocks(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    dead = f"{receiver.url}/nothing-here"  # 404: not retried, counted as failed
    closed_port = TelegramChannel(BOT_TOKEN, CHAT_ID, base_url="http://127.0.0.1:9")
    alerter = Alerter([WebhookChannel(dead), closed_port],
                      AlertSettings(retries=1, backoff_s=0.01, dead_log_interval_s=60, queue_size=3))
    alerter.start()
    try:
        for i in range(10):
            alerter.send("fill", f"fill {i}")  # not a coroutine: it only queues (or drops)
        await alerter.flush(10)
    finally:
        await alerter.close()
    stats = alerter.stats()
    for name in ("webhook", "telegram"):
        assert stats[name]["delivered"] == 0
        assert stats[name]["failed"] + stats[name]["dropped"] == 10, stats
        assert stats[name]["dropped"] >= 6
    warnings = [r for r in caplog.records
                if r.levelno == logging.WARNING and r.name.startswith("executor.alerts")]
    assert sorted(r.getMessage().split(" is failing")[0] for r in warnings) == \
        ["alerts: telegram", "alerts: webhook"]
    assert BOT_TOKEN not in caplog.text and CHAT_ID not in caplog.text and "nothing-here" not in caplog.text


@pytest.mark.sim_options(**SIM_OPTIONS)
async def test_bot_sends_its_alerts(sim, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("BX_ALERT_WEBHOOK_URL", receiver.url + "/hook")
    monkeypatch.setenv("BX_TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("BX_TELEGRAM_CHAT_ID", CHAT_ID)
    cfg = scenario_config(tmp_path, {"alerts": {"webhook": True, "telegram": True, "fills": True,
                                                "stale_after_s": 1, "telegram_base_url": receiver.url}})
    run = BotRun(sim, cfg)
    bot = await run.start()
    try:
        await wait_until(lambda: "fill" in receiver.kinds(), 20, "a fill alert")
        fill = next(h for h in receiver.hook if h["kind"] == "fill")
        assert fill["data"]["symbol"] in ("BTCUSDT", "ETHUSDT") and fill["text"].startswith("fill ")

        await bot.oversight.operator.act("pause", "test")
        await wait_until(lambda: "pause" in receiver.kinds(), 5, "a pause alert")
        await bot.oversight.operator.act("resume", "test")
        await wait_until(lambda: "resume" in receiver.kinds(), 5, "a resume alert")

        recon = await bot.store.start_reconciliation("test")
        await bot.store.finish_reconciliation(recon, found=1, fixed=1,
                                              discrepancies=[{"kind": "balance", "asset": "BTC"}])
        await wait_until(lambda: "reconciliation" in receiver.kinds(), 5, "a reconciliation alert")

        bot.risk.kill_switch.engage("from the test, as a file")
        await wait_until(lambda: "kill" in receiver.kinds(), 5, "a kill alert")

        async def kill_recorded() -> None:
            # The kill takes effect (and alerts) first; its ledger row follows.
            while True:
                actions = await bot.store.operator_actions(run_id=bot.run_id)
                if ("kill", "kill_file") in [(a["action"], a["source"]) for a in actions]:
                    return
                await asyncio.sleep(0.02)

        await asyncio.wait_for(kill_recorded(), 10)

        assert sim.exchange.faults.connections.stall("market") >= 1
        await wait_until(lambda: "stream_stale" in receiver.kinds(), 10, "a stale-stream alert")
        sim.exchange.faults.connections.unstall()

        text = await bot.oversight.daily_summary(0, 2**53)
        assert "daily summary" in text and "fill(s)" in text
        await wait_until(lambda: "daily_summary" in receiver.kinds(), 5, "the daily summary")
    finally:
        shutdown = Shutdown()
        shutdown.request("test")
        run.bot = None
        await bot.stop(shutdown, ended="error", reason="test ends with an error")
    assert "unclean_shutdown" in receiver.kinds()  # delivered before stop() returned
    assert [t["text"] for t in receiver.telegram] == [h["text"] for h in receiver.hook]
    assert all(t["chat_id"] == CHAT_ID for t in receiver.telegram)
    logs = caplog.text + "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert BOT_TOKEN not in logs and CHAT_ID not in logs and receiver.url + "/hook" not in logs
