"""The fee model: commission rates parsed from Binance's documented answer, summed the way
Binance's commission FAQ computes a fill's commission."""

from __future__ import annotations

from decimal import Decimal

import pytest

from executor.core.fees import FeeRates, parse_commission
from tests.fixtures import load

D = Decimal


def test_documented_example_sums_standard_tax_and_special() -> None:
    rates = parse_commission(load()["account_commission"])
    assert rates.symbol == "BTCUSDT"
    assert rates.maker == D("0.00000010") + D("0.00000112") + D("0.01000000")
    assert rates.taker == D("0.00000020") + D("0.00000114") + D("0.02000000")
    assert rates.seller == D("0.00000040") + D("0.00000116") + D("0.04000000")
    # A taker SELL pays (taker + seller) on the notional it receives.
    fee, asset = rates.fee(D("0.49975"), D("35000"), maker=False, buy=False)
    assert asset == "quote" and fee == D("0.49975") * D("35000") * (rates.taker + rates.seller)


def test_plain_rates_and_round_trip() -> None:
    rates = FeeRates("ETHUSDT", maker=D("0.0002"), taker=D("0.0004"))
    assert rates.rate_bps(maker=True, buy=True) == D("2")
    assert rates.round_trip_bps(maker=False) == D("8")
    assert rates.fee(D("2"), D("3000"), maker=True, buy=True) == (D("0.0004"), "base")


@pytest.mark.parametrize("payload, field", [
    ({"standardCommission": {"maker": "0.1"}}, "symbol"),
    ({"symbol": "X"}, "standardCommission"),
    ({"symbol": "X", "standardCommission": {"maker": 0.001}}, "standardCommission.maker"),
    ({"symbol": "X", "standardCommission": {"maker": "-0.1"}}, "negative"),
])
def test_bad_answers_are_refused_naming_the_field(payload: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        parse_commission(payload)
