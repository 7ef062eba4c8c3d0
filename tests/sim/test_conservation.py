"""Property test of the matching engine's money: in-process, no sockets.

Across random sequences of orders, cancels and market moves: every asset's free + locked
on the account changes exactly by its fills and fees, nothing goes negative, locked
equals what open orders hold, and account + counterparty + fee account is conserved.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.sim import errors
from executor.sim.engine import NewOrder
from executor.sim.exchange import SimExchange

D = Decimal
STEP = D("0.00001")
SYMBOL = "BTCUSDT"

order_op = st.tuples(st.just("order"), st.sampled_from(["BUY", "SELL"]),
                     st.sampled_from(["GTC", "IOC", "FOK", "MAKER", "MARKET", "MARKET_QUOTE"]),
                     st.integers(10, 2000), st.integers(-40, 40))
cancel_op = st.tuples(st.just("cancel"), st.integers(0, 30))
move_op = st.tuples(st.just("move"), st.integers(-80, 80), st.integers(1, 400), st.integers(1, 400))


def totals(sim: SimExchange) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for acct in sim.accounts:
        for asset, bal in acct.balances.items():
            out[asset] += bal.free + bal.locked
    return dict(out)


def make_request(op: tuple[Any, ...], mid: Decimal) -> NewOrder:
    _, side, kind, steps, offset = op
    qty = STEP * steps
    price = mid + D(offset)
    if kind == "MARKET":
        return NewOrder(SYMBOL, side, "MARKET", "GTC", qty, None, None, None, "FULL", "EXPIRE_MAKER")
    if kind == "MARKET_QUOTE":
        return NewOrder(SYMBOL, side, "MARKET", "GTC", None, (qty * mid).quantize(D("0.01")), None, None,
                        "FULL", "EXPIRE_MAKER")
    otype = "LIMIT_MAKER" if kind == "MAKER" else "LIMIT"
    tif = "GTC" if kind == "MAKER" else kind
    return NewOrder(SYMBOL, side, otype, tif, qty, None, price, None, "FULL", "EXPIRE_MAKER")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(order_op, cancel_op, move_op), min_size=1, max_size=30))
def test_money_is_conserved_and_explained_by_fills(ops: list[tuple[Any, ...]]) -> None:
    sim = SimExchange.for_tests(symbols=[SYMBOL], book_update_hz=0)
    engine, market = sim.engine, sim.market
    acct = sim.default_account
    market.set_book(SYMBOL, bid="60000.00", ask="60000.01", bid_qty="0.005", ask_qty="0.005")
    start_totals = totals(sim)
    start_acct = {a: acct.free(a) + acct.locked(a) for a in ("BTC", "USDT")}
    for op in ops:
        book = market.book(SYMBOL)
        mid = book.bid
        try:
            if op[0] == "order":
                engine.place(acct, make_request(op, mid))
            elif op[0] == "cancel":
                opened = engine.open_orders(acct.id, SYMBOL)
                if opened:
                    o = opened[op[1] % len(opened)]
                    engine.cancel(acct, SYMBOL, o.order_id, None)
            else:
                bid = D(60000) + D(op[1])
                market.set_book(SYMBOL, bid=bid, ask=bid + D("0.01"), bid_qty=STEP * op[2] * 10,
                                ask_qty=STEP * op[3] * 10)
        except errors.BinanceError:
            pass
        # Nothing negative, anywhere.
        for a in sim.accounts:
            for asset, bal in a.balances.items():
                assert bal.free >= 0 and bal.locked >= 0, (a.id, asset, bal)
        # Locked is exactly what open orders hold.
        held: dict[str, Decimal] = defaultdict(Decimal)
        for o in engine.open_orders(acct.id, SYMBOL):
            held["USDT" if o.side == "BUY" else "BTC"] += o.locked
        assert acct.locked("USDT") == held["USDT"] and acct.locked("BTC") == held["BTC"]
        # Conservation over account + counterparty + fees.
        assert totals(sim) == start_totals
    # The account's change is exactly its fills and fees.
    expect = dict(start_acct)
    for t in engine.trades[SYMBOL]:
        sign = 1 if t.is_buyer else -1
        expect["BTC"] += sign * t.qty
        expect["USDT"] -= sign * t.quote_qty
        expect[t.commission_asset] -= t.commission
        assert t.commission == ((t.qty if t.is_buyer else t.quote_qty) *
                                (D("0.001"))).quantize(D("0.00000001"))
    for asset in ("BTC", "USDT"):
        assert acct.free(asset) + acct.locked(asset) == expect[asset]
    # Order bookkeeping agrees with the trades.
    for o in engine.orders[SYMBOL]:
        mine = [t for t in engine.trades[SYMBOL] if t.order_id == o.order_id]
        assert o.executed_qty == sum((t.qty for t in mine), D(0))
        assert o.cum_quote == sum((t.quote_qty for t in mine), D(0))
        if o.status == "FILLED":
            assert o.executed_qty == o.orig_qty
    ids = [t.id for t in engine.trades[SYMBOL]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
