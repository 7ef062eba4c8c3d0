"""Pre-send risk checks for USD-M futures orders (the perpetual leg of a hedged position).

``FuturesRiskChecker.check(request, view)`` answers ``Allowed`` or ``Refused`` for one futures
order (ledger symbol ``UM:BTCUSDT``), after rounding, before the order manager records and
sends it. The checks, in order:

* ``kill_switch``: the spot checker's kill-switch file exists (one switch stops both venues);
* ``order_sanity``: a positive quantity on a traded perpetual;
* ``stale_data``: the spot book or the mark is missing or older than ``stale_after_s``;
* ``leverage_cap``: the account's configured leverage above ``max_leverage``;
* ``futures_position``: |perp position + working orders on that side + this order| above
  ``max_position[asset]`` (an asset without a limit is refused: fail closed);
* ``liquidation_distance``: an order that adds to the perp position (|position| grows) while
  the mark is within ``min_liquidation_distance_pct`` % of the position's liquidation price
  (``view.liquidation(symbol)``: the exchange's positionRisk figure, ``risk.liquidation``), or
  while that price is not known for the current position (fail closed); reducing always passes;
* ``net_delta``: |spot inventory + perp position + working orders on that side + this order|
  above ``max_net_delta[asset]`` (no limit configured: not checked). Orders that bring the net
  delta closer to zero always pass, so an unhedged leg can always be hedged or unwound;
* ``gross_notional``: (|spot| + |perp|) x mark over all assets after this order above
  ``max_gross_notional`` (0: no limit); reducing orders always pass.

Cancels are always allowed. ``view`` gives the futures position (``position(ledger_symbol)``),
the spot inventory (``inventory(asset)``), the market (``market(ledger_symbol)`` is the
perpetual: ``mark``, with the spot book's bid/ask) and the futures rules.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from executor.config import FuturesConfig
from executor.core.intents import Cancel, OrderRequest
from executor.core.money import ZERO
from executor.core.orders import Side
from executor.risk.checks import ALLOWED, Decision, Refused, RiskChecker

__all__ = ["FuturesRiskChecker"]


class FuturesRiskChecker:
    """The futures checks for one run; ``spot`` lends its kill switch and staleness rule."""

    def __init__(self, cfg: FuturesConfig, spot: RiskChecker, *, assets: Callable[[str], str],
                 clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.spot = spot
        self.kill_switch = spot.kill_switch
        self._asset = assets          # ledger symbol -> base asset
        self._clock = clock

    def check(self, intent: Any, view: Any, *, replacing: str | None = None) -> Decision:
        if isinstance(intent, Cancel):
            return ALLOWED
        if not isinstance(intent, OrderRequest):
            return Refused(f"futures orders are checked after rounding, got {type(intent).__name__}",
                           "order_sanity")
        if self.kill_switch.is_engaged():
            return Refused(f"kill switch engaged ({self.kill_switch.reason()})", "kill_switch")
        if intent.quantity <= 0:
            return Refused(f"quantity must be positive, got {intent.quantity}", "order_sanity")
        st = view.market(intent.symbol)
        stale = float(self.spot.cfg.stale_after_s)
        now = self._clock()
        if st is None or st.mark is None or st.mid is None:
            return Refused(f"{intent.symbol}: no mark or book yet", "stale_data")
        if st.recv_mono is not None and now - st.recv_mono > stale:
            return Refused(f"{intent.symbol}: market data older than {stale:g} s", "stale_data")
        if self.cfg.leverage > self.cfg.max_leverage:
            return Refused(f"leverage {self.cfg.leverage} above the cap {self.cfg.max_leverage}",
                           "leverage_cap")
        asset = self._asset(intent.symbol)
        signed = intent.quantity if intent.side is Side.BUY else -intent.quantity
        position = view.position(intent.symbol)
        working = sum((o.remaining for o in view.open_orders(intent.symbol, intent.side)
                       if o.client_id != replacing and o.client_id != intent.client_order_id), ZERO)
        limit = self.cfg.max_position.get(asset)
        if limit is None:
            return Refused(f"no futures.max_position for {asset} (fail closed)", "futures_position")
        worst = abs(position + signed + (working if signed > 0 else -working))
        if worst > limit and worst > abs(position):
            return Refused(f"|{asset} perp position| would reach {worst} > {limit}", "futures_position")
        refused = self._liquidation_distance(intent, view, position, signed, st.mark, asset)
        if refused is not None:
            return refused
        spot = view.inventory(asset)
        # Working orders on this side count as filled (as for the position cap): a perpetual
        # sent a moment ago, not filled yet, must not leave room for a second one.
        pending = working if signed > 0 else -working
        delta_before, delta_after = spot + position + pending, spot + position + pending + signed
        delta_limit = self.cfg.max_net_delta.get(asset)
        growing = abs(delta_after) > abs(delta_before)
        if delta_limit is not None and abs(delta_after) > delta_limit and growing:
            return Refused(f"net {asset} delta would reach {delta_after} "
                           f"(spot {spot}, perp {position + signed})"
                           f" > {delta_limit}", "net_delta")
        gross_limit = self.cfg.max_gross_notional
        if gross_limit > 0 and abs(position + signed) > abs(position):
            gross = view.gross_notional() + intent.quantity * st.mark
            if gross > gross_limit:
                return Refused(f"gross notional would reach {gross.quantize(Decimal('0.01'))} "
                               f"> {gross_limit}",
                               "gross_notional")
        return ALLOWED

    def _liquidation_distance(self, intent: OrderRequest, view: Any, position: Decimal, signed: Decimal,
                              mark: Decimal, asset: str) -> Refused | None:
        pct = self.cfg.min_liquidation_distance_pct
        if pct <= 0 or not position or abs(position + signed) <= abs(position):
            return None          # no check, flat (no liquidation price yet) or not adding
        known, liquidation = view.liquidation(intent.symbol)
        if not known:
            return Refused(f"{intent.symbol}: liquidation price not known for the current position "
                           f"{position} (positionRisk read pending); not adding", "liquidation_distance")
        if liquidation is None:
            return None
        distance = abs(mark - liquidation) / mark * 100
        if distance <= pct:
            return Refused(f"mark {mark} is {distance.quantize(Decimal('0.01'))}% from the {asset} perp's "
                           f"liquidation price {liquidation} (within {pct}%); not adding",
                           "liquidation_distance")
        return None
