"""``audit verify``'s set-based statement (``executor.audit.verify_sql``) confirms exactly what
the reference confirms, on SQLite and on PostgreSQL: on random ledgers (fills in three assets
with fees in quote, base and BNB, balanceUpdates, balances recorded right or wrong, some in
the millisecond of a fill) and on the bench's generated ledger, whole and scoped."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sqlite3
from collections.abc import Callable
from decimal import Decimal as D
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.audit.query import AuditDB, Scope
from executor.audit.verify import VerifyResult, _opening, _table, verify, verify_reference
from executor.audit.verify_sql import verify_sql
from executor.persistence.copy import copy_ledger
from tests.audit.scenario import Built
from tests.ledger_backends import PgDatabases, commit_elsewhere, needs_pg

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000
PAIRS = {"BTCUSDT": ("BTC", "USDT"), "ETHUSDT": ("ETH", "USDT")}


def _on_backend(path: Path, backend: str, pg: PgDatabases | None) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    if backend == "postgresql":
        needs_pg()
        assert pg is not None
        pg_url = asyncio.run(pg.create(migrated=True))
        asyncio.run(copy_ledger(url, pg_url))
        return pg_url
    return url


def _sql_confirms(db: AuditDB, scope: Scope) -> bool:
    assets, opening_ids, ref, base_ms, notes = _opening(db, scope)
    res = VerifyResult(ref, {}, notes=notes)
    opening = {a: (s.total, s.since_ms) for a, s in assets.items()}
    return verify_sql(db, scope, res, opening, opening_ids, base_ms, set(), _table(db, scope))


def _same(url: str, scopes: list[Scope]) -> list[bool]:
    used = []
    with AuditDB.from_url(url) as db:
        for scope in scopes:
            assert verify(db, scope, use_checkpoint=False) == verify_reference(db, scope), scope
            plain = Scope(scope.run_id, scope.since_ms, scope.until_ms)
            used.append(_sql_confirms(db, plain))
            if not db.sqlite:
                _shapes_agree(db, plain)
    return used


def _shapes_agree(db: AuditDB, scope: Scope) -> None:
    """On PostgreSQL the per-asset statements (``_ordered``) give exactly the one statement's
    result: whole, and split over two connections (by asset, and with the heaviest asset
    split in time as well)."""
    import executor.audit.verify_sql as vs

    one = _with(vs, ORDERED=False)(lambda: _sql_result(db, scope, None))
    assert _sql_result(db, scope, None) == one, scope
    assert _with(vs, PARALLEL_MIN_FILLS=1)(lambda: _sql_result(db, scope, vs.AUTO)) == one, scope
    forced = _with(vs, PARALLEL_MIN_FILLS=1, DOMINANT=0.0)(lambda: _sql_result(db, scope, vs.AUTO))
    assert forced == one, scope
    # too many busy assets: the one statement (the guard in ``_ordered``)
    assert _with(vs, MAX_BUSY_ASSETS=-1)(lambda: _sql_result(db, scope, None)) == one, scope


def _with(module: object, **values: object) -> Callable[[Callable[[], T]], T]:
    """Run a callable with ``module``'s attributes set to ``values``, then restore them."""

    def run(call: Callable[[], T]) -> T:
        old = {k: getattr(module, k) for k in values}
        for k, v in values.items():
            setattr(module, k, v)
        try:
            return call()
        finally:
            for k, v in old.items():
                setattr(module, k, v)

    return run


_fill = st.tuples(
    st.sampled_from(list(PAIRS)),
    st.sampled_from(["BUY", "SELL"]),
    st.integers(1, 3000),  # time step
    st.sampled_from(["0.5", "0.25000000", "1"]),
    st.sampled_from(["100", "99.5", "101.25000000"]),
    st.integers(0, 3),  # fee: quote, base, BNB, none
    st.integers(0, 3),  # 0: record no balance; 1: right; 2: right but in the same ms; 3: wrong
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fills=st.lists(_fill, min_size=1, max_size=12),
    updates=st.lists(st.tuples(st.integers(0, 30_000), st.sampled_from(["BNB", "USDT"]),
                               st.sampled_from(["1", "-0.5"])), max_size=2),
    snapshot=st.booleans(),
)
def test_set_based_verify_equals_the_reference(
    ledger_backend: str,
    empty_ledger: Path,
    tmp_path_factory: pytest.TempPathFactory,
    pg_databases: PgDatabases | None,
    fills: list,
    updates: list,
    snapshot: bool,
) -> None:
    path = tmp_path_factory.mktemp("vs") / "ledger.db"
    shutil.copyfile(empty_ledger, path)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO runs (id, version, profile, config_hash, started_ms) VALUES (1,'t','sim','x',?)", (T0,)
    )
    bal = {"USDT": D("1000"), "BTC": D("5"), "ETH": D("10"), "BNB": D("2")}
    ev = (
        "INSERT INTO balance_events (kind, asset, free, locked, delta, source, event_ref, event_ms, "
        "received_ms, run_id) VALUES (?,?,?,?,?,?,?,?,?,1)"
    )
    if snapshot:
        for a, v in bal.items():
            conn.execute(ev, ("rest_snapshot", a, str(v), "0", None, "rest_snapshot", "s", T0, T0))
    t = T0
    for i, (at, asset, delta) in enumerate(updates):
        conn.execute(ev, ("balanceUpdate", asset, None, None, delta, "stream", f"u{i}", T0 + at, T0 + at))
    applied = sorted(((T0 + at, a, D(dl)) for at, a, dl in updates), key=lambda u: u[0])
    ui = 0
    for tid, (sym, side, step, qty, price, fee_kind, record) in enumerate(fills, start=1):
        t += step
        base, quote = PAIRS[sym]
        quote_qty = D(qty) * D(price)
        fees = [(quote, D("0.01")), (base, D("0.001")), ("BNB", D("0.0001")), (None, D(0))]
        fee_asset, fee = fees[fee_kind]
        conn.execute(
            "INSERT INTO fills (symbol, trade_id, side, price, qty, quote_qty, commission, commission_asset, "
            "trade_ms, source, received_ms, run_id) VALUES (?,?,?,?,?,?,?,?,?,'stream',?,1)",
            (sym, tid, side, price, qty, str(quote_qty), str(fee), fee_asset, t, t + 1),
        )
        while ui < len(applied) and applied[ui][0] <= t:
            bal[applied[ui][1]] += applied[ui][2]
            ui += 1
        sign = 1 if side == "BUY" else -1
        bal[base] += sign * D(qty)
        bal[quote] -= sign * quote_qty
        if fee_asset:
            bal[fee_asset] -= fee
        if record:
            value = bal[quote] + (D("0.01") if record == 3 else 0)
            at = t if record == 2 else t + 1
            row = ("outboundAccountPosition", quote, str(value), "0", None, "stream", f"o{tid}", at, at)
            conn.execute(ev, row)
    conn.commit()
    conn.close()
    url = _on_backend(path, ledger_backend, pg_databases)
    _same(url, [Scope(), Scope(since_ms=T0 + 1500), Scope(until_ms=T0 + 4000), Scope(run_id=1)])


def _bench():  # the bench's ledger builder
    spec = importlib.util.spec_from_file_location("audit_scale", ROOT / "bench" / "audit_scale.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_ledger_is_confirmed_by_sql(
    ledger_backend: str, tmp_path: Path, pg_databases: PgDatabases | None
) -> None:
    path = tmp_path / "ledger.db"
    _bench().build(path, 2000)
    url = _on_backend(path, ledger_backend, pg_databases)
    used = _same(url, [Scope(), Scope(run_id=1), Scope(since_ms=T0 + 5000)])
    assert used[0] and used[1]
    with AuditDB.from_url(url) as db:
        assert verify(db, Scope(), use_checkpoint=False).ok


def _sql_result(db: AuditDB, scope: Scope, cut: int | None) -> tuple[bool, VerifyResult]:
    assets, opening_ids, ref, base_ms, notes = _opening(db, scope)
    res = VerifyResult(ref, {}, notes=notes)
    opening = {a: (s.total, s.since_ms) for a, s in assets.items()}
    ok = verify_sql(db, scope, res, opening, opening_ids, base_ms, set(), _table(db, scope), cut=cut)
    return ok, res


def _ledger_times(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        ts = {r[0] for r in conn.execute("SELECT coalesce(trade_ms, received_ms) FROM fills")}
        ts |= {r[0] for r in conn.execute("SELECT coalesce(event_ms, received_ms) FROM balance_events")}
    return sorted(t for t in ts if t is not None)


def _every_cut_same(url: str, path: Path, scopes: list[Scope]) -> int:
    """On PostgreSQL, the statement split in time at every cut the ledger allows (each time
    a row has, the millisecond before it, before the first) gives exactly the one-statement
    result; returns how many scopes the statement confirmed."""
    times = _ledger_times(path)
    cuts = sorted({times[0] - 1, *times, *(t - 1 for t in times)})
    confirmed = 0
    import executor.audit.verify_sql as vs

    with AuditDB.from_url(url) as db:
        for scope in scopes:
            whole = _sql_result(db, scope, None)
            confirmed += whole[0]
            for cut in cuts:
                assert _sql_result(db, scope, cut) == whole, (scope, cut)
            # the one statement, whole and split at every cut, gives the same
            one = _with(vs, ORDERED=False)
            assert one(lambda: _sql_result(db, scope, None)) == whole, scope  # noqa: B023
            for cut in cuts[:: max(1, len(cuts) // 8)]:
                assert one(lambda: _sql_result(db, scope, cut)) == whole, (scope, cut)  # noqa: B023
    return confirmed


def test_split_in_time_on_postgresql_equals_one_statement(
    scenario: Built, pg_databases: PgDatabases | None
) -> None:
    """The hand-made scenario (openings, balanceUpdates, same-millisecond deltas), whole and
    scoped: every cut gives the one statement's result, and that is the reference's."""
    url = _on_backend(scenario.path, "postgresql", pg_databases)
    scopes = [Scope(), Scope(since_ms=T0 + 2000), Scope(until_ms=T0 + 3050), Scope(run_id=scenario.run_id)]
    assert _every_cut_same(url, scenario.path, scopes) >= 1
    _same(url, scopes)


def test_split_in_time_on_postgresql_generated_and_tampered(
    tmp_path: Path, pg_databases: PgDatabases | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bench's ledger: confirmed through the split (taken above the threshold), and a
    wrong balance after the cut, or a missing fill before it, is not confirmed."""
    import executor.audit.verify_sql as vs

    path = tmp_path / "ledger.db"
    _bench().build(path, 600)
    url = _on_backend(path, "postgresql", pg_databases)
    assert _every_cut_same(url, path, [Scope(), Scope(since_ms=T0 + 5000)]) == 2
    monkeypatch.setattr(vs, "PARALLEL_MIN_FILLS", 1)
    used: list[int] = []
    real = vs._join
    monkeypatch.setattr(vs, "_join", lambda a, b: (used.append(1), real(a, b))[1])
    with AuditDB.from_url(url) as db:
        assert _sql_result(db, Scope(), vs.AUTO)[0]  # by asset on two connections
        monkeypatch.setattr(vs, "DOMINANT", 0.0)
        assert _sql_result(db, Scope(), vs.AUTO)[0]  # and USDT split in time
        assert used
        assert verify(db, Scope(), use_checkpoint=False) == verify_reference(db, Scope())
        _shapes_agree(db, Scope())
    times = _ledger_times(path)
    middle = times[len(times) // 2]
    for sql in (
        "UPDATE balance_events SET free = free + 1 WHERE id = (SELECT max(id) FROM balance_events "
        "WHERE kind = 'outboundAccountPosition' AND asset = 'USDT')",
        "DELETE FROM fills WHERE id = (SELECT min(id) FROM fills)",
    ):
        tampered = tmp_path / f"t{len(used)}.db"
        shutil.copyfile(path, tampered)
        with sqlite3.connect(tampered) as conn:
            conn.execute(sql)
        turl = _on_backend(tampered, "postgresql", pg_databases)
        with AuditDB.from_url(turl) as db:
            assert not _sql_result(db, Scope(), middle)[0]
            assert not _sql_result(db, Scope(), None)[0]
            assert not _sql_result(db, Scope(), vs.AUTO)[0]
            monkeypatch.setattr(vs, "ORDERED", False)
            assert not _sql_result(db, Scope(), middle)[0]
            assert not _sql_result(db, Scope(), None)[0]
            monkeypatch.setattr(vs, "ORDERED", True)
            assert verify(db, Scope(), use_checkpoint=False) == verify_reference(db, Scope())
        used.append(1)


def test_helper_connections_read_the_readers_snapshot(
    scenario: Built, pg_databases: PgDatabases | None
) -> None:
    """``SqlReader.concurrently``'s helper connections read the audit's one snapshot: a fill
    committed after the reader began is seen by none of them (as by the reader itself)."""


    url = _on_backend(scenario.path, "postgresql", pg_databases)
    count = "SELECT count(*), max(id) FROM fills"
    with AuditDB.from_url(url) as db:
        before = db.conn.execute(count).fetchone()

        commit_elsewhere(url, (
            "INSERT INTO fills (symbol, trade_id, side, price, qty, quote_qty, commission, "
            "commission_asset, trade_ms, source, received_ms) "
            "SELECT symbol, trade_id + 100000, side, "
            "price, qty, quote_qty, commission, commission_asset, trade_ms, source, received_ms "
            "FROM fills ORDER BY id LIMIT 1"
        ))
        seen = db.conn.concurrently([(count, []), (count, []), (count, [])])
        assert [tuple(r[0]) for r in seen] == [tuple(before)] * 3
        assert tuple(db.conn.submit([(count, [])]).result()[0][0]) == tuple(before)
    with AuditDB.from_url(url) as db:
        assert db.conn.execute(count).fetchone()[0] == before[0] + 1
