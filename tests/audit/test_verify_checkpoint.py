"""The verify checkpoint changes how long ``audit verify`` takes, never what it says.

Random ledgers are written in stages, as a bot writes them: fills (some without a side),
balanceUpdates, stream balances (some untimed, some explained only within their millisecond,
some wrong), REST snapshots, the balances table rewritten from the latest balance; rows
recorded out of time order (some older than an earlier checkpoint's cut, which makes it
stale) and many in the same millisecond. A verify checkpoint is written between the stages;
verifying from it must give exactly what verifying every row gives.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass, field, replace
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from executor.audit.checkpoints import load_checkpoint
from executor.audit.query import AuditDB, Scope
from executor.audit.verify import VerifyResult, verify, verify_reference
from executor.audit.verify_checkpoint import (
    KIND_VERIFY,
    VERIFY_VERSION,
    VerifyWriteResult,
    write_verify_checkpoint,
)

T0 = 1_767_225_600_000
ASSETS = ("BTC", "ETH", "USDT", "BNB")
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")


@pytest.fixture
def template(empty_ledger: Path) -> Path:
    return empty_ledger


@dataclass
class Ledger:
    """Writes rows as the bot does, and keeps the exchange's truth (every delta, including
    fills the ledger never got) to give balances their true values."""

    path: Path
    opening: dict[str, D]
    conn: sqlite3.Connection = field(init=False)
    truth: list[tuple[int, str, D]] = field(default_factory=list)  # (time, asset, amount)
    trade: int = 0
    snap: int = 0

    def __post_init__(self) -> None:
        self.conn = sqlite3.connect(self.path)
        with self.conn:
            self.conn.execute(
                "INSERT INTO runs (id, version, profile, config_hash, started_ms) "
                "VALUES (1, 't', 'sim', 'x', ?)",
                (T0,),
            )
        self.snapshot(0, {a: v for a, v in self.opening.items()})

    def total(self, asset: str, t: int, before_ms: bool = False) -> D:
        """The true total at ``t`` (every delta at or before it; ``before_ms``: before ``t``)."""
        out = self.opening.get(asset, D(0))
        t += T0
        for dt, a, amount in self.truth:
            if a == asset and dt > T0 and (dt < t if before_ms else dt <= t):
                out += amount
        return out

    def fill(self, t: int, sym: str, side: str | None, price: str, fee_kind: int, dropped: bool) -> None:
        self.trade += 1
        base, quote = sym[:-4], sym[-4:]
        fee_asset, fee = [(quote, "0.01"), (base, "0.001"), ("BNB", "0.0001"), (None, "0")][fee_kind]
        qq = D(price) * D("0.5")
        if side is not None:
            sign = 1 if side == "BUY" else -1
            self.truth += [(T0 + t, base, sign * D("0.5")), (T0 + t, quote, -sign * qq)]
            if fee_asset:
                self.truth.append((T0 + t, fee_asset, -D(fee)))
        if dropped:  # the exchange did it; the ledger never heard of it
            return
        with self.conn:
            self.conn.execute(
                "INSERT INTO fills (symbol, trade_id, side, price, qty, quote_qty, commission, "
                "commission_asset, trade_ms, source, received_ms, run_id) "
                "VALUES (?,?,?,?,'0.5',?,?,?,?,'stream',?,1)",
                (sym, self.trade, side, price, str(qq), fee, fee_asset, T0 + t, T0 + t + 3),
            )

    def update(self, t: int, asset: str, delta: str) -> None:
        self.truth.append((T0 + t, asset, D(delta)))
        with self.conn:
            self.conn.execute(
                "INSERT INTO balance_events (kind, asset, delta, source, event_ms, received_ms, run_id) "
                "VALUES ('balanceUpdate', ?, ?, 'stream', ?, ?, 1)",
                (asset, delta, T0 + t, T0 + t + 2),
            )

    def balance(
        self,
        t: int | None,
        asset: str,
        value: D,
        locked: int,
        kind: str = "outboundAccountPosition",
        received: int | None = None,
        ref: str | None = None,
    ) -> None:
        free, lock = [(str(value), "0.00000000"), (str(value - 1), "1"), (str(value), None)][locked]
        at = T0 + t if t is not None else None
        rec = received if received is not None else (T0 + (t or 0) + 4)
        with self.conn:
            self.conn.execute(
                "INSERT INTO balance_events (kind, asset, free, locked, source, event_ref, event_ms, "
                "received_ms, run_id) VALUES (?,?,?,?,?,?,?,?,1)",
                (kind, asset, free, lock, kind, ref, at, rec),
            )
            self.conn.execute(
                "INSERT INTO balances (asset, free, locked, source, event_ref, event_ms, updated_ms) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT(asset) DO UPDATE SET free = excluded.free, "
                "locked = excluded.locked, source = excluded.source, event_ms = excluded.event_ms",
                (asset, free, lock or "0", kind, ref, at, rec),
            )

    def snapshot(self, t: int, values: dict[str, D]) -> None:
        self.snap += 1
        for a, v in values.items():
            self.balance(t, a, v, 0, "rest_snapshot", received=T0 + t + 7, ref=f"s{self.snap}")

    def checkpoint(self, cut: int) -> VerifyWriteResult:
        with AuditDB(self.path) as db:
            return write_verify_checkpoint(db, self.conn, cut, now_ms=cut)


def _comparable(res: VerifyResult) -> VerifyResult:
    return replace(res, notes=[n for n in res.notes if "checkpoint" not in n])


def _both(path: Path) -> tuple[VerifyResult, VerifyResult]:
    with AuditDB(path) as db:
        return verify(db, Scope(), use_checkpoint=False), verify(db, Scope())


_row = st.one_of(
    st.tuples(
        st.just("f"),
        st.integers(0, 45),
        st.sampled_from(SYMBOLS),
        st.sampled_from(["BUY", "SELL"] * 4 + [None]),
        st.sampled_from(["99", "100", "101.5"]),
        st.integers(0, 3),
        st.integers(0, 12),  # 0: the ledger misses it (when dirty)
    ),
    st.tuples(
        st.just("u"), st.integers(0, 45), st.sampled_from(ASSETS), st.sampled_from(["1", "-0.5", "0.25"])
    ),
    # a balance: 0 the true total, 1 the total before its millisecond, 2 wrong (when dirty), 3 untimed
    st.tuples(
        st.just("b"),
        st.integers(0, 45),
        st.sampled_from(ASSETS),
        st.sampled_from([0, 0, 0, 0, 1, 1, 2, 3]),
        st.integers(0, 2),
    ),
    st.tuples(st.just("s"), st.integers(1, 45)),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    opening=st.lists(st.booleans(), min_size=4, max_size=4),
    stages=st.lists(st.lists(_row, max_size=10), min_size=2, max_size=4),
    cuts=st.lists(st.integers(-5, 60), min_size=4, max_size=4),
    dirty=st.booleans(),
    # the balances table at the end: as written, one row wrong, untimed, or moved to another time
    table=st.tuples(
        st.sampled_from([None, "wrong", "untimed", "moved"]), st.sampled_from(ASSETS), st.integers(1, 100)
    ),
)
def test_resumed_verify_equals_full(
    template: Path,
    tmp_path_factory: pytest.TempPathFactory,
    opening: list[bool],
    stages: list[list[tuple]],
    cuts: list[int],
    dirty: bool,
    table: tuple[str | None, str, int],
) -> None:
    path = tmp_path_factory.mktemp("vck") / "ledger.db"
    shutil.copyfile(template, path)
    values = {a: D(100 + 10 * i) for i, a in enumerate(ASSETS)}
    lg = Ledger(path, {a: values[a] for a, on in zip(ASSETS, opening, strict=True) if on})
    written = 0
    for i, rows in enumerate(stages):
        shift = 30 * i  # stages move forward in time, overlapping
        for row in rows:
            t = row[1] + shift
            if row[0] == "f":
                _, _, sym, side, price, fee_kind, drop = row
                lg.fill(t, sym, side, price, fee_kind, dirty and drop == 0)
            elif row[0] == "u":
                lg.update(t, row[2], row[3])
            elif row[0] == "b":
                _, _, asset, mode, locked = row
                if mode == 2 and not dirty:
                    mode = 0
                value = lg.total(asset, t, before_ms=mode == 1) + (1 if mode == 2 else 0)
                lg.balance(None if mode == 3 else t, asset, value, locked)
            else:
                lg.snapshot(t, {a: lg.total(a, t) for a in ASSETS})
        change, asset, at = table
        if i == len(stages) - 1 and change is not None:
            sql, params = {
                "wrong": ("UPDATE balances SET free = free + 1 WHERE asset = ?", [asset]),
                "untimed": ("UPDATE balances SET event_ms = NULL WHERE asset = ?", [asset]),
                "moved": (
                    "UPDATE balances SET event_ms = ?, free = ?, locked = '0' WHERE asset = ?",
                    [T0 + at, str(lg.total(asset, at)), asset],
                ),
            }[change]
            with lg.conn:
                lg.conn.execute(sql, params)
        r = lg.checkpoint(T0 + shift + cuts[i])
        written += r.written
        full, resumed = _both(path)
        assert _comparable(resumed) == _comparable(full)
        assert [n for n in resumed.notes if "checkpoint" not in n] == full.notes
    event(f"checkpoints written: {min(written, 2)}")
    used = [n.split(" (")[0].split(" plus")[0][:40] for n in resumed.notes if "checkpoint" in n]
    event(f"last verify: {'ok' if full.ok else 'differences'}, {used[0] if used else 'no checkpoint'}")
    with AuditDB(path) as db:
        assert verify_reference(db, Scope()) == full
    lg.conn.close()


# -- deterministic cases


def _simple(path: Path) -> Ledger:
    lg = Ledger(path, {"BTC": D(1), "USDT": D(1000)})
    lg.fill(10, "BTCUSDT", "BUY", "100", 0, False)
    lg.balance(10, "BTC", lg.total("BTC", 10), 0)
    lg.balance(10, "USDT", lg.total("USDT", 10), 0)
    lg.fill(20, "BTCUSDT", "SELL", "101.5", 1, False)
    lg.balance(20, "BTC", lg.total("BTC", 20), 1)
    lg.balance(20, "USDT", lg.total("USDT", 20), 0)
    return lg


def test_checkpoint_is_used_then_stale_then_rewritten(template: Path, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = _simple(path)
    r = lg.checkpoint(T0 + 25)
    # The cut is the last recorded balance at or before the one asked.
    assert r == VerifyWriteResult(T0 + 20, fresh=True, written=True, reason=None)
    lg.fill(30, "BTCUSDT", "BUY", "99", 0, False)
    lg.balance(30, "BTC", lg.total("BTC", 30), 0)
    full, resumed = _both(path)
    assert full.ok and _comparable(resumed) == _comparable(full)
    assert any("from the verify checkpoint" in n and "plus 1 later fills" in n for n in resumed.notes)
    # A trade older than the cut recorded now (a gap fill): the checkpoint is stale.
    lg.fill(15, "BTCUSDT", "BUY", "100", 0, False)
    full, resumed = _both(path)
    assert not full.ok and _comparable(resumed) == _comparable(full)
    assert any("is stale (fill #4 was recorded after it with an earlier time)" in n for n in resumed.notes)
    # The ledger now differs before the cut: no checkpoint, and the stale one goes.
    r = lg.checkpoint(T0 + 40)
    assert not r.written and r.fresh and "balance difference" in (r.reason or "")
    with AuditDB(path) as db:
        assert load_checkpoint(db.conn, KIND_VERIFY, VERIFY_VERSION) is None
    full, resumed = _both(path)
    assert resumed == full  # no checkpoint, no note


def test_a_dirty_ledger_gets_no_checkpoint(template: Path, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = _simple(path)
    lg.balance(25, "USDT", lg.total("USDT", 25) + D("0.01"), 0)
    r = lg.checkpoint(T0 + 30)
    assert not r.written and "1 balance difference(s)" in (r.reason or "")
    with AuditDB(path) as db:
        assert load_checkpoint(db.conn, KIND_VERIFY, VERIFY_VERSION) is None
    # Up to a cut before the wrong row it is clean, and the difference after it is still named.
    assert lg.checkpoint(T0 + 22).written
    full, resumed = _both(path)
    assert len(full.differences) == 1 and full.differences[0].row == "balance_events #7"
    assert _comparable(resumed) == _comparable(full)
    assert any("from the verify checkpoint" in n for n in resumed.notes)


def test_continues_the_stored_checkpoint(template: Path, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = _simple(path)
    assert lg.checkpoint(T0 + 10).fresh
    lg.update(22, "USDT", "5")
    lg.balance(22, "USDT", lg.total("USDT", 22), 2)
    r = lg.checkpoint(T0 + 30)
    assert r.written and not r.fresh and r.cut_ms == T0 + 22
    full, resumed = _both(path)
    assert full.ok and full.balance_updates == 1 and _comparable(resumed) == _comparable(full)
    # An earlier cut walks again from the opening.
    r = lg.checkpoint(T0 + 12)
    assert r.written and r.fresh and r.reason == "the new cut is earlier" and r.cut_ms == T0 + 10


def test_balances_table_row_before_the_cut(template: Path, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = _simple(path)
    lg.fill(40, "BTCUSDT", "BUY", "100", 0, False)  # BTC and USDT change after their last balance
    assert lg.checkpoint(T0 + 50).cut_ms == T0 + 20
    full, resumed = _both(path)
    # balances[*] (at T0+20, before the cut) agree; the missing balance after the fill is not checked
    assert full.ok and _comparable(resumed) == _comparable(full)
    assert any("from the verify checkpoint" in n for n in resumed.notes)
    lg.balance(45, "BTC", lg.total("BTC", 45), 0)
    with lg.conn:  # the table row moves back before the cut and is wrong there
        lg.conn.execute("UPDATE balances SET event_ms = ?, free = '7' WHERE asset = 'USDT'", (T0 + 15,))
    full, resumed = _both(path)
    assert not full.ok and _comparable(resumed) == _comparable(full)
    assert any("cannot settle balances[USDT]" in n for n in resumed.notes)


def test_no_rest_snapshot_no_checkpoint(template: Path, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = _simple(path)
    with lg.conn:
        lg.conn.execute("DELETE FROM balance_events WHERE kind = 'rest_snapshot'")
    r = lg.checkpoint(T0 + 30)
    assert not r.written and "no REST snapshot" in (r.reason or "")


def test_scoped_verify_ignores_the_checkpoint(template: Path, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = _simple(path)
    assert lg.checkpoint(T0 + 30).written
    with AuditDB(path) as db:
        res = verify(db, Scope(since_ms=T0 + 5))
        assert res == verify(db, Scope(since_ms=T0 + 5), use_checkpoint=False)
        assert not any("checkpoint" in n for n in res.notes)


def test_the_cut_is_where_the_reference_applies_deltas(template: Path, tmp_path: Path) -> None:
    """Between two checks the reference applies the fills, then the balanceUpdates, and a balance
    may equal a total within its millisecond. A cut between the two checks would apply the
    balanceUpdate before the fill and explain a balance the reference reports."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = _simple(path)  # last balances at T0+20
    lg.update(22, "USDT", "5")
    lg.fill(30, "BTCUSDT", "BUY", "100", 0, False)
    # USDT at T0+30 as before the fill (after the update): the reference applies the fill, then
    # the update (T0+22 is another millisecond), so this is a difference.
    lg.balance(30, "USDT", lg.total("USDT", 30, before_ms=True), 0)
    r = lg.checkpoint(T0 + 25)
    assert r.written and r.cut_ms == T0 + 20
    full, resumed = _both(path)
    assert len(full.differences) == 1 and full.differences[0].row == "balance_events #8"
    assert _comparable(resumed) == _comparable(full)
    assert any(
        "from the verify checkpoint" in n and "plus 1 later fills and 1 later" in n for n in resumed.notes
    )


def test_balances_table_row_between_the_last_balance_and_the_cut(template: Path, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = _simple(path)  # BTC last balance at T0+20
    lg.fill(25, "BTCUSDT", "BUY", "100", 0, False)  # fill #3
    lg.fill(28, "BTCUSDT", "BUY", "100", 0, False)  # fill #4
    lg.balance(29, "ETH", D(0), 0)  # moves the cut to T0+29
    with lg.conn:  # the table's BTC row from T0+26 (between the fills)
        lg.conn.execute(
            "UPDATE balances SET event_ms = ?, free = ?, locked = '0' WHERE asset = 'BTC'",
            (T0 + 26, str(lg.total("BTC", 26))),
        )
    assert lg.checkpoint(T0 + 29).cut_ms == T0 + 29
    lg.balance(35, "BTC", D(7), 0)
    with lg.conn:
        lg.conn.execute("UPDATE balances SET event_ms = ?, free = '7' WHERE asset = 'BTC'", (T0 + 26,))
    full, resumed = _both(path)
    # The table row at T0+26 is checked (and differs) in both: settled by the full verification.
    assert _comparable(resumed) == _comparable(full)
    with lg.conn:  # now it agrees, and the difference at T0+35 names only the fill after it
        lg.conn.execute("UPDATE balances SET free = ? WHERE asset = 'BTC'", (str(lg.total("BTC", 26)),))
    full, resumed = _both(path)
    assert [d.fill_ids for d in full.differences] == [[4]]
    assert _comparable(resumed) == _comparable(full)
    assert any("from the verify checkpoint" in n for n in resumed.notes)


def test_a_late_row_of_the_opening_snapshot_makes_it_stale(template: Path, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = _simple(path)
    assert lg.checkpoint(T0 + 20).written
    # A row written with the opening snapshot's receive time and reference, timed after the cut:
    # it belongs to the opening, which the checkpoint holds.
    lg.balance(50, "ETH", D(3), 0, "rest_snapshot", received=T0 + 7, ref="s1")
    full, resumed = _both(path)
    assert full.opening["ETH"] == 3 and _comparable(resumed) == _comparable(full)
    assert any(
        "stale (balance_events #7 was recorded after it as part of the opening" in n for n in resumed.notes
    )


def test_an_asset_met_only_in_a_balance_at_the_opening_or_in_the_table(
    template: Path, tmp_path: Path
) -> None:
    """verify_fast used to fail (IndexError) on an asset with no delta first met after its deltas
    were laid out: a balance at the opening time, or a balances-table row alone."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(template, path)
    lg = Ledger(path, {"BNB": D(130)})
    lg.balance(0, "BTC", D(0), 0)  # at the opening's time: not checked
    lg.balance(None, "ETH", D(0), 0)  # untimed; its balances row has no time
    with AuditDB(path) as db:
        fast, ref = verify(db, Scope(), use_checkpoint=False), verify_reference(db, Scope())
    assert fast == ref and fast.ok and set(fast.derived) == {"BNB", "BTC", "ETH"} and fast.unchecked == 1
