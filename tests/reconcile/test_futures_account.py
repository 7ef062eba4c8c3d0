"""The futures account's reconciliation: a REST snapshot never overwrites a newer stream
value (the same event-time rule as spot balances), an older differing one is a discrepancy
the exchange wins, and money in the account is parsed strictly.

The wire test reads the embedded exchange's ``GET /fapi/v2/account`` through the real
gateway and python-binance client."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from executor.exchange.binance_events import parse_user_event
from executor.exchange.binance_reports import USDM, futures_account_snapshot, user_event_report
from executor.exchange.client import make_client
from executor.exchange.rest import RestGateway
from executor.persistence.store import Store
from executor.reconcile.futures_account import FuturesAccountReconciler, Observed, compare_futures_account
from tests.conftest import SimHandle

D = Decimal


def account(wallet: str, at: int, pos: str = "0", pos_at: int = 0) -> Any:
    """A ``GET /fapi/v2/account`` answer, as the adapter reports it."""
    return futures_account_snapshot(
        {"assets": [{"asset": "USDT", "walletBalance": wallet, "updateTime": at}],
         "positions": [{"symbol": "BTCUSDT", "positionAmt": pos, "updateTime": pos_at}]})


def test_newer_stream_value_is_kept_and_not_reported() -> None:
    out = compare_futures_account(account("100", at=1_000), {"USDT": Observed(D("90"), 2_000)}, {})
    assert out.wallet["USDT"] == Observed(D("90"), 2_000)
    assert out.discrepancies == [] and out.kept_newer == 1


def test_older_differing_stream_value_is_a_discrepancy_and_the_exchange_wins() -> None:
    out = compare_futures_account(account("100", at=3_000, pos="0.5", pos_at=3_000),
                                  {"USDT": Observed(D("90"), 2_000)}, {"BTCUSDT": Observed(D("0.4"), 2_500)})
    assert out.wallet["USDT"].value == D("100") and out.positions["BTCUSDT"].value == D("0.5")
    assert [d["kind"] for d in out.discrepancies] == ["futures_wallet", "futures_position"]


def test_float_money_in_the_account_is_refused() -> None:
    with pytest.raises(ValueError, match="float"):
        bad = {"assets": [{"asset": "USDT", "walletBalance": 0.1, "updateTime": 1}]}
        compare_futures_account(futures_account_snapshot(bad), {}, {})


@given(stream_ms=st.integers(0, 10_000), snap_ms=st.integers(0, 10_000),
       stream=st.decimals("-1000", "1000", places=4), snap=st.decimals("-1000", "1000", places=4))
def test_the_newer_observation_always_wins(stream_ms: int, snap_ms: int, stream: D, snap: D) -> None:
    out = compare_futures_account(account(str(snap), at=snap_ms), {"USDT": Observed(stream, stream_ms)}, {})
    want = stream if stream_ms > snap_ms else snap
    assert out.wallet["USDT"].value == want
    assert bool(out.discrepancies) == (stream_ms <= snap_ms and stream != snap)


def account_update(wallet: str, event_ms: int) -> Any:
    raw = {"e": "ACCOUNT_UPDATE", "E": event_ms, "T": event_ms,
           "a": {"m": "DEPOSIT", "B": [{"a": "USDT", "wb": wallet, "cw": wallet, "bc": "0"}], "P": []}}
    return user_event_report(parse_user_event(raw))


async def discrepancies(store: Store) -> list[Any]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT discrepancies FROM reconciliation_runs WHERE reason LIKE 'futures_%' ORDER BY id"))).all()
    return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]


async def test_snapshot_older_than_a_stream_event_does_not_overwrite_it(sim: SimHandle, store: Store) -> None:
    client = make_client(sim.endpoints, sim.creds, timeout_s=5.0)
    gateway = RestGateway(client)
    await gateway.start()
    try:
        recon = FuturesAccountReconciler(store, gateway, translate=USDM.account)
        await recon.gap_fill("start")
        truth = recon.wallet["USDT"].value
        # The stream reports a wallet change the exchange's snapshot does not know yet.
        newer = sim.exchange.clock.now_ms() + 60_000
        recon.note_report(account_update("12345.6", newer))
        await recon.gap_fill("periodic")
        assert recon.wallet["USDT"] == Observed(D("12345.6"), newer)
        # An older stream value that differs is a discrepancy; the exchange's value wins.
        recon.note_report(account_update("1", 1))  # older than what is held: ignored
        assert recon.wallet["USDT"].value == D("12345.6")
        recon.wallet["USDT"] = Observed(D("1"), 1)
        await recon.gap_fill("periodic")
        assert recon.wallet["USDT"].value == truth
        found = await discrepancies(store)
        assert found[:2] == [[], []]
        want = {"kind": "futures_wallet", "asset": "USDT", "stream": "1", "exchange": str(truth)}
        assert found[2] == [want]
    finally:
        await gateway.close()
