"""The reconciler reads venue-neutral reports only (``core.reports``), like an execution engine
reading order status and fill reports: nothing under ``executor/reconcile`` imports the
exchange adapters or reads a Binance field, reports built by hand (no adapter at all) are
applied, a raw payload without a translator is refused as malformed, and spot and USD-M
fills with the same symbol and trade id are two fills."""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import executor.reconcile
from executor.core.orders import OrderStatus, Side
from executor.core.reports import (
    AccountReport,
    AssetBalance,
    BalanceDeltaReport,
    BalanceReport,
    FillReport,
    FillSource,
    OrderStatusReport,
    PositionReport,
    Venue,
    WalletBalance,
)
from executor.exchange.binance_reports import SPOT, decode_user_payload
from executor.persistence.store import Store
from executor.reconcile import Reconciler
from tests.reconcile.conftest import PREFIX, Updates, ledger_state, load_fixtures

D = Decimal
RECONCILE = Path(executor.reconcile.__file__).parent

# Binance's field names: the user-stream keys and the REST order/trade/account/income keys.
BINANCE_KEYS = {
    "e", "E", "s", "c", "C", "S", "o", "f", "q", "p", "x", "X", "r", "i", "l", "z", "L", "n", "N", "T", "t",
    "I", "w", "m", "O", "Z", "Y", "W", "eR", "g", "u", "B", "a", "d", "ap", "ps", "rp", "wb", "cw", "bc",
    "pa", "ep", "bep", "cr", "up", "mt", "iw", "subscriptionId", "listenKey",
    "orderId", "clientOrderId", "origClientOrderId", "orderListId", "executedQty", "cummulativeQuoteQty",
    "cumQuote", "origQty", "timeInForce", "transactTime", "updateTime", "tradeId", "commissionAsset",
    "isBuyer", "isMaker", "quoteQty", "positionAmt", "walletBalance", "entryPrice", "unrealizedProfit",
    "tranId", "incomeType", "income", "executionReport", "outboundAccountPosition", "balanceUpdate",
    "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE",
}


def _string_constants(tree: ast.AST) -> list[tuple[int, str]]:
    """String literals that are not docstrings (a docstring may name a Binance field to explain)
    nor a ``TypeVar``'s name."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "TypeVar":
            docstrings.update(id(a) for a in node.args)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


@pytest.mark.parametrize("path", sorted(RECONCILE.glob("*.py")), ids=lambda p: p.name)
def test_reconcile_imports_nothing_binance_shaped(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        for name in names:
            assert not name.startswith("executor.exchange"), f"{path.name}:{node.lineno} imports {name}"
            assert not name.startswith(("binance", "executor.sim")), f"{path.name}:{node.lineno}: {name}"
    leaks = [(line, text) for line, text in _string_constants(tree) if text in BINANCE_KEYS]
    assert leaks == [], f"{path.name} reads Binance payload keys: {leaks}"


def test_the_key_check_would_catch_a_leak() -> None:
    tree = ast.parse('"""doc names X"""\ndef f(d):\n    """E too"""\n    return d["X"], d.get("orderId")\n')
    assert [t for _, t in _string_constants(tree) if t in BINANCE_KEYS] == ["X", "orderId"]


def _order(venue: Venue, cid: str, status: OrderStatus, cum: str, *, trade_id: int | None = None,
           execution_id: int | None = None, event_ms: int = 1_000) -> OrderStatusReport:
    fills = ()
    if trade_id is not None:
        fills = (FillReport("BTCUSDT", trade_id, 42, Side.BUY, D(60000), D(cum), D(60000) * D(cum), D(0),
                            None, False, event_ms, FillSource.STREAM, cid, venue),)
    return OrderStatusReport(
        venue, "BTCUSDT", 42, cid, status, D(cum), D(60000) * D(cum), side=Side.BUY, order_type="LIMIT",
        time_in_force="GTC", price=D(60000), quantity=D("0.01"), event_ms=event_ms, created_ms=900,
        execution_id=execution_id, execution_type="TRADE" if trade_id is not None else "NEW",
        trade_id=trade_id,
        dedupe_key=None if execution_id is not None else f"{venue}:{cid}:{event_ms}", fills=fills,
        payload={"test": cid})


async def test_reports_built_by_hand_need_no_adapter(store: Store, updates: Updates) -> None:
    rec = Reconciler(store, prefix=PREFIX, on_order_update=updates)  # no translator at all
    for cid, symbol in (("bx-t-o1", "BTCUSDT"), ("bx-t-o2", "UM:BTCUSDT")):
        await store.record_order_intent(cid, symbol, "BUY", "LIMIT", quantity=D("0.01"), price=D(60000),
                                        time_in_force="GTC")
    res = await rec.apply_many([
        _order(Venue.SPOT, "bx-t-o1", OrderStatus.NEW, "0", execution_id=1),
        _order(Venue.SPOT, "bx-t-o1", OrderStatus.FILLED, "0.01", trade_id=7, execution_id=2, event_ms=1_001),
        # The same symbol, order id and trade id on USD-M: another order, another fill.
        _order(Venue.USDM, "bx-t-o2", OrderStatus.FILLED, "0.01", trade_id=7, event_ms=1_002),
        BalanceReport(Venue.SPOT, (AssetBalance("BTC", D("0.01"), D(0)),), 1_003, "ref-1", "account"),
        BalanceDeltaReport(Venue.SPOT, "USDT", D(5), 1_004, "ref-2", "transfer"),
        AccountReport(Venue.USDM, 1_005, 1_005, "ORDER", (WalletBalance("USDT", D(100), None, None),),
                      (PositionReport("BTCUSDT", D("0.01"), D(60000), None, None, None, None, None, None),)),
        {"e": "executionReport"},  # raw, and no translator to read it
    ])
    assert (res.events, res.malformed, res.fills_added) == (6, 1, 2)
    spot = await store.get_order_by_client_id("bx-t-o1")
    fut = await store.get_order_by_client_id("bx-t-o2")
    assert spot is not None
    assert (spot.symbol, spot.status, spot.executed_qty) == ("BTCUSDT", "FILLED", D("0.01"))
    assert fut is not None and (fut.symbol, fut.status) == ("UM:BTCUSDT", "FILLED")
    assert [(f.symbol, f.trade_id) for f in await store.fills(symbol="BTCUSDT")] == [("BTCUSDT", 7)]
    assert [(f.symbol, f.trade_id) for f in await store.fills(symbol="UM:BTCUSDT")] == [("UM:BTCUSDT", 7)]
    assert (await store.get_balances())["BTC"].free == D("0.01")
    told = {(u.client_order_id, u.status): [f.key for f in u.fills] for u in updates}
    assert told[("bx-t-o1", "FILLED")] == [(Venue.SPOT, "BTCUSDT", 7)]
    assert told[("bx-t-o2", "FILLED")] == [(Venue.USDM, "BTCUSDT", 7)]
    again = await rec.apply_many([_order(Venue.USDM, "bx-t-o2", OrderStatus.FILLED, "0.01", trade_id=7,
                                         event_ms=1_002)])
    assert (again.fills_added, again.fills_duplicate) == (0, 1)


NAMES = ["executionReport_NEW", "executionReport_TRADE_partial", "executionReport_TRADE_fill",
         "outboundAccountPosition", "balanceUpdate", "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE",
         "listenKeyExpired"]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.sampled_from(NAMES), min_size=1, max_size=12))
async def test_raw_through_the_adapter_equals_reports_handed_over(picks: list[str], make_store: Any) -> None:
    """What the stream hands over (reports) and what a raw payload becomes through the
    translator leave the same ledger, whatever the order and duplicates."""
    fx = load_fixtures()
    states = []
    for raw in (True, False):
        store = await make_store(f"l{len(states)}-{id(picks)}")
        rec = Reconciler(store, prefix=PREFIX, translate=SPOT)
        await store.record_order_intent("bot-20260801-0001", "BTCUSDT", "BUY", "LIMIT",
                                        quantity=D("0.002"), price=D(60000), time_in_force="GTC")
        items = [fx[n] if raw else decode_user_payload(fx[n]) for n in picks]
        items = [i for i in items if i is not None]
        await rec.apply_many(items)
        states.append(await ledger_state(store))
    assert states[0] == states[1]
