"""The futures risk checks and the venue router, on hand-made views (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from executor.config import FuturesConfig, RiskConfig
from executor.core.intents import Cancel, OrderRequest, OrderType, Place
from executor.core.orders import Side
from executor.orders.venues import PerpState, VenueRouter
from executor.risk.checks import ALLOWED, Refused, RiskChecker
from executor.risk.futures import FuturesRiskChecker

D = Decimal
NOW = 1000.0
ZERO = Decimal(0)
MARK = Decimal(60000)


@dataclass
class View:
    spot: Decimal = ZERO
    perp: Decimal = ZERO
    gross: Decimal = ZERO
    mark: Decimal | None = MARK
    recv: float | None = NOW
    orders: list[Any] = field(default_factory=list)
    liq: tuple[bool, Decimal | None] = (True, None)

    def liquidation(self, symbol: str) -> tuple[bool, Decimal | None]:
        return self.liq

    def market(self, symbol: str) -> PerpState:
        return PerpState(symbol, self.mark, D(59990), D(60010), self.recv, self.recv)

    def inventory(self, asset: str) -> Decimal:
        return self.spot

    def position(self, symbol: str) -> Decimal:
        return self.perp

    def open_orders(self, symbol: str | None = None, side: Side | None = None) -> list[Any]:
        return [o for o in self.orders if side in (None, o.side)]

    def gross_notional(self) -> Decimal:
        return self.gross


def checker(tmp_path: Path, **over: Any) -> FuturesRiskChecker:
    spot = RiskChecker(RiskConfig(max_order_notional=D(500), max_open_orders=8, max_orders_per_minute=100,
                                  price_band_bps=D(150), stale_after_s=D(5),
                                  kill_switch_file=str(tmp_path / "KILL"), max_position={"BTC": D("0.05")}))
    cfg = FuturesConfig(trade=True, leverage=2, max_leverage=5, max_position={"BTC": D("0.01")},
                        max_net_delta={"BTC": D("0.005")}, max_gross_notional=D(2000))
    for key, value in over.items():
        cfg = FuturesConfig(**{**cfg.__dict__, key: value})
    return FuturesRiskChecker(cfg, spot, assets=lambda s: "BTC", clock=lambda: NOW)


def order(side: Side, qty: str) -> OrderRequest:
    return OrderRequest("bx-1-o1", "UM:BTCUSDT", side, OrderType.MARKET, D(qty), None, None)


def check_of(r: Any) -> str:
    return r.check if isinstance(r, Refused) else "allowed"


def test_position_net_delta_gross_leverage_stale_and_kill(tmp_path: Path) -> None:
    risk = checker(tmp_path)
    hedge = View(spot=D("0.004"))
    assert risk.check(order(Side.SELL, "0.004"), hedge) is ALLOWED            # the hedge of a spot leg
    assert check_of(risk.check(order(Side.SELL, "0.011"), View(spot=D("0.011")))) == "futures_position"
    assert check_of(risk.check(order(Side.SELL, "0.006"), View())) == "net_delta"   # naked short
    # a hedge already working (sent, not filled) counts: a second sell of it would be naked
    working = [SimpleNamespace(side=Side.SELL, remaining=D("0.004"), client_id="bx-1-o0")]
    assert check_of(risk.check(order(Side.SELL, "0.006"), View(spot=D("0.004"), orders=working))) == \
        "net_delta"
    # closer to flat always passes, even beyond the net-delta limit
    assert risk.check(order(Side.BUY, "0.002"), View(spot=D(0), perp=D("-0.009"))) is ALLOWED
    assert check_of(risk.check(order(Side.SELL, "0.004"), View(spot=D("0.004"), gross=D(1900)))) == \
        "gross_notional"
    stale = View(spot=D("0.004"), recv=NOW - 10)
    assert check_of(risk.check(order(Side.SELL, "0.004"), stale)) == "stale_data"
    assert check_of(checker(tmp_path, leverage=10).check(order(Side.SELL, "0.001"), hedge)) == "leverage_cap"
    assert check_of(checker(tmp_path, max_position={}).check(order(Side.SELL, "0.001"), hedge)) == \
        "futures_position"
    (tmp_path / "KILL").write_text("stop\n")
    assert check_of(risk.check(order(Side.SELL, "0.001"), hedge)) == "kill_switch"
    assert risk.check(Cancel("x"), hedge) is ALLOWED


@dataclass
class FakeManager:
    tracker: set[str] = field(default_factory=set)
    got: list[Any] = field(default_factory=list)
    accepting: bool = True
    on_sending: Any = None

    def submit(self, intent: Any) -> Any:
        self.got.append(intent)
        return ALLOWED


def test_router_sends_futures_places_and_their_cancels_to_futures() -> None:
    spot, fut = FakeManager(), FakeManager(tracker={"bx-f"})
    router = VenueRouter(spot, fut)
    router.submit(Place("BTCUSDT", Side.SELL, OrderType.MARKET, D("0.004"), venue="futures"))
    router.submit(Place("BTCUSDT", Side.BUY, OrderType.MARKET, D("0.004")))
    router.submit(Cancel("bx-f"))
    router.submit(Cancel("bx-s"))
    assert [getattr(i, "symbol", None) for i in fut.got] == ["UM:BTCUSDT", None]
    names = [getattr(i, "symbol", getattr(i, "client_order_id", None)) for i in spot.got]
    assert names == ["BTCUSDT", "bx-s"]
    router.accepting = False
    assert not spot.accepting and not fut.accepting
    router.on_sending = print
    assert spot.on_sending is print and fut.on_sending is None
