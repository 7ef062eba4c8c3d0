"""Audit checkpoints change how long an audit takes, never what it says.

Random ledgers are written in stages, as a bot writes them: orders first recorded as working
and settled later, fills arriving out of time order (some older than an earlier checkpoint's
cut, which makes it stale), several runs, fees in quote, base and BNB. Checkpoints are written
between the stages; the report folded from the last checkpoint must equal the report folded
from every row.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass, field, replace
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.audit.checkpoints import KIND_REPORT, load_checkpoint, settled_cut, write_report_checkpoint
from executor.audit.query import AuditDB, Scope
from executor.audit.report import AuditReport, build_report

T0 = 1_767_225_600_000
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
FINAL = ("FILLED", "CANCELED", "EXPIRED", "REJECTED", "NOT_PLACED")


@pytest.fixture
def template(empty_ledger: Path) -> Path:
    return empty_ledger


@dataclass
class Ledger:
    path: Path
    conn: sqlite3.Connection = field(init=False)
    next_trade: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.conn = sqlite3.connect(self.path)
        self.conn.execute("PRAGMA foreign_keys=ON")

    def run(self, rid: int, at: int, stopped: bool) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO runs (id, version, profile, config_hash, started_ms, stopped_ms) "
                "VALUES (?, 't', 'sim', 'x', ?, ?)",
                (rid, at, at + 10**7 if stopped else None),
            )

    def order(
        self, oid: int, rid: int, sym: str, side: str, t: int, quotes: bool | str, external: bool
    ) -> None:
        """``quotes``: True for both decision quotes, False for none, "bid" or "ask" for one."""
        bid, ask = (("99.5", "100.5") if sym != "BNBUSDT" else ("599", "601")) if quotes else (None, None)
        if quotes == "bid":
            ask = None
        elif quotes == "ask":
            bid = None
        with self.conn:
            self.conn.execute(
                "INSERT INTO orders (id, client_order_id, exchange_order_id, run_id, symbol, side, type, "
                "price, quantity, status, status_source, executed_qty, cum_quote_qty, created_ms, acked_ms, "
                "updated_ms, decision_bid, decision_ask, decision_ms, external, resolved_from_unknown) "
                "VALUES (?,?,?,?,?,?,'LIMIT','100','1','NEW','stream','0','0',?,?,?,?,?,?,?,0)",
                (oid, f"c{oid}", oid, rid, sym, side, t, t + 2, t, bid, ask, t, int(external)),
            )

    def settle(self, oid: int, status: str, executed: str) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE orders SET status = ?, executed_qty = ? WHERE id = ?", (status, executed, oid)
            )

    def fill(
        self,
        oid: int | None,
        rid: int,
        sym: str,
        side: str | None,
        t: int,
        price: str,
        fee_kind: int,
        maker: bool | None,
    ) -> None:
        tid = self.next_trade[sym] = self.next_trade.get(sym, 0) + 1
        base, quote = sym[:-4], sym[-4:]
        fee_asset, fee = [(quote, "0.01"), (base, "0.001"), ("BNB", "0.0001"), (None, "0")][fee_kind]
        with self.conn:
            self.conn.execute(
                "INSERT INTO fills (symbol, trade_id, order_id, side, price, qty, quote_qty, commission, "
                "commission_asset, is_maker, trade_ms, source, received_ms, run_id) "
                "VALUES (?,?,?,?,?,'0.5',?,?,?,?,?,'stream',?,?)",
                (
                    sym,
                    tid,
                    oid,
                    side,
                    price,
                    str(D(price) * D("0.5")),
                    fee,
                    fee_asset,
                    None if maker is None else int(maker),
                    t,
                    t + 5,
                    rid,
                ),
            )

    def checkpoint(self, cut: int) -> None:
        with AuditDB(self.path) as db:
            write_report_checkpoint(db, self.conn, cut, now_ms=cut)


_fill = st.tuples(
    st.integers(0, 40_000),  # trade time offset
    st.sampled_from(["99", "100", "101.5", "98.25"]),
    st.integers(0, 3),  # fee kind
    st.sampled_from([True, False, None]),
    st.integers(0, 2),  # the stage it is recorded in
)
_order = st.tuples(
    st.sampled_from(SYMBOLS),
    st.sampled_from(["BUY", "SELL"]),
    st.integers(0, 30_000),
    st.booleans(),  # decision quotes known
    st.integers(0, 9),  # 0: external
    st.sampled_from((*FINAL, "NEW")),
    st.integers(0, 2),  # the stage it settles in
    st.lists(_fill, max_size=3),
)


def _comparable(rep: AuditReport) -> AuditReport:
    return replace(rep, generated_ms=0, notes=[n for n in rep.notes if "checkpoint" not in n])


def _reports(path: Path) -> tuple[AuditReport, AuditReport, list[str]]:
    with AuditDB(path) as db:
        fresh = build_report(db, Scope(), use_checkpoint=False)
        resumed = build_report(db, Scope())
    return fresh, resumed, resumed.notes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    orders=st.lists(_order, min_size=1, max_size=12),
    orphan_fills=st.lists(st.tuples(st.sampled_from(SYMBOLS), _fill), max_size=2),
    cuts=st.tuples(st.integers(0, 45_000), st.integers(0, 45_000)),
    runs=st.integers(1, 3),
)
def test_resumed_report_equals_fresh(
    template: Path,
    tmp_path_factory: pytest.TempPathFactory,
    orders: list,
    orphan_fills: list,
    cuts: tuple[int, int],
    runs: int,
) -> None:
    path = tmp_path_factory.mktemp("ck") / "ledger.db"
    shutil.copyfile(template, path)
    lg = Ledger(path)
    for r in range(1, runs + 1):
        lg.run(r, T0 + (r - 1) * 15_000, stopped=r < runs)
    # stage -> rows recorded then: ("o", ...) orders, ("f", ...) fills, ("s", ...) settlements
    stages: list[list[tuple]] = [[], [], []]
    for oid, (sym, side, t, quotes, ext, status, settle_at, fills) in enumerate(orders, start=1):
        rid = min(runs, 1 + t // 15_000)
        stages[0].append(("o", oid, rid, sym, side, T0 + t, quotes, ext == 0))
        executed = "0"
        for ft, price, fee_kind, maker, at in fills:
            stages[at].append(("f", oid, rid, sym, side, T0 + t + ft, price, fee_kind, maker))
            executed = str(D(executed) + D("0.5"))
        if status != "NEW":
            stages[settle_at].append(
                ("s", oid, status, executed if status in ("FILLED", "CANCELED") else "0")
            )
    for sym, (ft, price, fee_kind, maker, at) in orphan_fills:
        stages[at].append(("f", None, runs, sym, None, T0 + ft, price, fee_kind, maker))
    cut1, cut2 = sorted(cuts)
    for i, rows in enumerate(stages):
        for row in sorted(rows, key=lambda r: "osf".index(r[0])):
            if row[0] == "o":
                lg.order(*row[1:])
            elif row[0] == "f":
                lg.fill(*row[1:])
            else:
                lg.settle(*row[1:])
        if i < 2:
            lg.checkpoint(T0 + (cut1, cut2)[i])
    fresh, resumed, _ = _reports(path)
    assert _comparable(resumed) == _comparable(fresh)
    lg.conn.close()


def _simple(path: Path) -> Ledger:
    lg = Ledger(path)
    lg.run(1, T0, stopped=False)
    lg.order(1, 1, "BTCUSDT", "BUY", T0 + 10, True, False)
    lg.fill(1, 1, "BTCUSDT", "BUY", T0 + 20, "100", 2, True)
    lg.settle(1, "FILLED", "0.5")
    lg.order(2, 1, "BTCUSDT", "SELL", T0 + 30, True, False)
    lg.fill(2, 1, "BTCUSDT", "SELL", T0 + 40, "101.5", 0, False)
    return lg


def test_checkpoint_is_used_and_then_stale(template: Path, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = _simple(path)
    lg.checkpoint(T0 + 25)
    with AuditDB(path) as db:
        cp = load_checkpoint(db.conn, KIND_REPORT)
        assert cp is not None and cp.cut_ms == T0 + 25 and cp.state["pending_orders"] == [2]
    fresh, resumed, notes = _reports(path)
    assert any("folded from the audit checkpoint" in n and "plus 1 later fills" in n for n in notes)
    assert _comparable(resumed) == _comparable(fresh)
    # A trade older than the cut, recorded after the checkpoint (a gap fill): the fold must restart.
    lg.fill(2, 1, "BTCUSDT", "SELL", T0 + 22, "99", 0, False)
    fresh, resumed, notes = _reports(path)
    assert any("is stale (fill #3 was recorded after it" in n for n in notes)
    assert _comparable(resumed) == _comparable(fresh)
    # The next checkpoint starts over and is valid again.
    lg.checkpoint(T0 + 50)
    fresh, resumed, notes = _reports(path)
    assert any("plus 0 later fills" in n for n in notes)
    assert _comparable(resumed) == _comparable(fresh)
    assert resumed.symbols[0].fills == 3


def test_settled_cut_waits_for_the_live_runs_reconciliation(template: Path, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = _simple(path)
    now = T0 + 3_600_000
    with AuditDB(path) as db:
        assert settled_cut(db, now, 600_000) == -1  # a live run with no reconciliation yet: nothing settled
    with lg.conn:
        lg.conn.execute(
            "INSERT INTO reconciliation_runs (run_id, reason, started_ms, outcome, found, fixed, counts, "
            "discrepancies) VALUES (1, 'periodic', ?, 'ok', 0, 0, '{}', '[]')",
            (T0 + 1_000_000,),
        )
        lg.conn.execute(
            "INSERT INTO reconciliation_runs (run_id, reason, started_ms, outcome, found, fixed, counts, "
            "discrepancies) VALUES (1, 'periodic', ?, 'error', 0, 0, '{}', '[]')",
            (T0 + 2_000_000,),
        )
    with AuditDB(path) as db:
        assert settled_cut(db, now, 600_000) == T0 + 1_000_000
    with lg.conn:
        lg.conn.execute("UPDATE runs SET stopped_ms = ?", (T0 + 2_500_000,))
    with AuditDB(path) as db:
        assert settled_cut(db, now, 600_000) == now - 600_000


def test_a_checkpoint_of_another_format_is_ignored(template: Path, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = _simple(path)
    lg.checkpoint(T0 + 100)
    with lg.conn:
        lg.conn.execute("UPDATE audit_checkpoints SET version = version + 1")
    fresh, resumed, notes = _reports(path)
    assert not any("checkpoint" in n for n in notes)
    assert _comparable(resumed) == _comparable(fresh)


def test_a_second_run_restarts_the_fold_with_per_run_groups(template: Path, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = _simple(path)
    lg.checkpoint(T0 + 100)
    lg.run(2, T0 + 200, stopped=False)
    lg.order(3, 2, "BTCUSDT", "SELL", T0 + 210, True, False)
    lg.fill(3, 2, "BTCUSDT", "SELL", T0 + 220, "102", 0, True)
    fresh, resumed, notes = _reports(path)
    assert any("stale (a second run began after it)" in n for n in notes)
    assert [r.group for r in resumed.by_run] == ["run 1", "run 2"]
    assert _comparable(resumed) == _comparable(fresh)
    lg.checkpoint(T0 + 300)
    fresh, resumed, notes = _reports(path)
    assert any("folded from the audit checkpoint" in n for n in notes)
    assert _comparable(resumed) == _comparable(fresh)
