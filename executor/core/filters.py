"""A symbol's trading rules from exchangeInfo: rounding to them and checking against them.

``SymbolRules.from_exchange_info(symbol_dict)`` reads the filters the bot relies on:
PRICE_FILTER, LOT_SIZE, MARKET_LOT_SIZE, NOTIONAL, MIN_NOTIONAL (legacy),
PERCENT_PRICE_BY_SIDE, MAX_NUM_ORDERS, plus status, base/quote asset and order types.
As on Binance, a value of 0 disables that rule.

Rounding is never more aggressive than what was asked:

* ``round_price(price, BUY)`` rounds DOWN to the tick (never pay more);
  ``round_price(price, SELL)`` rounds UP (never sell for less);
* ``round_qty(qty)`` rounds DOWN to the step (never trade more).

Grids are anchored at the filter's minimum, exactly like Binance's check
``(value - min) % step == 0``. Rounding only fixes the grid; a value outside the min/max
range stays outside and ``check`` reports it.

``check(...)`` returns every violation, each naming the filter as Binance's
"Filter failure: X" would, so a refusal we make locally reads like the one Binance would
have made. Two rules are not exchange filters and use their own names: ``SYMBOL_STATUS``
(the symbol is not TRADING) and ``ORDER_TYPE`` (type not in the symbol's orderTypes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Any

from executor.core.money import ZERO, exact_mul, parse_decimal
from executor.core.orders import Side

__all__ = ["LotSize", "NotionalRule", "PercentPriceBySide", "PriceFilter", "SymbolRules", "Violation"]

# Order types that carry a limit price (checked by PRICE_FILTER, notional = price * qty).
PRICED_TYPES = frozenset({"LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"})
MARKET_TYPES = frozenset({"MARKET"})


@dataclass(frozen=True)
class Violation:
    filter: str  # "PRICE_FILTER", "LOT_SIZE", ... as in Binance's "Filter failure: X"
    detail: str

    @property
    def message(self) -> str:
        return f"Filter failure: {self.filter}" if self.filter not in _LOCAL_RULES else self.detail

    def __str__(self) -> str:
        return f"{self.filter}: {self.detail}"


_LOCAL_RULES = frozenset({"SYMBOL_STATUS", "ORDER_TYPE"})


def _on_grid(value: Decimal, anchor: Decimal, step: Decimal) -> bool:
    return step == 0 or (value - anchor) % step == 0


def _snap(value: Decimal, anchor: Decimal, step: Decimal, rounding: str) -> Decimal:
    if step == 0:
        return value
    # Extra precision so a long quotient (large value, tiny step) is not rounded first.
    with localcontext() as ctx:
        ctx.prec = 60
        steps = ((value - anchor) / step).to_integral_value(rounding=rounding)
        return anchor + steps * step


def _range_violations(what: str, value: Decimal, low: tuple[str, Decimal], high: tuple[str, Decimal],
                      grid: tuple[str, Decimal]) -> list[str]:
    """PRICE_FILTER and LOT_SIZE share one rule shape: bounds and a grid anchored at the
    minimum, each disabled by 0 as on Binance."""
    out = []
    if low[1] and value < low[1]:
        out.append(f"{what} {value} below {low[0]} {low[1]}")
    if high[1] and value > high[1]:
        out.append(f"{what} {value} above {high[0]} {high[1]}")
    if not _on_grid(value, low[1], grid[1]):
        out.append(f"{what} {value} not a multiple of {grid[0]} {grid[1]}")
    return out


@dataclass(frozen=True)
class PriceFilter:
    min_price: Decimal
    max_price: Decimal
    tick_size: Decimal

    def violations(self, price: Decimal) -> list[str]:
        return _range_violations("price", price, ("minPrice", self.min_price),
                                 ("maxPrice", self.max_price), ("tickSize", self.tick_size))


@dataclass(frozen=True)
class LotSize:
    min_qty: Decimal
    max_qty: Decimal
    step_size: Decimal

    def violations(self, qty: Decimal) -> list[str]:
        return _range_violations("quantity", qty, ("minQty", self.min_qty),
                                 ("maxQty", self.max_qty), ("stepSize", self.step_size))


@dataclass(frozen=True)
class NotionalRule:
    """NOTIONAL (min and max) or the legacy MIN_NOTIONAL (min only, ``max_notional`` 0)."""

    min_notional: Decimal
    max_notional: Decimal
    apply_min_to_market: bool
    apply_max_to_market: bool
    avg_price_mins: int

    def violations(self, notional: Decimal, market: bool) -> list[str]:
        out = []
        if self.min_notional and (not market or self.apply_min_to_market) and notional < self.min_notional:
            out.append(f"notional {notional} below minNotional {self.min_notional}")
        if self.max_notional and (not market or self.apply_max_to_market) and notional > self.max_notional:
            out.append(f"notional {notional} above maxNotional {self.max_notional}")
        return out


@dataclass(frozen=True)
class PercentPriceBySide:
    bid_up: Decimal
    bid_down: Decimal
    ask_up: Decimal
    ask_down: Decimal

    def violations(self, side: Side, price: Decimal, ref: Decimal) -> list[str]:
        up, down = (self.bid_up, self.bid_down) if side is Side.BUY else (self.ask_up, self.ask_down)
        out = []
        if up and price > exact_mul(ref, up):
            out.append(f"{side} price {price} above {up} x reference {ref}")
        if down and price < exact_mul(ref, down):
            out.append(f"{side} price {price} below {down} x reference {ref}")
        return out


def _filter_dec(f: Mapping[str, Any], key: str) -> Decimal:
    where = f"{f.get('filterType')}.{key}"
    value = parse_decimal(f.get(key, "0"), where)
    if value < 0:
        raise ValueError(f"{where}: must not be negative, got {value}")
    return value


def _filter_flag(f: Mapping[str, Any], key: str, default: bool) -> bool:
    value = f.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{f.get('filterType')}.{key}: expected true/false, got {value!r}")
    return value


def _filter_int(f: Mapping[str, Any], key: str) -> int:
    value = f.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{f.get('filterType')}.{key}: expected a non-negative integer, got {value!r}")
    return value


def _lot(f: Mapping[str, Any]) -> LotSize:
    return LotSize(_filter_dec(f, "minQty"), _filter_dec(f, "maxQty"), _filter_dec(f, "stepSize"))


def _parse_filters(filters: list[Mapping[str, Any]]) -> dict[str, Any]:
    """SymbolRules keyword arguments from the filters we use."""
    # Unknown filter types are ignored, as they must be: Binance adds new ones over time.
    by_type = {f["filterType"]: f for f in filters if isinstance(f.get("filterType"), str)}
    kw: dict[str, Any] = {}
    if f := by_type.get("PRICE_FILTER"):
        kw["price_filter"] = PriceFilter(
            _filter_dec(f, "minPrice"), _filter_dec(f, "maxPrice"), _filter_dec(f, "tickSize"))
    if f := by_type.get("LOT_SIZE"):
        kw["lot_size"] = _lot(f)
    if f := by_type.get("MARKET_LOT_SIZE"):
        kw["market_lot_size"] = _lot(f)
    if f := by_type.get("NOTIONAL"):
        kw["notional"] = NotionalRule(
            _filter_dec(f, "minNotional"), _filter_dec(f, "maxNotional"),
            _filter_flag(f, "applyMinToMarket", True), _filter_flag(f, "applyMaxToMarket", False),
            _filter_int(f, "avgPriceMins"))
    if f := by_type.get("MIN_NOTIONAL"):
        kw["min_notional"] = NotionalRule(
            _filter_dec(f, "minNotional"), ZERO, _filter_flag(f, "applyToMarket", True), False,
            _filter_int(f, "avgPriceMins"))
    if f := by_type.get("PERCENT_PRICE_BY_SIDE"):
        kw["percent_price_by_side"] = PercentPriceBySide(
            _filter_dec(f, "bidMultiplierUp"), _filter_dec(f, "bidMultiplierDown"),
            _filter_dec(f, "askMultiplierUp"), _filter_dec(f, "askMultiplierDown"))
    if f := by_type.get("MAX_NUM_ORDERS"):
        kw["max_num_orders"] = _filter_int(f, "maxNumOrders")
    return kw


@dataclass(frozen=True)
class SymbolRules:
    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    price_filter: PriceFilter | None = None
    lot_size: LotSize | None = None
    market_lot_size: LotSize | None = None
    notional: NotionalRule | None = None  # NOTIONAL
    min_notional: NotionalRule | None = None  # legacy MIN_NOTIONAL
    percent_price_by_side: PercentPriceBySide | None = None
    max_num_orders: int | None = None
    order_types: frozenset[str] = frozenset()  # empty: not restricted

    @classmethod
    def from_exchange_info(cls, data: Mapping[str, Any]) -> SymbolRules:
        """Build from one element of exchangeInfo's ``symbols``. ``ValueError`` names a bad field."""
        if not isinstance(data, Mapping):
            raise ValueError("exchangeInfo symbol: expected an object")
        for key in ("symbol", "status", "baseAsset", "quoteAsset"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ValueError(f"exchangeInfo symbol: missing or invalid {key!r}")
        filters = data.get("filters", [])
        if not isinstance(filters, list) or not all(isinstance(f, Mapping) for f in filters):
            raise ValueError(f"{data['symbol']}.filters: expected a list of objects")
        try:
            kw = _parse_filters(filters)
        except ValueError as exc:
            raise ValueError(f"{data['symbol']}.{exc}") from None
        types = data.get("orderTypes", [])
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise ValueError(f"{data['symbol']}.orderTypes: expected a list of strings")
        return cls(symbol=data["symbol"], status=data["status"], base_asset=data["baseAsset"],
                   quote_asset=data["quoteAsset"], order_types=frozenset(types), **kw)

    # --- rounding -------------------------------------------------------------------

    def round_price(self, price: Decimal, side: Side) -> Decimal:
        """Snap to the tick: BUY rounds down, SELL rounds up (never more aggressive)."""
        pf = self.price_filter
        if pf is None:
            return price
        # Side() so that a plain "BUY" string can never fall through to the SELL branch.
        rounding = ROUND_FLOOR if Side(side) is Side.BUY else ROUND_CEILING
        return _snap(price, pf.min_price, pf.tick_size, rounding)

    def round_qty(self, qty: Decimal, market: bool = False) -> Decimal:
        """Snap down to the step (LOT_SIZE, and MARKET_LOT_SIZE too when ``market``).

        Never negative: a quantity below the first grid point becomes 0, which ``check``
        then refuses.
        """
        lots = [x for x in (self.lot_size, self.market_lot_size if market else None) if x is not None]
        out = qty
        # Two grids at once: repeat until stable on both (terminates: each step only lowers).
        for _ in range(8):
            before = out
            for lot in lots:
                out = _snap(out, lot.min_qty, lot.step_size, ROUND_FLOOR)
            if out == before:
                break
        return max(out, ZERO)

    # --- checking -------------------------------------------------------------------

    def check(self, side: Side, order_type: str, price: Decimal | None, qty: Decimal,
              ref_price: Decimal | None = None, open_orders: int | None = None) -> list[Violation]:
        """All violations of this order against the symbol's rules (empty list: passes).

        ``price`` is required for priced types (LIMIT, LIMIT_MAKER, *_LIMIT) and ignored for
        MARKET. ``ref_price`` (Binance's average/reference price) values a MARKET order's
        notional and bounds PERCENT_PRICE_BY_SIDE; without it those checks are skipped,
        because they cannot be evaluated. ``open_orders`` (our open orders on this symbol,
        before this one) checks MAX_NUM_ORDERS when given.
        """
        side = Side(side)
        out: list[Violation] = []
        if self.status != "TRADING":
            out.append(Violation("SYMBOL_STATUS", f"{self.symbol} status is {self.status}, not TRADING"))
        if self.order_types and order_type not in self.order_types:
            out.append(Violation("ORDER_TYPE", f"{order_type} not allowed on {self.symbol}"))
        priced = order_type in PRICED_TYPES
        market = order_type in MARKET_TYPES
        if priced:
            if price is None or price <= 0:
                out.append(Violation("PRICE_FILTER", f"{order_type} needs a positive price, got {price}"))
                price = None
            elif self.price_filter is not None:
                out += [Violation("PRICE_FILTER", d) for d in self.price_filter.violations(price)]
        if qty <= 0:
            out.append(Violation("LOT_SIZE", f"quantity must be positive, got {qty}"))
        else:
            if self.lot_size is not None:
                out += [Violation("LOT_SIZE", d) for d in self.lot_size.violations(qty)]
            if market and self.market_lot_size is not None:
                out += [Violation("MARKET_LOT_SIZE", d) for d in self.market_lot_size.violations(qty)]
        value_price = price if priced else ref_price if market else None
        if value_price is not None and qty > 0:
            notional = exact_mul(value_price, qty)
            for name, rule in (("NOTIONAL", self.notional), ("MIN_NOTIONAL", self.min_notional)):
                if rule is not None:
                    out += [Violation(name, d) for d in rule.violations(notional, market)]
        if priced and price is not None and ref_price is not None and self.percent_price_by_side:
            out += [Violation("PERCENT_PRICE_BY_SIDE", d)
                    for d in self.percent_price_by_side.violations(side, price, ref_price)]
        if open_orders is not None and self.max_num_orders and open_orders + 1 > self.max_num_orders:
            out.append(Violation("MAX_NUM_ORDERS", f"{open_orders} open orders, limit {self.max_num_orders}"))
        return out
