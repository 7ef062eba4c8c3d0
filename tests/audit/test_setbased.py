"""The set-based report (``executor.audit.setbased``) gives exactly the pure fold's report, on
SQLite and on PostgreSQL, for random ledgers: shorts and flips, fees in quote, base, BNB (with
and without a price to value them), fills without a side or an order, external orders,
every outcome, money written with and without Binance's 8 places; whole ledger and scopes.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.audit import setbased
from executor.audit.query import AuditDB, Scope
from executor.audit.report import AuditReport, Pairs, PriceSeries, build_report
from executor.audit.setbased import set_based_fold
from executor.figures import positions
from executor.persistence.copy import copy_ledger
from tests.audit.scenario import Built
from tests.audit.test_checkpoint import FINAL, SYMBOLS, T0, Ledger
from tests.audit.test_verify_sql import _bench
from tests.ledger_backends import PgDatabases, commit_elsewhere, needs_pg

PRICES = ["99", "100", "101.5", "98.25", "100.00000000", "99.12345678", "0.5"]

_fill = st.tuples(
    st.integers(0, 40_000),  # trade time offset
    st.sampled_from(PRICES),
    st.integers(0, 3),  # fee kind: quote, base, BNB, none
    st.sampled_from([True, False, None]),
    st.integers(0, 0),
)
_order = st.tuples(
    st.sampled_from(SYMBOLS),
    st.sampled_from(["BUY", "SELL"]),
    st.integers(0, 30_000),
    st.sampled_from([True, False, "bid", "ask"]),  # decision quotes known: both, none, one
    st.integers(0, 9),  # 0: external
    st.sampled_from((*FINAL, "NEW")),
    st.integers(0, 0),
    st.lists(_fill, max_size=4),
)


def _write(path: Path, orders: list, orphans: list, runs: int, bnb_price: bool) -> None:
    lg = Ledger(path)
    for r in range(1, runs + 1):
        lg.run(r, T0 + (r - 1) * 15_000, stopped=r < runs)
    for oid, (sym, side, t, quotes, ext, status, _at, fills) in enumerate(orders, start=1):
        if sym == "BNBUSDT" and not bnb_price:
            sym = "ETHUSDT"
        rid = min(runs, 1 + t // 15_000)
        lg.order(oid, rid, sym, side, T0 + t, quotes, ext == 0)
        executed = D(0)
        for ft, price, fee_kind, maker, _ in fills:
            lg.fill(oid, rid, sym, side, T0 + t + ft, price, fee_kind, maker)
            executed += D("0.5")
        if status != "NEW":
            lg.settle(oid, status, str(executed) if status in ("FILLED", "CANCELED") else "0")
    for sym, (ft, price, fee_kind, maker, _) in orphans:
        lg.fill(None, runs, sym, None, T0 + ft, price, fee_kind, maker)
    lg.conn.close()


def _comparable(rep: AuditReport) -> AuditReport:
    return replace(rep, generated_ms=0, database="")


def _check(url: str, scopes: list[Scope], runs: int) -> None:
    with AuditDB.from_url(url) as db:
        for scope in scopes:
            if runs == 1 or scope.run_id is not None:
                pairs = Pairs(db.known_assets())
                assert set_based_fold(db, scope, pairs, PriceSeries(db, scope.until_ms)) is not None, scope
            fast = build_report(db, scope, use_checkpoint=False)
            fold = build_report(db, scope, use_checkpoint=False, set_based=False)
            assert _comparable(fast) == _comparable(fold), scope
            # positions come from the books now: still figures.positions of the fills in scope
            pairs = Pairs(db.known_assets())
            held = positions(db.iter_fills(scope, slim=True), {s: pairs(s) for s in db.fill_symbols(scope)})
            assert fast.positions == dict(sorted(held.items())), scope
            for a, b in zip(fast.symbols, fold.symbols, strict=True):
                # the same Decimals, exponent included (what the JSON and CSV exports print)
                assert str(a.bought_qty) == str(b.bought_qty) and str(a.sold_quote) == str(b.sold_quote)
                assert str(a.fees_quote) == str(b.fees_quote)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    orders=st.lists(_order, min_size=1, max_size=14),
    orphans=st.lists(st.tuples(st.sampled_from(SYMBOLS), _fill), max_size=2),
    runs=st.integers(1, 2),
    bnb_price=st.booleans(),
    since=st.integers(0, 40_000),
)
def test_set_based_report_equals_the_fold(
    ledger_backend: str,
    empty_ledger: Path,
    tmp_path_factory: pytest.TempPathFactory,
    pg_databases: PgDatabases | None,
    orders: list,
    orphans: list,
    runs: int,
    bnb_price: bool,
    since: int,
) -> None:
    path = tmp_path_factory.mktemp("sb") / "ledger.db"
    shutil.copyfile(empty_ledger, path)
    _write(path, orders, orphans, runs, bnb_price)
    url = f"sqlite+aiosqlite:///{path}"
    if ledger_backend == "postgresql":
        needs_pg()
        assert pg_databases is not None
        pg_url = asyncio.run(pg_databases.create(migrated=True))
        asyncio.run(copy_ledger(url, pg_url))
        url = pg_url
    scopes = [Scope(), Scope(run_id=1), Scope(since_ms=T0 + since), Scope(symbol="BTCUSDT"),
              Scope(until_ms=T0 + since)]
    _check(url, scopes, runs)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    orders=st.lists(_order, min_size=2, max_size=14),
    orphans=st.lists(st.tuples(st.sampled_from(SYMBOLS), _fill), max_size=2),
    bnb_price=st.booleans(),
    since=st.integers(0, 40_000),
)
def test_report_split_over_two_processes_equals_the_fold(
    ledger_backend: str,
    empty_ledger: Path,
    tmp_path_factory: pytest.TempPathFactory,
    pg_databases: PgDatabases | None,
    monkeypatch: pytest.MonkeyPatch,
    orders: list,
    orphans: list,
    bnb_price: bool,
    since: int,
) -> None:
    """A large ledger's symbols are folded by this process and a forked worker
    (``setbased.PARALLEL_MIN_FILLS``; on PostgreSQL the worker joins this reader's snapshot):
    forced here at any size, the report is still the fold's."""
    monkeypatch.setattr(setbased, "PARALLEL_MIN_FILLS", 0)
    path = tmp_path_factory.mktemp("split") / "ledger.db"
    shutil.copyfile(empty_ledger, path)
    _write(path, orders, orphans, 1, bnb_price)
    url = f"sqlite+aiosqlite:///{path}"
    if ledger_backend == "postgresql":
        url = _on_pg(path, pg_databases)
    with AuditDB.from_url(url) as db:
        if setbased._split(db, Scope()) is None:
            return  # fills of one symbol only: nothing to split
    _check(url, [Scope(), Scope(since_ms=T0 + since), Scope(until_ms=T0 + since)], 1)


@pytest.mark.parametrize("reverse", [False, True])
def test_fills_of_one_millisecond_in_trade_id_order(
    empty_ledger: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reverse: bool
) -> None:
    """Fills sharing a ``trade_ms`` are read in ``trade_id`` order whatever order they were
    written in: ``_by_trade_ms`` reads them by ``trade_ms`` alone and, when a tie's trade ids
    do not rise with the index order (``reverse``: the ids written descending), the full
    ORDER BY is used. Buys and sells at different prices in one millisecond, so the
    average-cost book depends on their order: the report must equal the fold's."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(empty_ledger, path)
    lg = Ledger(path)
    lg.run(1, T0, stopped=False)
    prices = ["100", "101.5", "99", "98.25", "100.00000000", "99.12345678", "0.5", "102"]
    for oid, price in enumerate(prices, start=1):
        side = "BUY" if oid % 3 else "SELL"
        lg.order(oid, 1, "BTCUSDT", side, T0 + 10, True, False)
        lg.fill(oid, 1, "BTCUSDT", side, T0 + 100 + oid // 4, price, oid % 4, None)
        lg.fill(oid, 1, "BTCUSDT", side, T0 + 100 + oid // 4, price, 0, True)
    if reverse:
        with lg.conn:
            lg.conn.execute("UPDATE fills SET trade_id = 1000 - trade_id")
    lg.conn.close()
    seen: list[bool] = []
    by_trade_ms = setbased._by_trade_ms

    def spy(*args: object) -> object:
        rows = by_trade_ms(*args)  # type: ignore[arg-type]
        seen.append(rows is None)
        return rows

    monkeypatch.setattr(setbased, "_by_trade_ms", spy)
    _check(f"sqlite+aiosqlite:///{path}", [Scope(), Scope(since_ms=T0 + 101)], 1)
    assert seen and all(fell_back == reverse for fell_back in seen), seen



def test_a_symbol_first_filled_during_the_audit_is_the_main_processs_in_full(
    empty_ledger: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite, split, a bot writing: the main process reads the fill sums of its symbols by
    name, from the walk made before the split, and walks again after them. Here BNBUSDT's
    first fills are committed just after that first walk (its orders were there before):
    the main process counts BNBUSDT's orders (every symbol NOT IN the worker's), so the
    second walk must send its sums back to NOT IN, or BNBUSDT would have orders and no
    fills. The report is then the fold's of the same ledger."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(empty_ledger, path)
    fills = [(100, "100", 0, True, 0), (200, "101.5", 1, False, 0)]
    pairs = [(sym, side) for sym in SYMBOLS for side in ("BUY", "SELL")]
    orders = [(sym, side, 1_000 * i, True, 0, "FILLED", 0, [] if sym == "BNBUSDT" else fills)
              for i, (sym, side) in enumerate(pairs)]
    _write(path, orders, [], 1, True)
    writer = Ledger(path)  # kept open, so the WAL stays: the audit reads mode=ro, commits included
    writer.conn.execute("SELECT 1 FROM fills LIMIT 1").fetchall()
    monkeypatch.setattr(setbased, "PARALLEL_MIN_FILLS", 0)
    real = setbased._walk
    walks: list[list[str]] = []

    def walk_then_commit(db: AuditDB) -> list[str]:
        found = real(db)
        if not walks:
            for oid, (sym, side) in enumerate(pairs, start=1):
                if sym == "BNBUSDT":
                    writer.fill(oid, 1, sym, side, T0 + 1_000 * (oid - 1) + 100, "600", 0, True)
        walks.append(found)
        return found

    monkeypatch.setattr(setbased, "_walk", walk_then_commit)
    try:
        with AuditDB(path) as db:
            assert db.opened_as == "read-only"
            fast = build_report(db, Scope(), use_checkpoint=False)
            fold = build_report(db, Scope(), use_checkpoint=False, set_based=False)
    finally:
        writer.conn.close()
    assert next(r for r in fast.symbols if r.symbol == "BNBUSDT").fills == 2
    assert _comparable(fast) == _comparable(fold)
    assert "BNBUSDT" not in walks[0] and "BNBUSDT" in walks[1], walks  # the race did happen


@pytest.mark.parametrize("untimed", [False, True])
def test_third_asset_fees_from_the_ordered_read(
    empty_ledger: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, untimed: bool
) -> None:
    """SQLite: the third-asset fees come from each symbol's ordered read (session 8), valued
    at the ledger's price at each fill's time: BNB fees before the first BNBUSDT price
    (unconverted) and after it, at two prices, and fees in an asset with no price at all.
    ``untimed``: one fill without a ``trade_ms``, so the read is ordered by ``received_ms``
    (the time column is then read as ``coalesce(trade_ms, received_ms)``, not the trade id).
    Split over two processes and not: the report is the fold's, the cyclic collector is off
    during the set-based fold (``fold.no_cyclic_gc``) and back on after it."""
    import gc

    path = tmp_path / "ledger.db"
    shutil.copyfile(empty_ledger, path)
    lg = Ledger(path)
    lg.run(1, T0, stopped=False)
    fills = [("BTCUSDT", 1_000, "BUY", 2, "100"), ("BNBUSDT", 3_000, "BUY", 0, "600"),
             ("BTCUSDT", 4_000, "SELL", 2, "101.5"), ("ETHUSDT", 4_500, "BUY", 2, "99"),
             ("BNBUSDT", 6_000, "SELL", 0, "650"), ("BTCUSDT", 7_000, "BUY", 2, "99"),
             ("BTCUSDT", 8_000, "SELL", 2, "98.25"), ("ETHUSDT", 9_000, "SELL", 1, "101.5")]
    for oid, (sym, t, side, fee_kind, price) in enumerate(fills, start=1):
        lg.order(oid, 1, sym, side, T0 + t, True, False)
        lg.fill(oid, 1, sym, side, T0 + t + 10, price, fee_kind, True)
        lg.settle(oid, "FILLED", "0.5")
    with lg.conn:
        lg.conn.execute("UPDATE fills SET commission_asset = 'XYZ' WHERE order_id = 6")
        if untimed:  # then timed by received_ms (trade time + 5), at the 600 price
            lg.conn.execute("UPDATE fills SET trade_ms = NULL, trade_id = 0 WHERE order_id = 3")
    lg.conn.close()
    url = f"sqlite+aiosqlite:///{path}"
    collector: list[bool] = []
    real = setbased._ordered

    def spy(*args: Any) -> None:
        collector.append(gc.isenabled())
        real(*args)

    monkeypatch.setattr(setbased, "_ordered", spy)
    for split in (False, True):
        if split:
            _split_used(monkeypatch)
        _check(url, [Scope(), Scope(run_id=1), Scope(since_ms=T0 + 2_000)], 1)
    assert collector and not any(collector), collector  # this process's reads: collector off
    assert gc.isenabled()
    with AuditDB.from_url(url) as db:
        rep = build_report(db, Scope(), use_checkpoint=False)
    btc = next(r for r in rep.symbols if r.symbol == "BTCUSDT")
    assert btc.fees_unconverted == {"BNB": D("0.0001"), "XYZ": D("0.0001")}


def test_fill_sums_in_binances_form_with_zero_fees(
    empty_ledger: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: a ledger whose every quantity, quote and fee has Binance's 8 places is summed
    in the plain form (``Dialect.plain``), where zero fees are in the integer sum (they add
    0) and only the count of non-zero fees tests them (session 8): fee groups mixing zero
    and non-zero fees, and groups whose fees are all zero (no fee sum at all), give the
    fold's figures."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(empty_ledger, path)
    lg = Ledger(path)
    lg.run(1, T0, stopped=False)
    for oid in range(1, 13):
        sym = "BTCUSDT" if oid % 3 else "ETHUSDT"
        side = "BUY" if oid % 4 < 2 else "SELL"
        lg.order(oid, 1, sym, side, T0 + oid * 1_000, True, False)
        maker = [True, False, None][(oid // 2) % 3]
        lg.fill(oid, 1, sym, side, T0 + oid * 1_000 + 10, PRICES[oid % 6], oid % 3, maker)
        lg.settle(oid, "FILLED", "0.5")
    with lg.conn:
        lg.conn.execute(
            "UPDATE fills SET qty = '0.50000000', price = printf('%.8f', CAST(price AS REAL)), "
            "quote_qty = printf('%.8f', CAST(quote_qty AS REAL)), "
            "commission = CASE WHEN order_id % 2 = 0 OR is_maker IS NULL THEN '0.00000000' "
            "ELSE printf('%.8f', CAST(commission AS REAL)) END"
        )
    lg.conn.close()
    plain: list[bool] = []
    real = setbased._fills

    def spy(db: AuditDB, d: setbased.Dialect, *args: Any) -> None:
        plain.append(d.plain)
        real(db, d, *args)

    monkeypatch.setattr(setbased, "_fills", spy)
    _check(f"sqlite+aiosqlite:///{path}", [Scope(), Scope(symbol="BTCUSDT"), Scope(since_ms=T0 + 5_000)], 1)
    assert plain and all(plain), plain

# -- PostgreSQL: the split report (a forked worker in this reader's exported snapshot)


def _on_pg(path: Path, pg_databases: PgDatabases | None) -> str:
    needs_pg()
    assert pg_databases is not None
    pg_url = asyncio.run(pg_databases.create(migrated=True))
    asyncio.run(copy_ledger(f"sqlite+aiosqlite:///{path}", pg_url))
    return pg_url


def _split_used(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...] | None]:
    """Forces the split at any size; records each ``_split`` decision (None: one process)."""
    monkeypatch.setattr(setbased, "PARALLEL_MIN_FILLS", 0)
    seen: list[tuple[str, ...] | None] = []
    real = setbased._split

    def spy(db: AuditDB, scope: Scope, *walked: list[str]) -> tuple[str, ...] | None:
        seen.append(real(db, scope, *walked))
        return seen[-1]

    monkeypatch.setattr(setbased, "_split", spy)
    return seen


def _one_process(url: str, scopes: list[Scope]) -> list[AuditReport]:
    with AuditDB.from_url(url) as db:
        return [_comparable(build_report(db, s, use_checkpoint=False)) for s in scopes]


def test_split_on_postgresql_equals_one_process_and_the_fold(
    tmp_path: Path, scenario: Built, pg_databases: PgDatabases | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the report split over this process and a forked worker (forced at any
    size) is exactly the one-process report and the fold's, on the hand-made scenario and on
    the bench's generated ledger (two symbols, BNB fees), whole and scoped."""
    bench = tmp_path / "bench.db"
    _bench().build(bench, 1500)
    for path, scopes in (
        (scenario.path, [Scope(), Scope(since_ms=T0 + 2000), Scope(until_ms=T0 + 3050)]),
        (bench, [Scope(), Scope(since_ms=T0 + 5000), Scope(until_ms=T0 + 8000)]),
    ):
        url = _on_pg(path, pg_databases)
        alone = _one_process(url, scopes)
        with monkeypatch.context() as m:
            seen = _split_used(m)
            _check(url, scopes, 1)
            split = _one_process(url, scopes)
        assert split == alone
        if path == bench:
            assert seen and all(s for s in seen), seen  # both symbols, so every report was split


def test_split_worker_reads_the_readers_snapshot(
    tmp_path: Path, pg_databases: PgDatabases | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forked worker reads the parent reader's snapshot: fills committed (one per
    symbol, so in both halves) after the audit's reader began are in neither half."""


    path = tmp_path / "bench.db"
    _bench().build(path, 800)
    url = _on_pg(path, pg_databases)
    seen = _split_used(monkeypatch)
    with AuditDB.from_url(url) as db:
        with monkeypatch.context() as m:
            m.setattr(setbased, "PARALLEL_MIN_FILLS", 10**12)  # one process: the reference
            before = _comparable(build_report(db, Scope(), use_checkpoint=False))

        commit_elsewhere(url, (
            "INSERT INTO fills (symbol, trade_id, side, price, qty, quote_qty, commission, "
            "commission_asset, trade_ms, source, received_ms) "
            "SELECT DISTINCT ON (symbol) symbol, trade_id + 1000000, side, price * 2, qty, "
            "quote_qty * 2, commission, commission_asset, trade_ms + 10000000, source, "
            "received_ms + 10000000 FROM fills ORDER BY symbol, id"
        ))
        seen.clear()
        during = _comparable(build_report(db, Scope(), use_checkpoint=False))
        assert seen and seen[0], seen  # the split ran
        assert during == before
    after = _one_process(url, [Scope()])[0]
    traded = [b.symbol for b in before.symbols if b.fills]
    assert len(traded) >= 2
    for a, b in zip(after.symbols, before.symbols, strict=True):
        # the new fills are real: a new reader sees them
        assert a.fills == b.fills + (b.symbol in traded), a.symbol


def test_split_on_postgresql_with_a_symbol_out_of_scope(
    tmp_path: Path, empty_ledger: Path, pg_databases: PgDatabases | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the split's halves only read their symbols' fills in time order; the
    aggregates (orders, fill sums, latencies) are read once for the whole scope and the two
    are joined per symbol (``setbased._pg_fold``). A symbol every fill of which is out of
    scope (ETHUSDT trades only before ``since``) gets no group from its half, so the report
    is still the fold's: no ETHUSDT line with empty books when only its orders are in scope
    (``until``) or nothing is (``since``); BNB fees with a price and, for ETH, without."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(empty_ledger, path)
    lg = Ledger(path)
    lg.run(1, T0, stopped=False)
    for oid, (sym, t, side, fee_kind, price) in enumerate(
        [
            ("ETHUSDT", 1_000, "BUY", 2, "99"),
            ("ETHUSDT", 2_000, "SELL", 1, "101.5"),
            ("BNBUSDT", 3_000, "BUY", 0, "600"),
            ("BTCUSDT", 20_000, "BUY", 2, "100"),
            ("BTCUSDT", 21_000, "SELL", 1, "98.25"),
            ("BTCUSDT", 22_000, "SELL", 0, "100.00000000"),
        ],
        start=1,
    ):
        lg.order(oid, 1, sym, side, T0 + t, True, False)
        lg.fill(oid, 1, sym, side, T0 + t + 10, price, fee_kind, True)
        lg.settle(oid, "FILLED", "0.5")
    lg.order(7, 1, "ETHUSDT", "BUY", T0 + 30_000, True, False)  # in scope, never filled
    lg.conn.close()
    url = _on_pg(path, pg_databases)
    seen = _split_used(monkeypatch)
    scopes = [Scope(), Scope(since_ms=T0 + 10_000), Scope(until_ms=T0 + 1_500), Scope(since_ms=T0 + 40_000)]
    _check(url, scopes, 1)
    assert len(seen) >= len(scopes) and all(seen), seen  # every report was split
    with AuditDB.from_url(url) as db:
        late = build_report(db, Scope(since_ms=T0 + 10_000), use_checkpoint=False)
    eth = [r for r in late.symbols if r.symbol == "ETHUSDT"]
    assert eth and eth[0].fills == 0 and eth[0].orders_total == 1  # its order only


def test_ordered_read_on_postgresql_falls_back_to_rows_for_an_escaped_value(
    tmp_path: Path, empty_ledger: Path, pg_databases: PgDatabases | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each symbol's ordered read comes by COPY as text (``SqlReader.columns``); a value COPY
    escapes (here a third fee asset with a backslash and one with a tab, which only the
    ordered read's third-fee column carries) makes it read ``rows`` instead: the same report
    as the fold's, and as without those assets' odd names (their fees are unconverted)."""
    from executor.audit.reader import SqlReader

    path = tmp_path / "ledger.db"
    shutil.copyfile(empty_ledger, path)
    lg = Ledger(path)
    lg.run(1, T0, stopped=False)
    for oid, (t, side, fee_kind, price) in enumerate(
        [(1_000, "BUY", 2, "99"), (2_000, "SELL", 1, "101.5"), (3_000, "BUY", 2, "100"),
         (4_000, "SELL", 0, "98.25")],
        start=1,
    ):
        lg.order(oid, 1, "BTCUSDT", side, T0 + t, True, False)
        lg.fill(oid, 1, "BTCUSDT", side, T0 + t + 10, price, fee_kind, None)
        lg.settle(oid, "FILLED", "0.5")
    with lg.conn:
        lg.conn.execute("UPDATE fills SET commission_asset = 'X\\Y' WHERE order_id = 1")
        lg.conn.execute("UPDATE fills SET commission_asset = 'X' || char(9) || 'Y' WHERE order_id = 3")
    lg.conn.close()
    url = _on_pg(path, pg_databases)
    fell_back: list[str] = []
    real = SqlReader.rows

    def spy(self: SqlReader, sql: str, params: Any = ()) -> list[Any]:
        fell_back.append(sql)
        return real(self, sql, params)

    monkeypatch.setattr(SqlReader, "rows", spy)
    _check(url, [Scope(), Scope(since_ms=T0 + 2_500)], 1)
    assert fell_back  # the ordered read of BTCUSDT took the rows path
    with AuditDB.from_url(url) as db:
        rep = build_report(db, Scope(), use_checkpoint=False)
    (btc,) = rep.symbols
    assert btc.fees_unconverted == {"X\tY": D("0.0001"), "X\\Y": D("0.0001")}
