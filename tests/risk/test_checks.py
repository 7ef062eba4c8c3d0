"""Every pre-send check refuses what it should and allows what it should."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.config import RiskConfig
from executor.core.intents import Cancel, OrderType, Place, Replace, TimeInForce, build_order_request
from executor.core.orders import OrderStatus, Side
from executor.risk.checks import ALLOWED, KillSwitch, Refused, RiskChecker, cancel_all
from tests.strategy.fakes import FakeClock, World

D = Decimal


def risk_cfg(tmp: Path, **over: object) -> RiskConfig:
    base = RiskConfig(
        max_order_notional=D("500"), max_open_orders=3, max_orders_per_minute=5, price_band_bps=D("150"),
        stale_after_s=D("5"), kill_switch_file=str(tmp / "KILL"),
        max_position={"BTC": D("0.05"), "ETH": D("1.5")},
    )
    return replace(base, **over)


def buy(price: str = "60000", qty: str = "0.001", symbol: str = "BTCUSDT", side: Side = Side.BUY) -> Place:
    return Place(symbol=symbol, side=side, type=OrderType.LIMIT, qty=D(qty), price=D(price),
                 tif=TimeInForce.IOC, reason="test")


def sell(price: str = "60000", qty: str = "0.001", symbol: str = "BTCUSDT") -> Place:
    return buy(price, qty, symbol, Side.SELL)


@pytest.fixture
def world() -> World:
    w = World()
    w.book("BTCUSDT", "59999.99", "60000.01")
    w.mark("BTCUSDT", "60000")
    w.book("ETHUSDT", "2999.99", "3000.01")
    w.mark("ETHUSDT", "3000")
    return w


def checker(tmp_path: Path, world: World, **over: object) -> RiskChecker:
    return RiskChecker(risk_cfg(tmp_path, **over), clock=world.clock)


def test_plain_order_is_allowed(tmp_path: Path, world: World) -> None:
    assert checker(tmp_path, world).check(buy(), world.ctx) == ALLOWED


# (description, setup on world, intent, expected check name or None for allowed)
CASES: list[tuple[str, Any, Place, Any]] = [
    ("notional at the max", None, buy("60000", "0.008"), {"max_order_notional": D("480")}),
    ("notional above the max", None, buy("60000", "0.0084"), "max_order_notional"),
    ("sell notional above the max", None, sell("60000", "0.01"), "max_order_notional"),
    ("price at the band edge (150 bps above)", None, buy("60900", "0.001"), None),
    ("price beyond the band above", None, buy("60900.01", "0.001"), "price_band"),
    ("price beyond the band below", None, sell("59099.99", "0.001"), "price_band"),
    ("fat finger 10x", None, buy("600000", "0.0001"), "price_band"),
    ("unknown symbol", None, buy(symbol="DOGEUSDT"), "order_sanity"),
    ("book too old", lambda w: w.book("BTCUSDT", "59999.99", "60000.01", age=5.01), buy(), "stale_data"),
    ("book exactly at the limit", lambda w: w.book("BTCUSDT", "59999.99", "60000.01", age=5.0), buy(), None),
    ("mark too old", lambda w: w.mark("BTCUSDT", "60000", age=6), buy(), "stale_data"),
    ("position: held + order at the max", lambda w: w.held.update(BTC=D("0.049")), buy(qty="0.001"), None),
    ("position: held + order above", lambda w: w.held.update(BTC=D("0.049")), buy(qty="0.00101"),
     "max_position"),
    ("position counts open buys", lambda w: (w.held.update(BTC=D("0.04")), w.order(qty="0.0095")),
     buy(qty="0.001"), "max_position"),
    ("position counts only unfilled part of open buys",
     lambda w: (w.held.update(BTC=D("0.04")), w.order(qty="0.0095", filled="0.0005")),
     buy(qty="0.001"), None),
    ("open sells do not count against a buy", lambda w: (w.held.update(BTC=D("0.049")),
                                                          w.order(side=Side.SELL, qty="0.04")), buy(), None),
    ("sells are not limited by position", lambda w: w.held.update(BTC=D("0.06")), sell(), None),
    ("open buys on another asset do not count", lambda w: w.order("ETHUSDT", price="3000", qty="1.4"),
     buy(qty="0.008"), None),
    ("final orders are not open", lambda w: [w.order(status=OrderStatus.FILLED) for _ in range(3)],
     buy(), None),
    ("max open orders reached", lambda w: [w.order(side=Side.SELL) for _ in range(3)],
     buy(), "max_open_orders"),
    ("one slot left", lambda w: [w.order(side=Side.SELL) for _ in range(2)], buy(), None),
    ("unknown-outcome orders count as open",
     lambda w: [w.order(side=Side.SELL, status=OrderStatus.UNKNOWN) for _ in range(3)],
     buy(), "max_open_orders"),
]


@pytest.mark.parametrize(("desc", "setup", "intent", "expected"), CASES, ids=[c[0] for c in CASES])
def test_check_table(tmp_path: Path, world: World, desc: str, setup: Any, intent: Place,
                     expected: Any) -> None:
    over: dict[str, Any] = {}
    if isinstance(expected, dict):  # allowed, under a config override
        over, expected = expected, None
    if setup is not None:
        setup(world)
    decision = checker(tmp_path, world, **over).check(intent, world.ctx)
    if expected is None:
        assert decision == ALLOWED, decision
    else:
        assert isinstance(decision, Refused), desc
        assert decision.check == expected
        assert decision.reason and not decision


def test_missing_book_and_missing_mark_are_stale(tmp_path: Path) -> None:
    w = World()
    r = checker(tmp_path, w)
    d = r.check(buy(), w.ctx)
    assert isinstance(d, Refused) and d.check == "stale_data" and "no book" in d.reason
    w.book("BTCUSDT", "59999.99", "60000.01")
    d = r.check(buy(), w.ctx)
    assert isinstance(d, Refused) and d.check == "stale_data" and "no mark" in d.reason
    w.mark("BTCUSDT", "60000")
    assert r.check(buy(), w.ctx) == ALLOWED


def test_data_goes_stale_as_time_passes(tmp_path: Path, world: World) -> None:
    r = checker(tmp_path, world)
    assert r.check(buy(), world.ctx) == ALLOWED
    world.clock.advance(5.5)
    d = r.check(buy(), world.ctx)
    assert isinstance(d, Refused) and d.check == "stale_data"
    assert "5.5 s old" in d.reason


def test_reasons_carry_the_numbers(tmp_path: Path, world: World) -> None:
    r = checker(tmp_path, world)
    d = r.check(buy("61000", "0.001"), world.ctx)
    assert isinstance(d, Refused)
    assert d.reason == "BUY price 61000 is 166.7 bps from mark 60000 (band 150 bps)"
    d = r.check(buy("60000", "0.01"), world.ctx)
    assert isinstance(d, Refused)
    assert d.reason == "notional 600.00 (0.01 x 60000) above max_order_notional 500"
    world.held["BTC"] = D("0.05")
    d = r.check(buy(), world.ctx)
    assert isinstance(d, Refused)
    assert d.reason == "BTC position 0.05 + open buys 0 + order 0.001 = 0.051 above max_position 0.05"


def test_asset_without_position_limit_is_refused(tmp_path: Path, world: World) -> None:
    r = checker(tmp_path, world, max_position={"ETH": D("1")})
    d = r.check(buy(), world.ctx)
    assert isinstance(d, Refused) and d.check == "max_position"
    assert "no max_position configured for BTC" in d.reason
    world.held["BTC"] = D("0.001")
    assert r.check(sell(), world.ctx) == ALLOWED


def test_a_sell_larger_than_the_position_held_is_refused(tmp_path: Path, world: World) -> None:
    r = checker(tmp_path, world, max_open_orders=100)
    d = r.check(sell(), world.ctx)
    assert isinstance(d, Refused) and d.check == "sell_position"
    assert d.reason == "sell 0.001 BTC + open sells 0 = 0.001 exceeds the position held 0"
    world.held["BTC"] = D("0.003")
    assert r.check(sell(qty="0.003"), world.ctx) == ALLOWED
    # Our working sells (an unresolved one too) already claim part of the position.
    world.order(side=Side.SELL, qty="0.002", status=OrderStatus.NOT_FOUND)
    d = r.check(sell(qty="0.002"), world.ctx)
    assert isinstance(d, Refused) and d.check == "sell_position"
    assert d.reason == "sell 0.002 BTC + open sells 0.002 = 0.004 exceeds the position held 0.003"
    assert r.check(sell(qty="0.001"), world.ctx) == ALLOWED


def test_a_sell_larger_than_the_free_balance_reported_is_refused(tmp_path: Path, world: World) -> None:
    r = checker(tmp_path, world, max_open_orders=100)
    world.held["BTC"] = D("0.005")
    world.free["BTC"] = D("0.002")  # e.g. the rest is locked elsewhere, or moved out by hand
    d = r.check(sell(qty="0.003"), world.ctx)
    assert isinstance(d, Refused) and d.check == "sell_balance"
    assert d.reason == "sell 0.003 BTC exceeds the free balance 0.002 the exchange last reported"
    assert r.check(sell(qty="0.002"), world.ctx) == ALLOWED


def test_unconfirmed_not_found_buys_count_against_max_position(tmp_path: Path, world: World) -> None:
    r = checker(tmp_path, world, max_open_orders=100)
    world.held["BTC"] = D("0.04")
    world.order(qty="0.009", status=OrderStatus.NOT_FOUND)
    d = r.check(buy(qty="0.002"), world.ctx)
    assert isinstance(d, Refused) and d.check == "max_position"
    assert "open buys 0.009" in d.reason
    world.orders[-1] = replace(world.orders[-1], status=OrderStatus.NOT_PLACED)  # confirmed absent
    assert r.check(buy(qty="0.002"), world.ctx) == ALLOWED


def test_orders_per_minute_sliding_window(tmp_path: Path, world: World) -> None:
    r = checker(tmp_path, world, max_open_orders=100)
    for _ in range(5):
        assert r.check(buy(), world.ctx) == ALLOWED
        world.clock.advance(10)
        world.book("BTCUSDT", "59999.99", "60000.01")
        world.mark("BTCUSDT", "60000")
    # 5 orders at t=0,10,20,30,40; now t=50: window full.
    d = r.check(buy(), world.ctx)
    assert isinstance(d, Refused) and d.check == "max_orders_per_minute"
    assert r.orders_last_minute() == 5
    # A refusal does not count, a cancel neither.
    assert r.check(Cancel("bx-x"), world.ctx) == ALLOWED
    world.clock.advance(9.99)  # t=59.99: first one still inside the window
    world.book("BTCUSDT", "59999.99", "60000.01")
    world.mark("BTCUSDT", "60000")
    assert not r.check(buy(), world.ctx)
    world.clock.advance(0.01)  # t=60: the t=0 order leaves the window
    assert r.check(buy(), world.ctx) == ALLOWED
    assert not r.check(buy(), world.ctx)


def test_refused_orders_do_not_use_the_window(tmp_path: Path, world: World) -> None:
    r = checker(tmp_path, world, max_orders_per_minute=1)
    for _ in range(10):
        assert not r.check(buy("70000"), world.ctx)  # price band
    assert r.check(buy(), world.ctx) == ALLOWED


def test_cancel_is_always_allowed(tmp_path: Path) -> None:
    w = World()  # no market data at all
    r = checker(tmp_path, w, max_open_orders=1, max_orders_per_minute=1)
    r.kill_switch.engage("test")  # refuses every new order; a cancel still goes
    assert r.check(Cancel("bx-1", reason="ttl"), w.ctx) == ALLOWED


def test_kill_switch_refuses_everything_new(tmp_path: Path, world: World) -> None:
    r = checker(tmp_path, world)
    ks = r.kill_switch
    assert not ks.is_engaged()
    assert r.check(buy(), world.ctx)
    # Created from outside the process, without going through engage().
    (tmp_path / "KILL").write_text("operator says stop\n")
    assert ks.is_engaged()
    old = world.order(side=Side.SELL)
    for intent in (buy(), sell(), Replace(old.client_id, sell("60001"))):
        d = r.check(intent, world.ctx)
        assert isinstance(d, Refused) and d.check == "kill_switch"
        assert "operator says stop" in d.reason
    ks.release()
    assert r.check(buy(), world.ctx) == ALLOWED


def test_kill_switch_engage_creates_file_and_folder(tmp_path: Path) -> None:
    ks = KillSwitch(tmp_path / "data" / "sub" / "KILL")
    ks.engage("manual")
    assert ks.is_engaged() and ks.path.exists()
    assert ks.reason().startswith("engaged ") and ks.reason().endswith(": manual")
    ks.release()
    assert not ks.is_engaged()
    ks.release()  # idempotent


def test_cancel_all_covers_every_working_order_once(world: World) -> None:
    a = world.order()
    b = world.order("ETHUSDT", side=Side.SELL, status=OrderStatus.UNKNOWN)
    world.order(cancel_requested=True)
    world.order(status=OrderStatus.FILLED)
    cancels = cancel_all(world.ctx.open_orders())
    assert [c.client_order_id for c in cancels] == [a.client_id, b.client_id]
    assert all(c.reason == "kill switch engaged" for c in cancels)


def test_replace_is_checked_as_the_new_order(tmp_path: Path, world: World) -> None:
    r = checker(tmp_path, world)
    world.held["BTC"] = D("0.042")
    old = world.order(qty="0.008")
    world.order(side=Side.SELL)
    world.order(side=Side.SELL)
    # 3 open (the max) and 0.05 committed: a replace of the buy takes its place.
    assert r.check(Replace(old.client_id, buy("59990", "0.008")), world.ctx) == ALLOWED
    d = r.check(Replace(old.client_id, buy("59990", "0.00801")), world.ctx)
    assert isinstance(d, Refused) and d.check == "max_position"
    d = r.check(Replace(old.client_id, buy("50000", "0.008")), world.ctx)
    assert isinstance(d, Refused) and d.check == "price_band"
    d = r.check(Replace("bx-gone", buy()), world.ctx)
    assert isinstance(d, Refused) and d.check == "order_sanity"
    # A new order, not a replace, has no slot left.
    d = r.check(sell(), world.ctx)
    assert isinstance(d, Refused) and d.check == "max_open_orders"


def test_market_order_is_valued_at_the_mark(tmp_path: Path, world: World) -> None:
    r = checker(tmp_path, world)
    ok = Place(symbol="BTCUSDT", side=Side.BUY, type=OrderType.MARKET, qty=D("0.008"))
    big = Place(symbol="BTCUSDT", side=Side.BUY, type=OrderType.MARKET, qty=D("0.0084"))
    assert r.check(ok, world.ctx) == ALLOWED
    d = r.check(big, world.ctx)
    assert isinstance(d, Refused) and d.check == "max_order_notional"


def test_default_kill_switch_path_comes_from_config(tmp_path: Path) -> None:
    r = RiskChecker(risk_cfg(tmp_path), clock=FakeClock())
    assert r.kill_switch.path == tmp_path / "KILL"


prices = st.decimals(min_value=D("0.01"), max_value=D("200000"), places=2)
qtys = st.decimals(min_value=D("0.00001"), max_value=D("20"), places=5)


@settings(max_examples=300, deadline=None)
@given(price=prices, qty=qtys, side=st.sampled_from([Side.BUY, Side.SELL]),
       held=st.decimals(min_value=D(0), max_value=D("0.1"), places=5))
def test_allowed_orders_respect_every_limit(price: Decimal, qty: Decimal, side: Side, held: Decimal) -> None:
    tmp_path = Path("/nonexistent-kill-switch-dir")  # never created: the switch stays off
    w = World()
    w.book("BTCUSDT", "59999.99", "60000.01")
    w.mark("BTCUSDT", "60000")
    w.held["BTC"] = held
    cfg = risk_cfg(tmp_path, max_orders_per_minute=10**6)
    d = RiskChecker(cfg, clock=w.clock).check(buy(str(price), str(qty), side=side), w.ctx)
    notional = price * qty
    band_ok = abs(price - 60000) * 10000 <= cfg.price_band_bps * 60000
    position_ok = side is Side.SELL or held + qty <= cfg.max_position["BTC"]
    sell_ok = side is Side.BUY or qty <= held  # never sell more than the bot holds
    assert bool(d) == (notional <= cfg.max_order_notional and band_ok and position_ok and sell_ok)
    if notional > cfg.max_order_notional:
        assert not d


def test_kill_switch_cancels_only_while_engaged(tmp_path: Path, world: World) -> None:
    r = checker(tmp_path, world)
    a = world.order()
    world.order(cancel_requested=True)
    assert r.kill_switch_cancels(world.ctx) == []
    r.kill_switch.engage("drill")
    (c,) = r.kill_switch_cancels(world.ctx)
    assert c.client_order_id == a.client_id
    assert c.reason.startswith("kill switch engaged (engaged ") and c.reason.endswith(": drill)")
    r.kill_switch.release()
    assert r.kill_switch_cancels(world.ctx) == []


def test_rounded_order_request_is_checked_too(tmp_path: Path, world: World) -> None:
    r = checker(tmp_path, world)
    rules = world.ctx.rules("BTCUSDT")
    req = build_order_request(buy("60000.004", "0.0083399"), rules, "bx-1-1")
    assert (req.price, req.quantity) == (D("60000.00"), D("0.00833"))
    assert r.check(req, world.ctx) == ALLOWED
    big = build_order_request(buy("60000", "0.0084"), rules, "bx-1-2")
    d = r.check(big, world.ctx)
    assert isinstance(d, Refused) and d.check == "max_order_notional"
    # As the new half of a replace: the old order's slot and quantity are not counted.
    for _ in range(3):
        old = world.order(qty="0.008")
    d = r.check(req, world.ctx)
    assert isinstance(d, Refused) and d.check == "max_open_orders"
    assert r.check(req, world.ctx, replacing=old.client_id) == ALLOWED
    d = r.check(req, world.ctx, replacing="bx-gone")
    assert isinstance(d, Refused) and d.check == "order_sanity"
