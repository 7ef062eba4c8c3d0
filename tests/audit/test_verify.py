"""``audit verify`` on the scenario: clean, then with injected discrepancies."""

from __future__ import annotations

from decimal import Decimal as D

from executor.audit.query import AuditDB, Scope
from executor.audit.verify import render_verify, verify
from tests.audit.scenario import T0, Built, tamper


def _verify(built: Built, scope: Scope | None = None):
    with AuditDB(built.path) as db:
        return verify(db, scope or Scope())


def _event_id(built: Built, asset: str, event_ms: int, kind: str = "outboundAccountPosition") -> int:
    with AuditDB(built.path) as db:
        row = db.conn.execute(
            "SELECT id FROM balance_events WHERE asset = ? AND event_ms = ? AND kind = ?",
            (asset, event_ms, kind),
        ).fetchone()
    return row[0]


async def test_clean_ledger_verifies(scenario: Built) -> None:
    res = _verify(scenario)
    assert res.ok, render_verify(res)
    assert res.opening == {"BNB": D("1"), "BTC": D("1"), "USDT": D("1000")}
    # 1000 - 228 - 0.1 + 260 + 50 (deposit); 1 + 2 - 1.5 - 0.002 - 0.2; 1 - 0.0013
    assert res.derived == {"BNB": D("0.9987"), "BTC": D("1.298"), "USDT": D("1081.9")}
    assert res.fills == 5 and res.balance_updates == 1
    # 15 stream rows (2+3+3+2+3+1+1) + 3 closing snapshot rows + 3 balances-table rows
    assert res.checked == 21
    assert res.last_snapshot_ok is True
    text = render_verify(res)
    assert text.startswith("OK:") and text.count("\n") == 1


async def test_changed_position_row_is_named(scenario: Built) -> None:
    bad = _event_id(scenario, "BTC", T0 + 3080)
    tamper(scenario.path, "UPDATE balance_events SET free = '1.5' WHERE id = ?", (bad,))
    res = _verify(scenario)
    assert not res.ok
    # The derivation continues from the recorded 1.5, so the next BTC row (1.098 + 0.2 = 1.298
    # against 1.5 - 0.2 = 1.3) differs too: both ends of the bad row are reported.
    assert len(res.differences) == 2
    first = res.differences[0]
    assert first.row == f"balance_events #{bad}"
    assert (first.asset, first.expected, first.recorded) == ("BTC", D("1.498"), D("1.5"))
    assert first.fill_ids == [4]  # fill #4 (C's SELL) is the only BTC change since the last agreeing row
    text = render_verify(res)
    assert text.startswith("MISMATCH") and f"balance_events #{bad}" in text and "#4" in text


async def test_missing_fill_shows_as_unexplained_change(scenario: Built) -> None:
    # Drop D's fill: the ledger's balances then move without a fill explaining it.
    tamper(scenario.path, "DELETE FROM fills WHERE trade_id = 5")
    res = _verify(scenario)
    assert not res.ok
    rows = {(d.asset, d.row) for d in res.differences}
    btc_row = _event_id(scenario, "BTC", T0 + 4035)
    assert ("BTC", f"balance_events #{btc_row}") in rows
    d = next(d for d in res.differences if d.row == f"balance_events #{btc_row}")
    assert d.expected == D("1.498") and d.recorded == D("1.298") and d.difference == D("-0.2")


async def test_closing_snapshot_disagreeing_is_reported(scenario: Built) -> None:
    snap = _event_id(scenario, "USDT", T0 + 5000, kind="rest_snapshot")
    tamper(scenario.path, "UPDATE balance_events SET locked = '1' WHERE id = ?", (snap,))
    res = _verify(scenario)
    # The snapshot row, then the balances table that still holds the true value.
    assert [d.row for d in res.differences] == [f"balance_events #{snap}", "balances[USDT]"]
    assert res.last_snapshot_ok is False
    assert "DIFFERS" in render_verify(res)


async def test_balances_table_is_checked(scenario: Built) -> None:
    tamper(scenario.path, "UPDATE balances SET free = '0.5' WHERE asset = 'BNB'")
    res = _verify(scenario)
    assert [d.row for d in res.differences] == ["balances[BNB]"]


async def test_run_scope(scenario: Built) -> None:
    assert _verify(scenario, Scope(run_id=scenario.run_id)).ok
    res = _verify(scenario, Scope(run_id=999))
    assert res.ok and res.checked == 0 and res.fills == 0


def _insert_position(built: Built, asset: str, free: str, locked: str, at_ms: int, ref: str) -> None:
    tamper(
        built.path,
        "INSERT INTO balance_events (dedupe_key, kind, asset, free, locked, source, event_ref, event_ms, "
        "received_ms, run_id) VALUES (?, 'outboundAccountPosition', ?, ?, ?, 'stream', ?, ?, ?, 1)",
        (f"test:{ref}:{asset}", asset, free, locked, ref, at_ms, at_ms),
    )


async def test_same_millisecond_lock_before_fill_is_explained(scenario: Built) -> None:
    # Order A's lock (before its fill, same millisecond as the fill): USDT 1000 total, 100.1 locked.
    _insert_position(scenario, "USDT", "899.9", "100.1", T0 + 1015, "lock")
    assert _verify(scenario).ok
    # A value that is neither before nor after that millisecond's fill is not explained.
    _insert_position(scenario, "USDT", "950", "0", T0 + 1015, "odd")
    res = _verify(scenario)
    # (and, continuing from the recorded 950, the next USDT row is reported as well)
    assert [(d.asset, d.recorded) for d in res.differences] == [("USDT", D("950")), ("USDT", D("848.7"))]


async def test_same_millisecond_fills_of_two_symbols_in_arrival_order(tmp_path) -> None:
    """Two fills of one millisecond on different symbols (trade ids are per symbol, so they say
    nothing of the order between them): the balance sent between them is explained, applying
    them in the order the ledger received them (two bots on one account make this common)."""
    from executor.persistence.store import Store

    t0 = 1_800_000_000_000
    url = f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    store = await Store.open(url)
    try:
        await store.start_run("t", "sim", "h", at_ms=t0)
        await store.set_balances([("USDT", "1000", "0"), ("BTC", "0", "0"), ("ETH", "0", "0")],
                                 "rest_snapshot", "open", event_ms=t0, kind="rest_snapshot", force=True)
        # ETH's fill reached the ledger first although its trade id is the larger number.
        await store.add_fill("ETHUSDT", 900, "1000", "0.05", "stream", commission="0",
                             commission_asset="USDT", trade_ms=t0 + 5, side="BUY", received_ms=t0 + 6)
        await store.set_balances([("USDT", "950", "0"), ("ETH", "0.05", "0")], "stream", "after eth",
                                 event_ms=t0 + 5, kind="outboundAccountPosition")
        await store.add_fill("BTCUSDT", 5, "10000", "0.01", "stream", commission="0", commission_asset="USDT",
                             trade_ms=t0 + 5, side="BUY", received_ms=t0 + 6)
        await store.set_balances([("USDT", "850", "0"), ("BTC", "0.01", "0")], "stream", "after btc",
                                 event_ms=t0 + 5, kind="outboundAccountPosition")
        await store.set_balances([("USDT", "850", "0"), ("BTC", "0.01", "0"), ("ETH", "0.05", "0")],
                                 "rest_snapshot", "close", event_ms=t0 + 10, kind="rest_snapshot", force=True)
    finally:
        await store.close()
    with AuditDB(tmp_path / "l.db") as db:
        res = verify(db, Scope())
        assert res.ok, render_verify(res)
        assert res.fills == 2 and res.checked >= 3
        from executor.audit.verify import verify_reference

        assert verify_reference(db, Scope()).ok
