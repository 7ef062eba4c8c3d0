"""Candles in market state: Binance's documented kline payload parses exactly, updates of the
open candle replace it, a closed candle is final, older candles are dropped, and the view
refuses intervals the strategy did not ask for."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from executor.config import ConfigError
from executor.exchange.market_stream import MalformedFrame, parse_kline
from executor.market.state import APPLIED, DROPPED, MarketState
from executor.strategy.base import Strategy, StrategyContext
from executor.strategy.loader import resolve_strategy_class
from tests.fixtures import load

KLINE = load()["stream_kline"]


def frame(t: int, n: int, close: str, closed: bool = False, e: int = 1) -> dict[str, object]:
    f = copy.deepcopy(KLINE)
    f["E"] = e
    f["k"].update({"t": t, "T": t + 59_999, "n": n, "c": close, "x": closed})
    return f


def apply(state: MarketState, f: dict[str, object]) -> int:
    return state.apply_kline(*parse_kline(f), 0.0, 0.0)


def test_documented_kline_parses_to_exact_values() -> None:
    symbol, event_ms, interval, c = parse_kline(KLINE)
    assert (symbol, event_ms, interval) == ("BNBBTC", 1672515782136, "1m")
    assert (c.open, c.high, c.low, c.close) == (Decimal("0.0010"), Decimal("0.0025"), Decimal("0.0015"),
                                                Decimal("0.0020"))
    assert (c.volume, c.quote_volume, c.trades, c.closed) == (Decimal("1000"), Decimal("1.0000"), 100, False)


@pytest.mark.parametrize("breaks", [lambda f: f["k"].pop("c"), lambda f: f["k"].update(o=0.001),
                                    lambda f: f.update(E="x")])
def test_malformed_klines_are_refused(breaks: object) -> None:
    f = copy.deepcopy(KLINE)
    breaks(f)   # type: ignore[operator]
    with pytest.raises(MalformedFrame):
        parse_kline(f)


def test_open_candle_updates_then_closes_and_history_is_kept() -> None:
    state = MarketState(["BNBBTC"])
    assert apply(state, frame(0, 1, "1")) == APPLIED
    assert apply(state, frame(0, 3, "2")) == APPLIED
    assert apply(state, frame(0, 4, "3", closed=True)) == APPLIED
    assert apply(state, frame(0, 5, "9")) == DROPPED            # a closed candle is final
    assert apply(state, frame(60_000, 1, "4")) == APPLIED
    assert apply(state, frame(0, 9, "9")) == DROPPED            # older than the newest
    rows = state.candles("BNBBTC", "1m", 5)
    assert [(c.open_time, c.close, c.closed) for c in rows] == [(0, Decimal("3"), True),
                                                                 (60_000, Decimal("4"), False)]
    assert state.candles("BNBBTC", "1m", 1) == rows[-1:]


def test_view_candles_only_for_streamed_intervals() -> None:
    state = MarketState(["BNBBTC"])
    state.track_candles(["1m"])
    apply(state, frame(0, 1, "1"))
    view = StrategyContext(state, {}, list, {})
    assert [c.close for c in view.candles("BNBBTC", "1m", 3)] == [Decimal("1")]
    with pytest.raises(ValueError, match="candle_intervals"):
        view.candles("BNBBTC", "5m", 3)
    assert view.fees("BNBBTC") is None


class _BadCandles(Strategy):
    candle_intervals = ("1m", "2m")


def test_a_strategy_asking_for_an_interval_binance_lacks_stops_at_start() -> None:
    with pytest.raises(ConfigError, match=r"candle_intervals has '2m'"):
        resolve_strategy_class("tests.market.test_candles:_BadCandles")
