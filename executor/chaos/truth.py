"""The ledger against the exchange's ground truth, as counts a chaos report can print.

The embedded exchange runs in the chaos process, so its truth is read in-process: every
order and trade of the bot's account and its final balances, and on the USDⓈ-M side every
futures order and trade, the positions and the income rows. The ledger is read through
the data-access layer (``Store``). Nothing here asserts: every kind of difference is
counted and a few examples are kept, so the report can say what went wrong and how often.

Futures orders are compared by status, executed quantity and exchange id (the stream gives
an average price rounded to 5 decimals, so a futures cumulative quote is not exact);
the exchange's own closing orders (liquidation "autoclose-", ADL "adl_autoclose") are not
ours, so only their trades are required in the ledger. The position of each perpetual is the ledger's fills
summed; income rows are compared by tranId up to the newest row the ledger fetched (rows
the exchange booked after the bot's last income read are not yet the ledger's business).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from executor.exchange.binance_reports import EXCHANGE_CLOSE_PREFIXES
from executor.persistence.store import Store
from executor.sim.exchange import SimExchange

__all__ = ["Comparison", "compare_ledger"]

ZERO = Decimal(0)
_EXAMPLES = 5


@dataclass
class Comparison:
    orders: int = 0  # orders of the account on the exchange
    trades: int = 0  # trades of the account on the exchange
    fills_stored: int = 0
    missing: int = 0  # exchange trades the ledger lacks
    duplicated: int = 0  # a (symbol, tradeId) stored more than once
    phantom: int = 0  # ledger fills the exchange does not have
    mismatched: int = 0  # fills or orders whose figures differ
    orders_missing: int = 0  # exchange orders the ledger lacks or marks as not ours
    orders_phantom: int = 0  # ledger orders of ours, neither on the exchange nor marked never placed
    sent_twice: int = 0  # client order ids the exchange saw more than once
    balance_diffs: int = 0
    futures_orders: int = 0  # futures orders of the account on the exchange
    futures_trades: int = 0
    position_diffs: int = 0  # perpetuals whose ledger position (its fills) differs
    income_diffs: int = 0  # income rows missing, only in the ledger, or with other figures
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.phantom or self.mismatched
                    or self.orders_missing or self.orders_phantom or self.sent_twice or self.balance_diffs
                    or self.position_diffs or self.income_diffs)

    def note(self, text: str) -> None:
        if len(self.examples) < _EXAMPLES:
            self.examples.append(text)


async def compare_ledger(sim: SimExchange, ledger_url: str, account_id: str) -> Comparison:
    """Every trade stored once with the exchange's price, qty and commission; no fill the
    exchange lacks; every order with the exchange's final status and executed qty; no
    client order id sent twice; final balances equal."""
    out = Comparison()
    symbols = list(sim.specs)
    orders = [o for s in symbols for o in sim.engine.orders[s] if o.account_id == account_id]
    trades = {(t.symbol, t.id): t for s in symbols for t in sim.engine.trades[s]
              if t.account_id == account_id}
    out.orders, out.trades = len(orders), len(trades)
    per_cid = Counter(o.client_order_id for o in orders)
    for cid, n in per_cid.items():
        if n > 1:
            out.sent_twice += 1
            out.note(f"client order id {cid} placed {n} times")

    store = await Store.open(ledger_url, upgrade=False)
    try:
        rows = await store.list_orders()
        fills = await store.fills()
        balances = await store.get_balances()
        income = await store.futures_income()
    finally:
        await store.close()
    # Every trade of the account, spot and futures, as (price, qty, commission, asset, order id).
    expected: dict[tuple[str, int], tuple[object, ...]] = {
        key: (t.price, t.qty, t.commission, t.commission_asset, t.order_id) for key, t in trades.items()}
    fut = getattr(sim, "futures", None)
    if fut is not None:
        expected.update(_futures_orders(out, fut, account_id, rows))
        _futures_income(out, fut, account_id, income)

    by_cid = {r.client_order_id: r for r in rows}
    for o in orders:
        r = _ours_in_ledger(out, by_cid, "order", o.client_order_id, o.symbol, o.order_id)
        if r is None:
            continue
        want = (o.status, o.executed_qty, o.cum_quote, o.order_id)
        got = (r.status, r.executed_qty, r.cum_quote_qty, r.exchange_order_id)
        if got != want:
            out.mismatched += 1
            out.note(f"order {o.client_order_id}: ledger {got} != exchange {want}")

    for cid, r in by_cid.items():
        # An order of ours the exchange never saw must say so: never placed, or refused.
        if cid not in per_cid and not r.external and r.symbol in sim.specs \
                and r.status not in ("NOT_PLACED", "REJECTED"):
            out.orders_phantom += 1
            out.note(f"ledger order {cid} ({r.status}) is not on the exchange")

    out.fills_stored = len(fills)
    seen: Counter[tuple[str, int]] = Counter((f.symbol, f.trade_id) for f in fills)
    out.duplicated = sum(1 for n in seen.values() if n > 1)
    for f in fills:
        want_f = expected.get((f.symbol, f.trade_id))
        if want_f is None:
            out.phantom += 1
            out.note(f"fill {f.symbol} trade {f.trade_id} is not an exchange trade of the account")
            continue
        got_f = (f.price, f.qty, f.commission, f.commission_asset, f.exchange_order_id)
        if got_f != want_f:
            out.mismatched += 1
            out.note(f"fill {f.symbol} trade {f.trade_id}: ledger {got_f} != exchange {want_f}")
    if fut is not None:
        _positions(out, fut, account_id, fills)
    for key in expected.keys() - seen.keys():
        out.missing += 1
        out.note(f"exchange trade {key[0]} #{key[1]} missing from the ledger")

    truth = sim.balances(account_id)
    for asset in sorted(set(truth) | set(balances)):
        want_b = truth.get(asset, (ZERO, ZERO))
        rec = balances.get(asset)
        got_b = (rec.free, rec.locked) if rec is not None else (ZERO, ZERO)
        if got_b != want_b:
            out.balance_diffs += 1
            out.note(f"balance {asset}: ledger free/locked {got_b[0]}/{got_b[1]} "
                     f"!= exchange {want_b[0]}/{want_b[1]}")
    return out


FUTURES = "UM:"


def _ours_in_ledger(out: Comparison, by_cid: Mapping[str, Any], what: str, cid: str, symbol: str,
                    order_id: int) -> Any | None:
    """The ledger's row of one of our orders on the exchange; None (counted and noted as
    missing) when the ledger lacks it or holds it as someone else's."""
    r = by_cid.get(cid)
    if r is None or r.external:
        out.orders_missing += 1
        where = "missing from" if r is None else "not ours in"
        out.note(f"{what} {cid} ({symbol} #{order_id}) {where} the ledger")
        return None
    return r


def _futures_orders(out: Comparison, fut: Any, account_id: str, rows: list[Any]) -> dict[tuple[str, int],
                                                                                        tuple[object, ...]]:
    """Futures orders against the ledger; returns the futures trades as expected fills."""
    orders = [o for o in fut.orders.orders.values() if o.account == account_id]
    trades = [t for t in fut.orders.trades if t.account == account_id]
    out.futures_orders, out.futures_trades = len(orders), len(trades)
    out.orders += len(orders)
    out.trades += len(trades)
    by_cid = {r.client_order_id: r for r in rows if str(r.symbol).startswith(FUTURES)}
    ours = [o for o in orders if not o.client_order_id.startswith(EXCHANGE_CLOSE_PREFIXES)]
    per_cid = Counter(o.client_order_id for o in ours)
    for cid, n in per_cid.items():
        if n > 1:
            out.sent_twice += 1
            out.note(f"futures client order id {cid} placed {n} times")
    for o in ours:
        r = _ours_in_ledger(out, by_cid, "futures order", o.client_order_id, o.symbol, o.order_id)
        if r is None:
            continue
        want_o = (o.status, o.executed, o.order_id)
        got_o = (r.status, r.executed_qty, r.exchange_order_id)
        if got_o != want_o:
            out.mismatched += 1
            out.note(f"futures order {o.client_order_id}: ledger {got_o} != exchange {want_o}")
    for cid, r in by_cid.items():
        if cid not in per_cid and not r.external and r.status not in ("NOT_PLACED", "REJECTED"):
            out.orders_phantom += 1
            out.note(f"ledger futures order {cid} ({r.status}) is not on the exchange")
    return {(FUTURES + t.symbol, t.trade_id): (t.price, t.qty, t.commission, "USDT", t.order_id)
            for t in trades}


def _positions(out: Comparison, fut: Any, account_id: str, fills: list[Any]) -> None:
    held: dict[str, Decimal] = {}
    for f in fills:
        if str(f.symbol).startswith(FUTURES):
            signed = f.qty if str(getattr(f.side, "value", f.side)) == "BUY" else -f.qty
            held[f.symbol[len(FUTURES):]] = held.get(f.symbol[len(FUTURES):], ZERO) + signed
    truth = {s: p.amount for s, p in fut.wallet(account_id).positions.items()}
    for symbol in sorted(set(held) | set(truth)):
        got, exp = held.get(symbol, ZERO), truth.get(symbol, ZERO)
        if got != exp:
            out.position_diffs += 1
            out.note(f"position {FUTURES}{symbol}: ledger fills sum to {got} != exchange {exp}")


def _futures_income(out: Comparison, fut: Any, account_id: str, income: list[dict[str, Any]]) -> None:
    stored = {int(r["tran_id"]): r for r in income}
    if not stored and not any(r["account"] == account_id for r in fut.income):
        return
    fetched_until = max((int(r["time_ms"]) for r in income), default=-1)
    truth = {int(r["tranId"]): r for r in fut.income
             if r["account"] == account_id and int(r["time"]) <= fetched_until}
    for tran in sorted(truth.keys() - stored.keys()):
        out.income_diffs += 1
        out.note(f"income tranId {tran} ({truth[tran]['incomeType']}) missing from the ledger")
    for tran in sorted(stored.keys() - truth.keys()):
        out.income_diffs += 1
        out.note(f"ledger income tranId {tran} is not an income row of the account")
    for tran in sorted(stored.keys() & truth.keys()):
        t, r = truth[tran], stored[tran]
        if (Decimal(t["income"]), t["incomeType"]) != (Decimal(r["amount"]), r["income_type"]):
            out.income_diffs += 1
            out.note(f"income tranId {tran}: ledger {r['income_type']} {r['amount']} "
                     f"!= exchange {t['incomeType']} {t['income']}")
