"""Cash and carry: long spot, short the USD-M perpetual, while the perpetual trades at a premium.

For each traded symbol with a perpetual, ``premium = (mark - spot mid) / spot mid`` in bps:

* **enter** -- above ``entry_bps``, and while the spot leg plus one clip stays within
  ``max_position``: buy ``qty`` on spot (an IOC limit ``slippage_bps`` through the ask) and
  sell the same quantity of the perpetual (MARKET), both at once. The quantity is rounded
  down to both venues' steps;
* **exit** -- below ``exit_bps`` (``exit_bps < entry_bps``): sell up to ``qty`` of the spot leg
  (IOC through the bid) and buy back the same quantity of the perpetual.

**Legging.** The two legs should always cancel (``spot + perp = 0``). Whenever they do not and
none of our orders on the symbol is still working (an UNKNOWN outcome is working until the
order manager has resolved it by query), the position is *unhedged*: that is logged at WARNING
(again every ``alarm_every_s``) and shown in ``flags()`` until it is gone, so it is never
silent. Then, with ``on_leg_failure = "hedge"``, the lagging leg is completed (its remainder is
sent again) for at most ``hedge_timeout_s``; after that, or at once with ``"unwind"``, the
leading leg is taken back instead. A remainder too small for either venue's filters is flagged
as dust and left alone (logged once).

Positions are the bot's own: taken from the context (``inventory``, ``futures_position``) the
first time a symbol is looked at with nothing working, then moved by the filled quantity of
every order update (an order's ``filled`` is known from its response before its fills arrive
on the stream, so a leg is never mistaken for missing). Reasons carry the numbers.

**Liquidation / ADL.** The exchange may close the perpetual leg itself (one position per
symbol per account). Each such close (``ctx.exchange_closes``, counted in
``futures_position``) moves the perpetual leg here too, at the next evaluation, with a
WARNING: the spot leg is then unhedged and the legging rule above applies from that moment
(re-hedge for at most ``hedge_timeout_s`` with ``"hedge"``, else unwind the spot leg), its
orders' reasons starting ``liquidated-hedge`` / ``liquidated-unwind``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any

from executor.core.filters import SymbolRules
from executor.core.intents import Intent, OrderType, Place, TimeInForce
from executor.core.money import ZERO, format_decimal
from executor.core.orders import FINAL, Side
from executor.core.positions import ExchangeClose
from executor.strategy.base import OrderView, ParamError, Params, Strategy

__all__ = ["CashAndCarry"]

log = logging.getLogger(__name__)
_BPS = Decimal(10000)
FUTURES_PREFIX = "UM:"
_KEEP_FINAL = 10_000


class CashAndCarry(Strategy):
    """Hedged basis trade; parameters and legging rules in the module docstring."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        p = Params(params)
        self.entry_bps = p.decimal("entry_bps", min="-1000", max="1000")
        self.exit_bps = p.decimal("exit_bps", min="-1000", max="1000")
        self.qty = p.decimal("qty", positive=True)
        self.max_position = p.decimal("max_position", positive=True)
        self.slippage_bps = p.decimal("slippage_bps", "10", min="0", max="200")
        self.hedge_timeout_s = float(p.decimal("hedge_timeout_s", "5", positive=True))
        self.cooldown_s = float(p.decimal("cooldown_s", "0.5", min="0"))
        self.alarm_every_s = float(p.decimal("alarm_every_s", "10", positive=True))
        self.on_leg_failure = p.string("on_leg_failure", "hedge")
        p.finish()
        if self.exit_bps >= self.entry_bps:
            raise ParamError("exit_bps", f"must be below entry_bps ({self.entry_bps}), got {self.exit_bps}")
        if self.on_leg_failure not in ("hedge", "unwind"):
            raise ParamError("on_leg_failure",
                             f"must be \"hedge\" or \"unwind\", got {self.on_leg_failure!r}")
        self._spot: dict[str, Decimal] = {}
        self._perp: dict[str, Decimal] = {}
        self._seen: OrderedDict[str, Decimal] = OrderedDict()    # client id -> filled qty counted
        self._phase: dict[str, str] = {}                          # last pair: "enter" / "exit"
        self._unhedged_since: dict[str, float] = {}
        self._alarmed_at: dict[str, float] = {}
        self._busy_until: dict[str, float] = {}
        self._flags: dict[str, str] = {}
        self._close_seen: dict[str, int] = {}                     # last exchange close counted
        self._liquidated: dict[str, ExchangeClose] = {}           # until hedged again

    # -- what the status shows -----------------------------------------------------------
    def flags(self) -> dict[str, str]:
        """Symbol -> why its legs do not cancel (empty when every position is hedged)."""
        return dict(self._flags)

    def positions(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        """(spot leg, perpetual leg) as this strategy counts them, None before the first look."""
        if symbol not in self._spot:
            return None
        return self._spot[symbol], self._perp[symbol]

    def after_exchange_close(self, symbol: str, close: ExchangeClose) -> str:
        if self.on_leg_failure == "unwind":
            return (f"CashAndCarry treats the spot leg of {symbol} as unhedged and unwinds it "
                    f"(on_leg_failure = \"unwind\")")
        return (f"CashAndCarry treats the spot leg of {symbol} as unhedged: it re-hedges the perpetual "
                f"for at most {self.hedge_timeout_s:g} s, then unwinds the spot leg "
                f"(on_leg_failure = \"hedge\")")

    # -- handlers --------------------------------------------------------------------------
    def on_book_ticker(self, symbol: str, view: Any) -> list[Intent]:
        return self._evaluate(symbol)

    def on_mark_price(self, symbol: str, view: Any) -> list[Intent]:
        return self._evaluate(symbol)

    def on_timer(self, now: float) -> list[Intent]:
        out: list[Intent] = []
        for symbol in self.ctx.symbols:
            out += self._evaluate(symbol)
        return out

    def on_order_update(self, order: OrderView) -> list[Intent]:
        futures = order.symbol.startswith(FUTURES_PREFIX)
        symbol = order.symbol[len(FUTURES_PREFIX):] if futures else order.symbol
        before = self._seen.get(order.client_id, ZERO)
        delta = order.filled - before
        if delta > 0:
            self._seen[order.client_id] = order.filled
            self._seen.move_to_end(order.client_id)
            while len(self._seen) > _KEEP_FINAL:
                self._seen.popitem(last=False)
            if symbol in self._spot:
                signed = delta if order.side is Side.BUY else -delta
                book = self._perp if futures else self._spot
                book[symbol] += signed
        if order.status in FINAL:
            return self._evaluate(symbol)
        return []

    # -- decisions -------------------------------------------------------------------------
    def _rules(self, symbol: str) -> tuple[SymbolRules, SymbolRules] | None:
        fut = self.ctx.futures_rules(symbol)
        if fut is None:
            return None
        return self.ctx.rules(symbol), fut

    def _working(self, symbol: str) -> bool:
        return bool(self.ctx.open_orders(symbol) or self.ctx.open_orders(FUTURES_PREFIX + symbol))

    def _evaluate(self, symbol: str) -> list[Intent]:
        rules = self._rules(symbol)
        st = self.ctx.market(symbol)
        if rules is None or st is None or st.bid is None or st.ask is None or st.mark is None:
            return []
        now = self.ctx.now
        if symbol in self._spot:
            self._take_closes(symbol, now)
        if self._working(symbol):
            return []
        if symbol not in self._spot:
            self._perp[symbol] = self.ctx.futures_position(symbol)
            closes = self.ctx.exchange_closes(symbol)
            self._close_seen[symbol] = closes[-1].seq if closes else 0   # already in the position
        # The spot leg as the ledger has it: net of commissions charged in the base asset
        # (Binance takes a BUY's fee from the coin bought unless BNB pays it), not the sum of
        # our orders' fills. What is left below the spot step is dust, not a naked position.
        self._spot[symbol] = self.ctx.inventory(rules[0].base_asset)
        imbalance = self._spot[symbol] + self._perp[symbol]
        if imbalance and not rules[0].round_qty(abs(imbalance)):
            imbalance = ZERO
        if not imbalance:
            self._hedged(symbol)
        if now < self._busy_until.get(symbol, 0.0):
            return []
        if imbalance:
            intents = self._legging(symbol, imbalance, rules, st, now)
            if intents is not None:
                self._busy_until[symbol] = now + self.cooldown_s
                return intents
        if self.ctx.is_stale(symbol):
            return []
        intents = self._pair(symbol, rules, st)
        if intents:
            self._busy_until[symbol] = now + self.cooldown_s
        return intents

    def _pair(self, symbol: str, rules: tuple[SymbolRules, SymbolRules], st: Any) -> list[Intent]:
        mid = (st.bid + st.ask) / 2
        premium = (st.mark - mid) / mid * _BPS
        spot, perp = self._spot[symbol], self._perp[symbol]
        why = f"mark {format_decimal(st.mark)} vs spot mid {format_decimal(mid)}: premium {premium:.1f} bps"
        # The carry's size is its perpetual leg (exact; the spot leg carries fee dust on top).
        if premium > self.entry_bps and -perp + self.qty <= self.max_position:
            qty = self._round(self.qty, rules)
            if not qty:
                return []
            self._phase[symbol] = "enter"
            reason = f"carry enter: {why} > {self.entry_bps}; spot {spot}, perp {perp}"
            # Spot up to the new perpetual size, net of the fee the buy pays in the base asset:
            # the dust it leaves (under one step) never accumulates across entries.
            spot_qty = self._gross_of_fee(symbol, max(ZERO, -perp + qty - spot), rules)
            return [self._spot_order(symbol, Side.BUY, spot_qty, st, reason),
                    self._perp_order(symbol, Side.SELL, qty, reason)]
        if premium < self.exit_bps and spot > 0 and perp < 0:
            qty = self._round(min(self.qty, spot, -perp), rules)
            if not qty:
                return []
            self._phase[symbol] = "exit"
            reason = f"carry exit: {why} < {self.exit_bps}; spot {spot}, perp {perp}"
            return [self._spot_order(symbol, Side.SELL, qty, st, reason),
                    self._perp_order(symbol, Side.BUY, qty, reason)]
        return []

    def _take_closes(self, symbol: str, now: float) -> None:
        """The exchange's closes of the perpetual leg not counted yet (module docstring)."""
        seen = self._close_seen.get(symbol, 0)
        for close in self.ctx.exchange_closes(symbol):
            if close.seq <= seen:
                continue
            seen = close.seq
            self._perp[symbol] += close.delta
            self._liquidated[symbol] = close
            self._unhedged_since[symbol] = now          # the bounded time counts from the close
            log.warning("%s perpetual leg closed by the exchange (%s, %s %s at %s): perp now %s, "
                        "spot %s: %s", symbol, close.kind, close.side.value, close.qty, close.price,
                        self._perp[symbol], self._spot[symbol], self.after_exchange_close(symbol, close))
        self._close_seen[symbol] = seen

    def _legging(self, symbol: str, imbalance: Decimal, rules: tuple[SymbolRules, SymbolRules], st: Any,
                 now: float) -> list[Intent] | None:
        """Intents that bring the legs back together, [] when only dust is left (flagged), or
        None when there is nothing to do."""
        since = self._unhedged_since.setdefault(symbol, now)
        spot, perp = self._spot[symbol], self._perp[symbol]
        enter = self._phase.get(symbol, "enter") == "enter"
        long_excess = imbalance > 0
        # (venue, side) that completes the lagging leg, and the one that takes back the leading leg.
        if long_excess:
            hedge, unwind = (("futures", Side.SELL), ("spot", Side.SELL)) if enter else \
                (("spot", Side.SELL), ("futures", Side.SELL))
        else:
            hedge, unwind = (("spot", Side.BUY), ("futures", Side.BUY)) if enter else \
                (("futures", Side.BUY), ("spot", Side.BUY))
        timed_out = now - since >= self.hedge_timeout_s
        order = [hedge, unwind] if self.on_leg_failure == "hedge" and not timed_out else [unwind, hedge]
        state = f"spot {spot}, perp {perp}, net {imbalance}"
        for venue, side in order:
            if venue == "spot" and side is Side.BUY:
                # Like an entry: the base-asset fee comes off what is bought, so a net-exact
                # buy would leave the legs short by the fee (below a step: never hedged).
                qty = self._round(self._gross_of_fee(symbol, abs(imbalance), rules), rules, venue="spot")
            else:
                qty = self._round(abs(imbalance), rules, venue=venue)
            if not qty or not self._tradable(symbol, venue, side, qty, rules, st):
                continue
            action = "hedging" if (venue, side) == hedge else "unwinding"
            self._flag(symbol, f"UNHEDGED {state}: {action} {side.value} {qty} on {venue}", now)
            reason = f"carry {action} unhedged {state} (since {now - since:.1f} s)"
            close = self._liquidated.get(symbol)
            if close is not None:
                tag = "liquidated-hedge" if action == "hedging" else "liquidated-unwind"
                what = "liquidated" if close.kind == "liquidation" else "ADL-closed"
                reason = (f"{tag}: perpetual leg {what} at {close.price} ({close.side.value} {close.qty}); "
                          f"{reason}")
            if venue == "spot":
                return [self._spot_order(symbol, side, qty, st, reason)]
            return [self._perp_order(symbol, side, qty, reason)]
        self._flag(symbol, f"UNHEDGED DUST {state}: below both venues' minimums", now)
        return None

    # -- helpers ---------------------------------------------------------------------------
    def _gross_of_fee(self, symbol: str, qty: Decimal, rules: tuple[SymbolRules, SymbolRules]) -> Decimal:
        """The spot quantity to buy so that ``qty`` is left once a commission in the base asset
        is taken (taker rate; the spot leg is an IOC), rounded up to the spot step."""
        fees = self.ctx.fees(symbol)
        rate = fees.rate(maker=False, buy=True) if fees is not None else ZERO
        lot = rules[0].lot_size
        if not rate or lot is None or not lot.step_size:
            return qty
        gross = qty / (1 - rate)
        steps = (gross / lot.step_size).to_integral_value(rounding=ROUND_CEILING)
        return steps * lot.step_size

    def _round(self, qty: Decimal, rules: tuple[SymbolRules, SymbolRules], venue: str = "both") -> Decimal:
        spot_rules, fut_rules = rules
        if venue in ("both", "futures"):
            qty = fut_rules.round_qty(qty, market=True)
        if venue in ("both", "spot"):
            qty = spot_rules.round_qty(qty)
        return qty

    def _tradable(self, symbol: str, venue: str, side: Side, qty: Decimal,
                  rules: tuple[SymbolRules, SymbolRules], st: Any) -> bool:
        if venue == "spot":
            return not rules[0].check(side, "LIMIT", self._spot_price(side, st, rules[0]), qty)
        return not rules[1].check(side, "MARKET", None, qty, ref_price=st.mark)

    def _spot_price(self, side: Side, st: Any, rules: SymbolRules) -> Decimal:
        slip = self.slippage_bps / _BPS
        raw = st.ask * (1 + slip) if side is Side.BUY else st.bid * (1 - slip)
        return rules.round_price(raw, side)

    def _spot_order(self, symbol: str, side: Side, qty: Decimal, st: Any, reason: str) -> Place:
        price = self._spot_price(side, st, self.ctx.rules(symbol))
        return Place(symbol, side, OrderType.LIMIT, qty, price, tif=TimeInForce.IOC, reason=reason)

    def _perp_order(self, symbol: str, side: Side, qty: Decimal, reason: str) -> Place:
        return Place(symbol, side, OrderType.MARKET, qty, reason=reason, venue="futures")

    def _flag(self, symbol: str, text: str, now: float) -> None:
        changed = self._flags.get(symbol, "").split(":")[0] != text.split(":")[0]
        self._flags[symbol] = text
        if changed or now - self._alarmed_at.get(symbol, -1e18) >= self.alarm_every_s:
            self._alarmed_at[symbol] = now
            log.warning("%s %s", symbol, text)

    def _hedged(self, symbol: str) -> None:
        if symbol in self._unhedged_since:
            since = self._unhedged_since.pop(symbol)
            log.warning("%s hedged again after %.1f s: spot %s, perp %s", symbol, self.ctx.now - since,
                        self._spot[symbol], self._perp[symbol])
        self._liquidated.pop(symbol, None)
        self._flags.pop(symbol, None)
        self._alarmed_at.pop(symbol, None)
