"""The liquidation-distance check: refuse to add to a perpetual position while the mark is
within ``[futures] min_liquidation_distance_pct`` of its liquidation price (or while that
price is unknown for the current position); reducing always passes. On hand-made views,
then through the whole bot against the embedded exchange's positionRisk."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from executor.config import ConfigError, load_config
from executor.core.intents import OrderType, Place
from executor.core.orders import Side
from executor.risk.checks import ALLOWED, Refused
from executor.risk.liquidation import LiquidationPrices
from tests.app.test_carry import SYMBOL, config, start, stop
from tests.conftest import SimHandle
from tests.risk.test_futures_checks import View, check_of, checker, order

D = Decimal


def test_adding_near_liquidation_is_refused_reducing_passes(tmp_path: Path) -> None:
    risk = checker(tmp_path, min_liquidation_distance_pct=D(10))
    short = dict(spot=D("0.004"), perp=D("-0.004"))
    near = View(**short, liq=(True, D(65000)))            # mark 60000: 8.33% away
    far = View(**short, liq=(True, D(70000)))             # 16.7% away
    add = order(Side.SELL, "0.001")
    refused = risk.check(add, near)
    assert isinstance(refused, Refused) and refused.check == "liquidation_distance"
    assert "65000" in refused.reason and "8.33%" in refused.reason
    assert risk.check(order(Side.BUY, "0.004"), near) is ALLOWED            # reducing always passes
    assert risk.check(add, far) is ALLOWED
    assert risk.check(add, View(**short, liq=(True, None))) is ALLOWED     # none reachable
    assert check_of(risk.check(add, View(**short, liq=(False, None)))) == "liquidation_distance"
    assert risk.check(order(Side.BUY, "0.004"), View(**short, liq=(False, None))) is ALLOWED
    assert risk.check(add, View(spot=D("0.001"), liq=(False, None))) is ALLOWED   # flat: nothing to liquidate
    assert checker(tmp_path, min_liquidation_distance_pct=D(0)).check(add, near) is ALLOWED   # off


def test_readings_are_valid_only_for_the_position_they_were_read_with() -> None:
    prices = LiquidationPrices(clock=lambda: 1.0)
    assert prices.get("BTCUSDT", D(0)) == (True, None)
    assert prices.get("BTCUSDT", D("-0.01")) == (False, None)               # never read
    prices.update([{"symbol": "BTCUSDT", "positionSide": "BOTH", "positionAmt": "-0.010",
                    "liquidationPrice": "64580.12"},
                   {"symbol": "ETHUSDT", "positionAmt": "0", "liquidationPrice": "0"}],
                  lambda s: D("-0.01") if s == "BTCUSDT" else D(0))
    assert prices.get("BTCUSDT", D("-0.01")) == (True, D("64580.12"))
    assert prices.get("BTCUSDT", D("-0.02")) == (False, None)               # moved since: unknown
    assert prices.get("ETHUSDT", D(0)) == (True, None)


@pytest.mark.parametrize("value", ["-1", "100", "250"])
def test_config_value_is_validated(value: str) -> None:
    with pytest.raises(ConfigError, match=r"futures\.min_liquidation_distance_pct"):
        load_config(local=None, overrides={"futures": {"min_liquidation_distance_pct": value}})
    assert load_config(local=None).futures.min_liquidation_distance_pct == D(10)


async def test_against_the_embedded_exchange(sim: SimHandle, tmp_path: Path) -> None:
    cfg = config(tmp_path, entry_bps="1000")                              # the strategy stays out
    sim.exchange.futures.market.set_basis(SYMBOL, D(0))
    run = await start(sim, cfg)
    fut = run.bot.futures_trading
    try:
        await run.until(lambda: run.bot.market.get(SYMBOL) is not None
                        and run.bot.market.get(SYMBOL).mark is not None)  # type: ignore[union-attr]
        router = run.bot.manager

        def sell(qty: str) -> object:
            return router.submit(Place(SYMBOL, Side.SELL, OrderType.MARKET, D(qty), venue="futures"))

        assert sell("0.002") is ALLOWED                                    # from flat
        await run.until(lambda: fut.position(SYMBOL) == D("-0.002") and run.settled())
        await run.until(lambda: fut.liquidation.get(SYMBOL, D("-0.002"))[0])   # read after the fill
        assert fut.liquidation.get(SYMBOL, D("-0.002"))[1] is not None
        # 10 USDT left in the futures wallet: the liquidation price comes within ~8% of the mark
        side = sim.exchange.futures
        side.transfer("default", "USDT", -(side.wallet("default").balance("USDT") - D(10)))
        await fut.gap_fill("test")
        served = side.liquidation_price("default", SYMBOL)
        assert served is not None and fut.liquidation.get(SYMBOL, D("-0.002")) == (True, served)
        refused = sell("0.002")
        assert isinstance(refused, Refused) and refused.check == "liquidation_distance", refused
        reduce = router.submit(Place(SYMBOL, Side.BUY, OrderType.MARKET, D("0.002"), venue="futures"))
        assert reduce is ALLOWED
        await run.until(lambda: fut.position(SYMBOL) == 0 and run.settled())
    finally:
        await stop(run)
    assert side.wallet("default").positions[SYMBOL].amount == 0
    assert len(side.orders.orders) == 2                                   # the refused one never left


async def test_a_liquidation_reaches_the_ledger(sim: SimHandle, tmp_path: Path) -> None:
    """The exchange liquidates the bot's short: the "autoclose-" fill is in the ledger (the
    exchange's order, not ours), positions and income equal the exchange's, verify is clean."""
    from executor.audit.query import AuditDB, Scope
    from executor.audit.verify import render_verify, verify
    from executor.chaos.truth import compare_ledger
    from executor.persistence.db import database_path
    from executor.persistence.store import Store

    cfg = config(tmp_path, entry_bps="1000")
    side = sim.exchange.futures
    side.market.set_basis(SYMBOL, D(0))
    # Not frozen: the book moves on from there, so the bot's book stream gets its first
    # update (a frozen book publishes nothing, and the start waited 15 s for it).
    sim.exchange.market.set_book(SYMBOL, bid="59999.99", ask="60000.01", freeze=False)
    run = await start(sim, cfg)
    fut = run.bot.futures_trading
    try:
        await run.until(lambda: run.bot.market.get(SYMBOL) is not None
                        and run.bot.market.get(SYMBOL).mark is not None)  # type: ignore[union-attr]
        order = Place(SYMBOL, Side.SELL, OrderType.MARKET, D("0.002"), venue="futures")
        assert run.bot.manager.submit(order) is ALLOWED
        await run.until(lambda: fut.position(SYMBOL) == D("-0.002") and run.settled())
        side.transfer("default", "USDT", -(side.wallet("default").balance("USDT") - D(5)))
        lp = side.liquidation_price("default", SYMBOL)
        assert lp is not None
        up = (lp * D("1.001")).quantize(D("0.01"))
        sim.exchange.market.set_book(SYMBOL, bid=str(up - D("0.01")), ask=str(up + D("0.01")))
        await run.until(lambda: side.wallet("default").positions[SYMBOL].amount == 0, 10)
        await fut.gap_fill("test")
    finally:
        await stop(run)
    found = await compare_ledger(sim.exchange, cfg.database.url, "default")
    assert found.ok, found.examples
    store = await Store.open(cfg.database.url)
    try:
        autoclose = [r for r in await store.list_orders() if r.client_order_id.startswith("autoclose-")]
    finally:
        await store.close()
    assert len(autoclose) == 1 and autoclose[0].external and autoclose[0].status == "FILLED"
    with AuditDB(database_path(cfg.database.url)) as db:
        res = verify(db, Scope())
    assert res.ok, render_verify(res)
