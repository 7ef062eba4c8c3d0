"""The reference strategy: trade spot toward the USDⓈ-M futures mark price.

For each symbol, with ``edge = (mark - ask) / mark`` and ``premium = (bid - mark) / mark``
in basis points:

* **enter** -- buy ``order_quote`` worth when the spot ask is more than ``entry_bps`` below
  the mark, as long as the bot's inventory plus its working buys (valued at the mark) plus
  this order stays within ``max_inventory_quote``; the inventory is the ledger's position
  (``view.inventory``), so it holds across restarts;
* **exit** -- sell up to ``order_quote`` worth of inventory when the spot bid is more than
  ``exit_bps`` above the mark. ``exit_bps`` may be negative: ``-2`` sells once the
  discount has narrowed to 2 bps, so ``entry_bps + exit_bps`` is the round-trip edge
  aimed for, and it must be positive;
* orders are limits **at the touch**: with ``post_only`` a LIMIT_MAKER on our own side
  (buy at the bid, sell at the ask, never taking liquidity), otherwise an IOC limit on the
  far side (buy at the ask, sell at the bid, taking what is there now);
* resting orders older than ``quote_ttl_s`` are cancelled;
* at most one working order per symbol and side: no new order on a side while one is
  working or was just handed to the order manager.

When the account's commission rates are known (``ctx.fees``, read from the exchange at
start), every reason also states the fee this order pays (maker rate with ``post_only``,
taker rate otherwise), so the audit shows what the edge had to cover.

Nothing is done for a symbol whose book or mark is missing or stale. Every intent's
``reason`` carries the numbers that triggered it. The strategy reads inventory from the
context: what the bot itself has bought and not yet sold.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from executor.core.filters import SymbolRules
from executor.core.intents import Cancel, Intent, OrderType, Place, TimeInForce
from executor.core.money import ZERO, format_decimal
from executor.core.orders import Side
from executor.strategy.base import OrderView, ParamError, Params, Strategy, StrategyContext

__all__ = ["BasisStrategy"]

_BPS = Decimal(10000)


def _bps(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.1")))


def _num(value: Decimal) -> str:
    return format_decimal(value)


class BasisStrategy(Strategy):
    """Buy spot below the futures mark, sell inventory above it. Parameters: module docstring."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        p = Params(params)
        self.entry_bps = p.decimal("entry_bps", min="-1000", max="1000")
        self.exit_bps = p.decimal("exit_bps", min="-1000", max="1000")
        self.order_quote = p.decimal("order_quote", positive=True)
        self.max_inventory_quote = p.decimal("max_inventory_quote", min="0")
        self.post_only = p.boolean("post_only")
        self.quote_ttl_s = p.decimal("quote_ttl_s", positive=True)
        p.finish()
        if self.entry_bps + self.exit_bps <= 0:
            raise ParamError("exit_bps", f"entry_bps + exit_bps must be positive, got {self.entry_bps} + "
                             f"{self.exit_bps} (otherwise every entry is an immediate losing exit)")
        self._ttl = float(self.quote_ttl_s)
        # ask < mark * (1 - entry/1e4)  <=>  (mark - ask) / mark > entry bps; likewise for exits.
        self._buy_factor = 1 - self.entry_bps / _BPS
        self._sell_factor = 1 + self.exit_bps / _BPS
        self._thresholds: dict[str, tuple[Decimal, Decimal, Decimal]] = {}
        # (symbol, side) -> when we returned a Place for it. Until the order manager shows
        # an order placed since then, the side counts as busy (the app may not have
        # registered the order before the next event). Expires after quote_ttl_s, which is
        # also the back-off after a refusal that never became an order.
        self._pending: dict[tuple[str, Side], float] = {}
        # client id -> when we asked to cancel it, so one slow cancel is not asked for again.
        self._cancelling: dict[str, float] = {}

    # -- handlers ------------------------------------------------------------------------

    def on_book_ticker(self, symbol: str, view: StrategyContext) -> list[Intent]:
        return self._decide(symbol, view)

    def on_mark_price(self, symbol: str, view: StrategyContext) -> list[Intent]:
        return self._decide(symbol, view)

    def on_order_update(self, order: OrderView) -> list[Intent]:
        self._note_seen(order)
        if not order.working:
            self._cancelling.pop(order.client_id, None)
        if order.symbol not in self.ctx.symbols:
            return []
        return self._decide(order.symbol, self.ctx)

    def on_timer(self, now: float) -> list[Intent]:
        ctx = self.ctx
        live = {o.client_id for o in ctx.open_orders()}
        for cid in [c for c in self._cancelling if c not in live]:
            del self._cancelling[cid]
        out: list[Intent] = []
        for symbol in ctx.symbols:
            out += self._decide(symbol, ctx)
        return out

    # -- decision ------------------------------------------------------------------------

    def _note_seen(self, order: OrderView) -> None:
        key = (order.symbol, order.side)
        since = self._pending.get(key)
        if since is not None and order.placed_at >= since:
            del self._pending[key]

    def _busy(self, symbol: str, side: Side, working: list[OrderView], now: float) -> bool:
        if any(o.side is side for o in working):
            return True
        since = self._pending.get((symbol, side))
        if since is None:
            return False
        if now - since >= self._ttl:
            del self._pending[(symbol, side)]
            return False
        return True

    def _decide(self, symbol: str, ctx: StrategyContext) -> list[Intent]:
        now = ctx.now
        working = ctx.open_orders(symbol)
        out: list[Intent] = []
        if working:
            for o in working:
                self._note_seen(o)
            out = self._expire(working, now)
        st = ctx.market(symbol)
        if st is None:
            return out
        bid, ask, mark = st.bid, st.ask, st.mark
        if bid is None or ask is None or mark is None or mark <= 0:
            return out
        # Thresholds as prices, recomputed only when the mark moves (about once a second),
        # so a book tick without a signal costs two comparisons.
        cached = self._thresholds.get(symbol)
        if cached is None or cached[0] != mark:
            cached = (mark, mark * self._buy_factor, mark * self._sell_factor)
            self._thresholds[symbol] = cached
        # A touch with nothing left on it (a replay shows what our own orders took) is no signal.
        want_buy = ask < cached[1] and st.ask_qty != 0
        want_sell = bid > cached[2] and st.bid_qty != 0
        if not (want_buy or want_sell) or ctx.is_stale(symbol):
            return out
        rules = ctx.rules(symbol)
        if want_buy and not self._busy(symbol, Side.BUY, working, now):
            edge = (mark - ask) * _BPS / mark
            place = self._entry(symbol, rules, ctx, bid, ask, mark, edge)
            if place is not None:
                out.append(place)
                self._pending[(symbol, Side.BUY)] = now
        if want_sell and not self._busy(symbol, Side.SELL, working, now):
            premium = (bid - mark) * _BPS / mark
            place = self._exit(symbol, rules, ctx, bid, ask, mark, premium)
            if place is not None:
                out.append(place)
                self._pending[(symbol, Side.SELL)] = now
        return out

    def _expire(self, working: list[OrderView], now: float) -> list[Intent]:
        out: list[Intent] = []
        for o in working:
            age = o.age(now)
            if o.cancel_requested or age <= self._ttl:
                continue
            asked = self._cancelling.get(o.client_id)
            if asked is not None and now - asked < self._ttl:
                continue
            self._cancelling[o.client_id] = now
            out.append(Cancel(client_order_id=o.client_id,
                              reason=f"quote age {age:.1f} s > quote_ttl_s {self.quote_ttl_s} "
                                     f"({o.side} {_num(o.remaining)} {o.symbol} @ {_num(o.price)})"))
        return out

    def _fee_note(self, ctx: StrategyContext, symbol: str, side: Side) -> str:
        rates = ctx.fees(symbol)
        if rates is None:
            return ""
        role = "maker" if self.post_only else "taker"
        bps = rates.rate_bps(maker=self.post_only, buy=side is Side.BUY)
        return f"; {role} fee {_bps(bps)} bps"

    def _order(self, symbol: str, side: Side, qty: Decimal, price: Decimal, reason: str) -> Place:
        if self.post_only:
            return Place(symbol=symbol, side=side, type=OrderType.LIMIT_MAKER, qty=qty, price=price,
                         reason=reason + " as LIMIT_MAKER")
        return Place(symbol=symbol, side=side, type=OrderType.LIMIT, qty=qty, price=price,
                     tif=TimeInForce.IOC, reason=reason + " IOC")

    def _entry(self, symbol: str, rules: SymbolRules, ctx: StrategyContext, bid: Decimal, ask: Decimal,
               mark: Decimal, edge: Decimal) -> Place | None:
        held = ctx.inventory(rules.base_asset)
        # Working buys of this base asset (any symbol; unresolved ones included) may still fill.
        buying = sum((o.remaining for o in ctx.open_orders(side=Side.BUY)
                      if ctx.rules(o.symbol).base_asset == rules.base_asset), ZERO)
        room = self.max_inventory_quote - (held + buying) * mark  # inventory is valued at the mark
        if room <= 0:
            return None
        price = bid if self.post_only else ask
        qty = rules.round_qty(min(self.order_quote / price, room / mark))
        if not self._valid(rules, Side.BUY, price, qty):
            return None
        why = (f"ask {_num(ask)} is {_bps(edge)} bps below mark {_num(mark)} (entry {self.entry_bps} bps); "
               f"inventory {_num(held)} {rules.base_asset}; buy {_num(qty)} @ {_num(price)}"
               f"{self._fee_note(ctx, symbol, Side.BUY)}")
        return self._order(symbol, Side.BUY, qty, price, why)

    def _exit(self, symbol: str, rules: SymbolRules, ctx: StrategyContext, bid: Decimal, ask: Decimal,
              mark: Decimal, premium: Decimal) -> Place | None:
        held = ctx.inventory(rules.base_asset)
        if held <= 0:
            return None
        price = ask if self.post_only else bid
        qty = rules.round_qty(min(held, self.order_quote / price))
        leftover = rules.round_qty(held - qty)
        if leftover > 0 and not self._valid(rules, Side.SELL, price, leftover):
            qty = rules.round_qty(held)  # sell the remainder too rather than strand dust
        if not self._valid(rules, Side.SELL, price, qty):
            return None
        where = f"{_bps(premium)} bps above" if premium >= 0 else f"only {_bps(-premium)} bps below"
        why = (f"bid {_num(bid)} is {where} mark {_num(mark)} (exit {self.exit_bps} bps); "
               f"inventory {_num(held)} {rules.base_asset}; sell {_num(qty)} @ {_num(price)}"
               f"{self._fee_note(ctx, symbol, Side.SELL)}")
        return self._order(symbol, Side.SELL, qty, price, why)

    def _valid(self, rules: SymbolRules, side: Side, price: Decimal, qty: Decimal) -> bool:
        if qty <= ZERO:
            return False
        kind = OrderType.LIMIT_MAKER if self.post_only else OrderType.LIMIT
        return not rules.check(side, kind.value, price, qty)
