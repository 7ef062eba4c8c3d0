"""The basis strategy's decisions on hand-built market states."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from executor.core.intents import Cancel, OrderType, Place, TimeInForce
from executor.core.orders import OrderStatus, Side
from executor.strategy.base import OrderView, ParamError
from executor.strategy.basis import BasisStrategy
from tests.strategy.fakes import World

D = Decimal

PARAMS: dict[str, Any] = {"entry_bps": "3", "exit_bps": "3", "order_quote": "50",
                          "max_inventory_quote": "400", "post_only": False, "quote_ttl_s": "5"}


def make(world: World, **over: Any) -> BasisStrategy:
    s = BasisStrategy({**PARAMS, **over})
    s.bind(world.ctx)
    return s


def places(intents: list[Any]) -> list[Place]:
    return [i for i in intents if isinstance(i, Place)]


@pytest.fixture
def world() -> World:
    w = World()
    w.mark("BTCUSDT", "60015.30")
    return w


def test_enters_when_ask_is_below_mark_by_more_than_entry(world: World) -> None:
    s = make(world)
    world.book("BTCUSDT", "59990.00", "59990.10")
    out = s.on_book_ticker("BTCUSDT", world.ctx)
    assert len(out) == 1
    p = out[0]
    assert isinstance(p, Place)
    assert (p.symbol, p.side, p.type, p.tif, p.post_only) == ("BTCUSDT", Side.BUY, OrderType.LIMIT,
                                                            TimeInForce.IOC, False)
    assert p.price == D("59990.10")  # the touch: IOC at the ask
    assert p.qty == D("0.00083")  # 50 / 59990.1 rounded down to the step
    assert p.price * p.qty <= D("50")
    assert p.reason.startswith("ask 59990.1 is 4.2 bps below mark 60015.3 (entry 3 bps)")
    assert "buy 0.00083 @ 59990.1" in p.reason


@pytest.mark.parametrize("ask", ["60000.00", "59997.30", "60100.00"])
def test_no_entry_at_or_above_threshold(world: World, ask: str) -> None:
    # 59997.30 is exactly 3.0 bps below 60015.30 (rounded): (60015.3-59997.3)/60015.3 = 2.9992 bps
    s = make(world)
    world.book("BTCUSDT", str(D(ask) - D("0.01")), ask)
    assert s.on_book_ticker("BTCUSDT", world.ctx) == []


def test_exits_inventory_when_bid_is_above_mark(world: World) -> None:
    s = make(world)
    world.held["BTC"] = D("0.002")
    world.book("BTCUSDT", "60040.00", "60040.10")
    out = s.on_book_ticker("BTCUSDT", world.ctx)
    assert len(out) == 1
    p = out[0]
    assert isinstance(p, Place)
    assert (p.side, p.price, p.tif) == (Side.SELL, D("60040.00"), TimeInForce.IOC)  # IOC at the bid
    assert p.qty == D("0.00083")
    assert p.reason.startswith("bid 60040 is 4.1 bps above mark 60015.3 (exit 3 bps)")


def test_no_exit_without_inventory(world: World) -> None:
    s = make(world)
    world.book("BTCUSDT", "60040.00", "60040.10")
    assert s.on_book_ticker("BTCUSDT", world.ctx) == []


def test_exit_never_sells_more_than_inventory(world: World) -> None:
    s = make(world)
    world.held["BTC"] = D("0.0002")  # 12 USDT: below one order's size
    world.book("BTCUSDT", "60040.00", "60040.10")
    (p,) = places(s.on_book_ticker("BTCUSDT", world.ctx))
    assert p.qty == D("0.0002")


def test_exit_sells_the_remainder_rather_than_strand_dust(world: World) -> None:
    s = make(world)
    world.held["BTC"] = D("0.00090")  # 0.00083 + 0.00007 (4.2 USDT, below min notional 5)
    world.book("BTCUSDT", "60040.00", "60040.10")
    (p,) = places(s.on_book_ticker("BTCUSDT", world.ctx))
    assert p.qty == D("0.0009")


def test_dust_inventory_is_not_sold(world: World) -> None:
    s = make(world)
    world.held["BTC"] = D("0.00005")  # 3 USDT: below min notional
    world.book("BTCUSDT", "60040.00", "60040.10")
    assert s.on_book_ticker("BTCUSDT", world.ctx) == []


def test_negative_exit_sells_when_discount_narrows(world: World) -> None:
    s = make(world, entry_bps="6", exit_bps="-2")
    world.held["BTC"] = D("0.001")
    world.book("BTCUSDT", "60010.00", "60010.10")  # 0.9 bps below mark: discount below 2 bps
    (p,) = places(s.on_book_ticker("BTCUSDT", world.ctx))
    assert p.side is Side.SELL
    assert "is only 0.9 bps below mark 60015.3 (exit -2 bps)" in p.reason


def test_respects_inventory_limit(world: World) -> None:
    s = make(world)
    world.book("BTCUSDT", "59990.00", "59990.10")
    world.held["BTC"] = D("0.0066")  # 396.1 USDT at the mark: room for 3.9, below min notional
    assert s.on_book_ticker("BTCUSDT", world.ctx) == []
    world.held["BTC"] = D("0.0060")  # 360.1 USDT: room for 39.9 only
    (p,) = places(s.on_book_ticker("BTCUSDT", world.ctx))
    assert p.side is Side.BUY
    assert D("0.0060") * D("60015.3") + p.qty * D("60015.3") <= D("400")
    assert p.qty == D("0.00066")


def test_zero_inventory_limit_only_exits(world: World) -> None:
    s = make(world, max_inventory_quote="0")
    world.book("BTCUSDT", "59990.00", "59990.10")
    assert s.on_book_ticker("BTCUSDT", world.ctx) == []
    world.held["BTC"] = D("0.001")
    world.book("BTCUSDT", "60040.00", "60040.10")
    (p,) = places(s.on_book_ticker("BTCUSDT", world.ctx))
    assert p.side is Side.SELL


def test_inventory_at_limit_still_allows_exit(world: World) -> None:
    s = make(world)
    world.held["BTC"] = D("0.01")
    world.book("BTCUSDT", "60040.00", "60040.10")
    (p,) = places(s.on_book_ticker("BTCUSDT", world.ctx))
    assert p.side is Side.SELL


def test_post_only_quotes_limit_maker_at_own_touch(world: World) -> None:
    s = make(world, post_only=True)
    world.book("BTCUSDT", "59990.00", "59990.10")
    (p,) = places(s.on_book_ticker("BTCUSDT", world.ctx))
    assert (p.side, p.type, p.tif, p.price) == (Side.BUY, OrderType.LIMIT_MAKER, None, D("59990.00"))
    assert p.wire_type is OrderType.LIMIT_MAKER
    assert p.reason.endswith("as LIMIT_MAKER")

    s2 = make(world, post_only=True)
    world.held["BTC"] = D("0.002")
    world.book("BTCUSDT", "60040.00", "60040.10")
    (q,) = places(s2.on_book_ticker("BTCUSDT", world.ctx))
    assert (q.side, q.type, q.price) == (Side.SELL, OrderType.LIMIT_MAKER, D("60040.10"))


def test_ioc_otherwise(world: World) -> None:
    s = make(world, post_only=False)
    world.book("BTCUSDT", "59990.00", "59990.10")
    (p,) = places(s.on_book_ticker("BTCUSDT", world.ctx))
    assert p.wire_type is OrderType.LIMIT and p.tif is TimeInForce.IOC
    assert p.reason.endswith(" IOC")


def test_never_two_working_orders_per_side(world: World) -> None:
    s = make(world)
    world.book("BTCUSDT", "59990.00", "59990.10")
    world.order(side=Side.BUY, price="59980", age=1)
    assert s.on_book_ticker("BTCUSDT", world.ctx) == []
    # A working buy does not block a sell.
    world.held["BTC"] = D("0.002")
    world.book("BTCUSDT", "60040.00", "60040.10")
    (p,) = places(s.on_book_ticker("BTCUSDT", world.ctx))
    assert p.side is Side.SELL


def test_unknown_and_cancelling_orders_still_block_their_side(world: World) -> None:
    s = make(world)
    world.book("BTCUSDT", "59990.00", "59990.10")
    o = world.order(side=Side.BUY, status=OrderStatus.UNKNOWN)
    assert s.on_book_ticker("BTCUSDT", world.ctx) == []
    world.orders[:] = [OrderView(**{**o.__dict__, "status": OrderStatus.NEW, "cancel_requested": True})]
    assert s.on_book_ticker("BTCUSDT", world.ctx) == []


def test_one_place_until_the_order_manager_shows_it(world: World) -> None:
    s = make(world)
    world.book("BTCUSDT", "59990.00", "59990.10")
    assert len(places(s.on_book_ticker("BTCUSDT", world.ctx))) == 1
    # Not registered yet: more ticks and marks do not duplicate it.
    world.clock.advance(0.05)
    world.book("BTCUSDT", "59990.00", "59990.20")
    assert places(s.on_book_ticker("BTCUSDT", world.ctx)) == []
    assert places(s.on_mark_price("BTCUSDT", world.ctx)) == []
    assert places(s.on_timer(world.clock())) == []
    # The manager reports it done (IOC filled): the side is free again.
    done = OrderView("bx-1", "BTCUSDT", Side.BUY, D("59990.1"), D("0.00083"), D("0.00083"),
                     OrderStatus.FILLED, placed_at=world.clock() - 0.04)
    world.held["BTC"] = D("0.00083")
    out = s.on_order_update(done)
    assert [p.side for p in places(out)] == [Side.BUY]


def test_update_for_an_older_order_does_not_free_the_side(world: World) -> None:
    s = make(world)
    world.book("BTCUSDT", "59990.00", "59990.10")
    assert len(places(s.on_book_ticker("BTCUSDT", world.ctx))) == 1
    old = OrderView("bx-0", "BTCUSDT", Side.BUY, D("59980"), D("0.0008"), D("0"), OrderStatus.CANCELED,
                    placed_at=world.clock() - 7)
    assert places(s.on_order_update(old)) == []


def test_pending_place_expires_after_ttl(world: World) -> None:
    # A refused intent never becomes an order: retry after quote_ttl_s, not on every tick.
    s = make(world)
    world.book("BTCUSDT", "59990.00", "59990.10")
    assert len(places(s.on_book_ticker("BTCUSDT", world.ctx))) == 1
    world.clock.advance(4.9)
    world.book("BTCUSDT", "59990.00", "59990.10")
    world.mark("BTCUSDT", "60015.30")
    assert places(s.on_book_ticker("BTCUSDT", world.ctx)) == []
    world.clock.advance(0.2)
    world.book("BTCUSDT", "59990.00", "59990.10")
    assert len(places(s.on_book_ticker("BTCUSDT", world.ctx))) == 1


def test_cancels_quotes_older_than_ttl(world: World) -> None:
    s = make(world)
    world.book("BTCUSDT", "60000.00", "60000.10")  # no signal
    young = world.order(side=Side.SELL, price="60010", age=4.9)
    old = world.order(side=Side.BUY, price="59980", qty="0.0008", filled="0.0001", age=6.25)
    out = s.on_timer(world.clock())
    why = "quote age 6.2 s > quote_ttl_s 5 (BUY 0.0007 BTCUSDT @ 59980)"
    assert out == [Cancel(old.client_id, reason=why)]
    # Not asked twice while the cancel is in flight.
    assert s.on_timer(world.clock()) == []
    assert s.on_book_ticker("BTCUSDT", world.ctx) == []
    world.clock.advance(0.2)
    (c,) = s.on_timer(world.clock())
    assert isinstance(c, Cancel) and c.client_order_id == young.client_id


def test_cancel_requested_orders_are_not_cancelled_again(world: World) -> None:
    s = make(world)
    world.book("BTCUSDT", "60000.00", "60000.10")
    world.order(age=60, cancel_requested=True)
    assert s.on_timer(world.clock()) == []


def test_old_quotes_are_cancelled_even_when_market_data_is_stale(world: World) -> None:
    s = make(world)
    world.book("BTCUSDT", "59990.00", "59990.10", age=30)
    o = world.order(age=10)
    out = s.on_timer(world.clock())
    assert [(type(i), getattr(i, "client_order_id", None)) for i in out] == [(Cancel, o.client_id)]


@pytest.mark.parametrize(("book_age", "mark_age"), [(5.5, 0), (0, 5.5)])
def test_no_orders_on_stale_data(world: World, book_age: float, mark_age: float) -> None:
    s = make(world)
    world.book("BTCUSDT", "59990.00", "59990.10", age=book_age)
    world.mark("BTCUSDT", "60015.30", age=mark_age)
    assert s.on_book_ticker("BTCUSDT", world.ctx) == []


def test_no_orders_without_data() -> None:
    w = World()
    s = make(w)
    assert s.on_book_ticker("BTCUSDT", w.ctx) == []
    assert s.on_timer(w.clock()) == []
    w.book("BTCUSDT", "59990.00", "59990.10")
    assert s.on_book_ticker("BTCUSDT", w.ctx) == []  # no mark yet


def test_symbols_are_independent(world: World) -> None:
    s = make(world)
    world.book("BTCUSDT", "59990.00", "59990.10")
    world.mark("ETHUSDT", "3005.00")
    world.book("ETHUSDT", "2999.00", "2999.01")
    world.order(side=Side.BUY)  # working BTC buy
    assert s.on_book_ticker("BTCUSDT", world.ctx) == []
    (p,) = places(s.on_book_ticker("ETHUSDT", world.ctx))
    assert (p.symbol, p.side, p.qty) == ("ETHUSDT", Side.BUY, D("0.01667"))


@pytest.mark.parametrize(("key", "value", "message"), [
    ("entry_bps", 3.0, "must be a decimal written as a string"),
    ("entry_bps", "abc", "not a decimal number"),
    ("entry_bps", "NaN", "must be finite"),
    ("order_quote", "0", "must be greater than 0"),
    ("quote_ttl_s", "-1", "must be greater than 0"),
    ("max_inventory_quote", "-5", "must be at least 0"),
    ("post_only", "yes", "must be true or false"),
    ("exit_bps", "-3", "entry_bps + exit_bps must be positive"),
    ("entry_bps", "5000", "must be at most 1000"),
])
def test_bad_params_are_refused_clearly(key: str, value: Any, message: str) -> None:
    with pytest.raises(ParamError) as info:
        BasisStrategy({**PARAMS, key: value})
    assert message in str(info.value)


def test_missing_and_unknown_params() -> None:
    params = dict(PARAMS)
    del params["order_quote"]
    with pytest.raises(ParamError, match="order_quote: missing"):
        BasisStrategy(params)
    with pytest.raises(ParamError, match="entry_bsp: unknown parameter"):
        BasisStrategy({**PARAMS, "entry_bsp": "3"})


# -- properties over random markets ---------------------------------------------------------

prices = st.integers(min_value=5_990_000, max_value=6_010_000).map(lambda c: D(c) / 100)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.tuples(prices, st.integers(1, 300), prices, st.floats(0, 3),
                             st.sampled_from(["none", "fill", "register"])), min_size=1, max_size=25),
    held=st.integers(0, 900).map(lambda n: D(n) / 100000),
    post_only=st.booleans(),
)
def test_invariants_over_random_markets(steps: list[tuple[Decimal, int, Decimal, float, str]], held: Decimal,
                                        post_only: bool) -> None:
    w = World()
    w.held["BTC"] = held
    s = make(w, post_only=post_only)
    for bid, spread, mark, dt, action in steps:
        w.clock.advance(dt)
        w.book("BTCUSDT", str(bid), str(bid + D(spread) / 100))
        w.mark("BTCUSDT", str(mark))
        out = s.on_book_ticker("BTCUSDT", w.ctx)
        cancelled = {c.client_order_id for c in out if isinstance(c, Cancel)}
        event(f"placed {sorted(p.side.value for p in places(out))}")
        for side in (Side.BUY, Side.SELL):
            new = [p for p in places(out) if p.side is side]
            working = w.ctx.open_orders("BTCUSDT", side)
            assert len(new) + len(working) <= 1, (side, new, working)
        for p in places(out):
            assert p.qty > 0 and p.price is not None
            if p.side is Side.BUY:
                assert (w.held["BTC"] + p.qty) * mark <= D("400")
                assert p.price == (w.market["BTCUSDT"].bid if post_only else w.market["BTCUSDT"].ask)
            else:
                assert p.qty <= w.held["BTC"]
                assert p.price == (w.market["BTCUSDT"].ask if post_only else w.market["BTCUSDT"].bid)
        for cid in cancelled:
            assert any(o.client_id == cid and o.age(w.clock()) > 5 for o in w.orders)
        # Play the order manager: register, fill, or drop (refused) what was asked.
        for p in places(out):
            if action == "register":
                w.order(side=p.side, price=str(p.price), qty=str(p.qty))
            elif action == "fill":
                w.held["BTC"] += p.qty if p.side is Side.BUY else -p.qty
                assert p.price is not None
                s.on_order_update(OrderView("bx-f", "BTCUSDT", p.side, p.price, p.qty, p.qty,
                                            OrderStatus.FILLED, placed_at=w.clock()))
        w.orders[:] = [o if o.client_id not in cancelled else
                       OrderView(**{**o.__dict__, "cancel_requested": True}) for o in w.orders]
