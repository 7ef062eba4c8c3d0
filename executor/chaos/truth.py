"""The ledger against the exchange's ground truth, as counts a chaos report can print.

The embedded exchange runs in the chaos process, so its truth is read in-process: every
order and trade of the bot's account and its final balances. The ledger is read through
the data-access layer (``Store``). Nothing here asserts: every kind of difference is
counted and a few examples are kept, so the report can say what went wrong and how often.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

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
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.phantom or self.mismatched
                    or self.orders_missing or self.orders_phantom or self.sent_twice or self.balance_diffs)

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
    finally:
        await store.close()

    by_cid = {r.client_order_id: r for r in rows}
    for o in orders:
        r = by_cid.get(o.client_order_id)
        if r is None or r.external:
            out.orders_missing += 1
            out.note(f"order {o.client_order_id} ({o.symbol} #{o.order_id}) "
                     f"{'missing from' if r is None else 'not ours in'} the ledger")
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
        t = trades.get((f.symbol, f.trade_id))
        if t is None:
            out.phantom += 1
            out.note(f"fill {f.symbol} trade {f.trade_id} is not an exchange trade of the account")
            continue
        want_f = (t.price, t.qty, t.commission, t.commission_asset, t.order_id)
        got_f = (f.price, f.qty, f.commission, f.commission_asset, f.exchange_order_id)
        if got_f != want_f:
            out.mismatched += 1
            out.note(f"fill {f.symbol} trade {f.trade_id}: ledger {got_f} != exchange {want_f}")
    for key in trades.keys() - seen.keys():
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
