"""USDⓈ-M futures symbol rules: futures exchangeInfo filters read into ``SymbolRules``.

Futures exchangeInfo names two filters differently from spot: ``MIN_NOTIONAL`` carries
``notional`` (not ``minNotional``) and applies to every order, and ``PERCENT_PRICE`` carries
one ``multiplierUp``/``multiplierDown`` pair for both sides (against the mark price).
``futures_symbol_rules`` rewrites those two into their spot shapes and builds the same
``SymbolRules`` the spot path uses, so rounding and checking are one piece of code.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executor.core.filters import SymbolRules

__all__ = ["futures_symbol_rules"]


def _spot_shaped(f: Mapping[str, Any]) -> Mapping[str, Any]:
    kind = f.get("filterType")
    if kind == "MIN_NOTIONAL" and "notional" in f:
        return {"filterType": "MIN_NOTIONAL", "minNotional": f["notional"], "applyToMarket": True,
                "avgPriceMins": 0}
    if kind == "PERCENT_PRICE":
        up, down = f.get("multiplierUp", "0"), f.get("multiplierDown", "0")
        return {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": up, "bidMultiplierDown": down,
                "askMultiplierUp": up, "askMultiplierDown": down}
    if kind == "MAX_NUM_ORDERS" and "limit" in f:
        return {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": f["limit"]}
    return f


def futures_symbol_rules(data: Mapping[str, Any]) -> SymbolRules:
    """``SymbolRules`` of one element of futures exchangeInfo's ``symbols`` (ValueError names a
    bad field). The contract is tradable when its ``status`` is TRADING, as on spot."""
    filters = data.get("filters", [])
    if not isinstance(filters, list):
        raise ValueError(f"{data.get('symbol')}.filters: expected a list of objects")
    shaped = dict(data)
    shaped["filters"] = [_spot_shaped(f) if isinstance(f, Mapping) else f for f in filters]
    return SymbolRules.from_exchange_info(shaped)
