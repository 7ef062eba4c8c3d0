"""The order journal (one INFO line per order event, with client id and reason) and the
DEBUG log's hygiene: no signature fragment at any level, even with third-party loggers
asked for at DEBUG."""

from __future__ import annotations

import io
import logging
import re
from decimal import Decimal
from pathlib import Path

import pytest
from binance.base_client import BaseClient

from executor.core.orders import OrderStatus, Side
from executor.orders.order_log import OrderLog
from executor.orders.tracker import TrackedOrder
from executor.persistence.store import Store
from executor.run.logs import setup_logging
from tests.conftest import SimHandle
from tests.scenarios.harness import BotRun, scenario_config, until

REASON = "ask 59990.1 is 4.2 bps below mark 60015.3 (entry 4 bps)"


def test_each_order_event_is_one_info_line_with_id_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="executor.orders")
    journal = OrderLog()
    order = TrackedOrder("bx-r1-o7", "BTCUSDT", Side.BUY, "LIMIT_MAKER", Decimal("59990.1"), Decimal("0.002"),
                         placed_at=0.0, reason=REASON)
    journal.sent(order)
    order.status, order.exchange_id = OrderStatus.NEW, 1071
    journal.changed(order)
    journal.changed(order)  # the same state again (another path brought it): no new line
    order.status, order.filled = OrderStatus.PARTIALLY_FILLED, Decimal("0.001")
    order.cum_quote = Decimal("59.9901")
    journal.changed(order)
    order.status = OrderStatus.CANCELED
    journal.changed(order)
    lines = [r.getMessage() for r in caplog.records]
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert len(lines) == 4, lines
    for line, start in zip(lines, ("order bx-r1-o7 sent: BUY 0.002 BTCUSDT LIMIT_MAKER @ 59990.1",
                                   "order bx-r1-o7 acknowledged: BTCUSDT NEW on the book",
                                   "order bx-r1-o7 filled BUY 0.001 BTCUSDT",
                                   "order bx-r1-o7 cancelled: BTCUSDT, filled 0.001 of 0.002"), strict=True):
        assert line.startswith(start), (line, start)
    assert "filled BUY 0.001 BTCUSDT (0.001 of 0.002, average price 59990.1" in lines[2]
    assert all("bx-r1-o7" in ln and REASON in ln for ln in lines)
    assert "exchange id 1071" in lines[1]


async def test_no_signature_fragment_in_the_log_at_any_level(sim: SimHandle, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    signatures: list[str] = []
    sign = BaseClient._hmac_signature

    def recording(self: BaseClient, query: str) -> str:
        sig = sign(self, query)
        signatures.append(sig)
        return sig

    monkeypatch.setattr(BaseClient, "_hmac_signature", recording)
    asked = {name: "DEBUG" for name in ("websockets", "aiosqlite", "aiohttp", "binance", "asyncio")}
    cfg = scenario_config(tmp_path, {"logging": {"levels": asked}})
    console = io.StringIO()
    setup = setup_logging(cfg, level="DEBUG", stream=console)
    try:
        run = BotRun(sim, cfg)
        bot = await run.start()
        await run.trade(3)
        # A reconnect of the WS API: another signed subscription goes out.
        subscriptions = sum(s.health.reconnects for s in bot.user_streams)
        await sim.exchange.faults.connections.drop("ws_api")
        await until(lambda: sum(s.health.reconnects for s in bot.user_streams) > subscriptions, 20,
                    "the user stream resubscribing")
        await run.trade(1)
        await run.stop()
    finally:
        setup.close()
    text = console.getvalue() + setup.path.read_text(encoding="utf-8")
    assert len(signatures) > 5 and "websockets" in text  # third-party DEBUG really was on
    windows = {s[i:i + 12] for s in signatures for i in range(len(s) - 11)}
    for run_of_hex in re.findall(r"[0-9a-f]{12,}", text):
        for i in range(len(run_of_hex) - 11):
            assert run_of_hex[i:i + 12] not in windows, f"a signature fragment in the log: {run_of_hex}"
    # The order journal: every filled order of ours was logged sent and filled, with its reason.
    store = await Store.open(cfg.database.url)
    try:
        filled = [r for r in await store.list_orders() if r.executed_qty > 0]
    finally:
        await store.close()
    assert filled
    for rec in filled:
        reason = re.escape(rec.reason or "")
        assert re.search(rf"INFO .*order {rec.client_order_id} sent: .*-- {reason}", text)
        assert re.search(rf"INFO .*order {rec.client_order_id} filled ", text)


class _CountingOrder(TrackedOrder):
    """A tracked order that counts reads of its reason (read only to write a line)."""

    reason_reads = 0

    def __getattribute__(self, name: str) -> object:
        if name == "reason":
            type(self).reason_reads += 1
        return super().__getattribute__(name)


def test_sent_line_is_not_built_when_info_is_off(caplog: pytest.LogCaptureFixture) -> None:
    # ``sent`` runs on the order's send path before the request is written: with INFO off
    # nothing of the line (decimals formatted, the reason) is built.
    caplog.set_level(logging.WARNING, logger="executor.orders")
    journal = OrderLog()
    order = _CountingOrder("bx-r1-o8", "BTCUSDT", Side.BUY, "LIMIT", Decimal("59990.1"), Decimal("0.002"),
                           placed_at=0.0, reason=REASON)
    _CountingOrder.reason_reads = 0
    journal.sent(order)
    assert _CountingOrder.reason_reads == 0 and not caplog.records
    caplog.set_level(logging.INFO, logger="executor.orders")
    journal.sent(_CountingOrder("bx-r1-o9", "BTCUSDT", Side.BUY, "LIMIT", Decimal("59990.1"),
                                Decimal("0.002"), placed_at=0.0, reason=REASON))
    assert _CountingOrder.reason_reads == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"order bx-r1-o9 sent: BUY 0.002 BTCUSDT LIMIT @ 59990.1 -- {REASON}"]
