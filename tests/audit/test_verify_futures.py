"""``audit verify``'s futures part (``executor.audit.verify_futures``): the USDⓈ-M wallet
re-derived from the income rows (realized PnL + funding - commissions + transfers) against
every recorded wallet balance, and each futures fill's commission against its COMMISSION
income, on ledgers written through the real Store."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

from executor.audit.query import AuditDB, Scope
from executor.audit.verify import render_verify, verify
from executor.persistence.store import Store

D = Decimal
T0 = 1_785_571_000_000


def _update(reason: str, t: int, wallet: str) -> dict[str, Any]:
    payload = {"e": "ACCOUNT_UPDATE", "E": t, "T": t, "a": {"m": reason, "B": [{"a": "USDT", "wb": wallet}]}}
    return {"payload": payload, "event_ms": t, "transaction_ms": t, "reason": reason,
            "balances": [{"asset": "USDT", "wallet_balance": D(wallet), "cross_wallet_balance": D(wallet),
                          "balance_change": D(0)}], "positions": []}


def _income(tran: int, kind: str, amount: str, t: int, trade: str | None = None) -> dict[str, Any]:
    return {"tran_id": tran, "symbol": "UM:BTCUSDT" if kind != "TRANSFER" else "", "income_type": kind,
            "amount": D(amount), "asset": "USDT", "time_ms": t, "trade_id": trade, "info": kind}


async def _ledger(path: Path, *, drop_tran: int | None = None, wrong_fee: bool = False) -> Path:
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    try:
        asset = {"asset": "USDT", "walletBalance": "1000.00000000", "updateTime": T0}
        snapshot = {"source": "GET /fapi/v2/account", "assets": [asset], "positions": []}
        await store.add_futures_update(snapshot, event_ms=T0 + 999_999, reason="REST_SNAPSHOT",
                                       balances=[{"asset": "USDT", "wallet_balance": D(1000),
                                                  "cross_wallet_balance": None, "balance_change": None}],
                                       positions=[])
        income = [
            _income(1, "TRANSFER", "1000", T0),                             # before: in the opening
            _income(2, "COMMISSION", "-0.24", T0 + 10, "71"),                           # opening trade
            _income(3, "COMMISSION", "-0.12", T0 + 10, "72"),                           # same ms: two trades
            _income(4, "FUNDING_FEE", "0.30", T0 + 50),
            _income(5, "REALIZED_PNL", "2.50", T0 + 90, "73"),
            _income(6, "COMMISSION", "-0.25", T0 + 90, "73"),
            _income(7, "TRANSFER", "-100", T0 + 120),
        ]
        await store.add_futures_income(r for r in income if r["tran_id"] != drop_tran)
        for reason, t, wb in (("ORDER", T0 + 10, "999.76000000"),       # after the first trade of the ms
                              ("ORDER", T0 + 10, "999.64000000"),
                              ("FUNDING_FEE", T0 + 50, "999.94000000"),
                              ("ORDER", T0 + 90, "1002.19000000"),
                              ("WITHDRAW", T0 + 120, "902.19000000")):
            u = _update(reason, t, wb)
            await store.add_futures_update(u.pop("payload"), **u)
        for trade, fee, t in (("71", "0.24", T0 + 10), ("72", "0.12", T0 + 10), ("73", "0.25", T0 + 90)):
            await store.add_fill("UM:BTCUSDT", int(trade), D(60000), D("0.01"), "stream",
                                 commission=D("0.26") if wrong_fee and trade == "73" else D(fee),
                                 commission_asset="USDT", trade_ms=t, side="SELL")
    finally:
        await store.close()
    return path


def _verify(path: Path) -> Any:
    with AuditDB(path) as db:
        return verify(db, Scope())


async def test_clean_ledger_agrees(empty_ledger: Path, tmp_path: Path) -> None:
    path = await _ledger(Path(shutil.copyfile(empty_ledger, tmp_path / "l.db")))
    res = _verify(path)
    assert res.ok, render_verify(res)
    assert res.derived["UM:USDT"] == D("902.19")
    assert any("futures wallet: 5 recorded balances re-derived from 7 income rows; 3 futures fills" in n
               for n in res.notes)


async def test_a_missing_funding_row_is_reported_once(empty_ledger: Path, tmp_path: Path) -> None:
    path = await _ledger(Path(shutil.copyfile(empty_ledger, tmp_path / "l.db")), drop_tran=4)
    res = _verify(path)
    assert not res.ok
    (diff,) = res.differences
    assert (diff.asset, diff.kind, diff.at_ms) == ("UM:USDT", "FUNDING_FEE", T0 + 50)
    assert diff.difference == D("0.30")
    assert "futures_account_updates #" in str(diff) and "futures income" in render_verify(res)


async def test_a_fill_commission_differing_from_its_income(empty_ledger: Path, tmp_path: Path) -> None:
    path = await _ledger(Path(shutil.copyfile(empty_ledger, tmp_path / "l.db")), wrong_fee=True)
    res = _verify(path)
    (diff,) = res.differences
    assert diff.asset == "UM:BTCUSDT trade 73" and diff.difference == D("0.01")
