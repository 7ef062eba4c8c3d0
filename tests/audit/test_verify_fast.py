"""The fast path of ``audit verify`` gives exactly the reference's result: on the hand-made
scenario (with balanceUpdates, several scopes), on a generated ledger (the bench's builder,
small), and, through the fallback, on tampered copies of both."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from executor.audit.query import AuditDB, Scope
from executor.audit.verify import verify, verify_reference
from tests.audit.scenario import T0, Built, tamper

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("audit_scale", ROOT / "bench" / "audit_scale.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("verify-fast") / "ledger.db"
    _bench().build(path, 3000)
    return path


def _both(path: Path, scope: Scope) -> tuple[object, object]:
    with AuditDB(path) as db:
        return verify(db, scope), verify_reference(db, scope)


def _fast_used(path: Path, scope: Scope, monkeypatch: pytest.MonkeyPatch) -> bool:
    import executor.audit.verify as v

    called: list[bool] = []
    real = v.verify_reference

    def spy(db: AuditDB, sc: Scope):
        called.append(True)
        return real(db, sc)

    monkeypatch.setattr(v, "verify_reference", spy)
    with AuditDB(path) as db:
        v.verify(db, scope)
    monkeypatch.undo()
    return not called


@pytest.mark.parametrize(
    "scope",
    [
        Scope(),
        Scope(run_id=1),
        Scope(since_ms=T0 + 2000),
        Scope(until_ms=T0 + 3050),
        Scope(since_ms=T0 + 3000),
    ],
)
async def test_scenario_same_as_reference(scenario: Built, scope: Scope) -> None:
    fast, ref = _both(scenario.path, scope)
    assert fast == ref


def test_generated_ledger_takes_the_fast_path(generated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, ref = _both(generated, Scope())
    assert fast == ref and fast.ok and fast.fills == 3000  # type: ignore[attr-defined]
    assert _fast_used(generated, Scope(), monkeypatch)
    # exponents too: the derived text is the reference's text
    assert {a: str(v) for a, v in fast.derived.items()} == {  # type: ignore[attr-defined]
        a: str(v)
        for a, v in ref.derived.items()  # type: ignore[attr-defined]
    }


@pytest.mark.parametrize("scope", [Scope(since_ms=T0 + 5000), Scope(until_ms=T0 + 20_000)])
def test_generated_ledger_scoped(generated: Path, scope: Scope) -> None:
    fast, ref = _both(generated, scope)
    assert fast == ref


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE balance_events SET free = '1.5' WHERE id = (SELECT id FROM balance_events WHERE "
        "kind = 'outboundAccountPosition' AND asset = 'BTC' ORDER BY id LIMIT 1 OFFSET 100)",
        "DELETE FROM fills WHERE id = 1234",
        "UPDATE fills SET commission = '0' WHERE id = 77",
        "UPDATE fills SET side = NULL WHERE id = 500",
        # a commission in an asset no balance lists (the fast path reads it as text, not a code)
        "UPDATE fills SET commission_asset = 'XYZ', commission = '0.5' WHERE id = 600",
        "UPDATE balances SET locked = '0.00000001' WHERE asset = 'USDT'",
        "UPDATE balance_events SET locked = '2' WHERE id = (SELECT id FROM balance_events WHERE "
        "kind = 'outboundAccountPosition' AND asset = 'ETH' ORDER BY id DESC LIMIT 1)",
    ],
)
def test_tampered_generated_ledger_same_as_reference(generated: Path, tmp_path: Path, sql: str) -> None:
    path = tmp_path / "ledger.db"
    shutil.copyfile(generated, path)
    tamper(path, sql)
    fast, ref = _both(path, Scope())
    assert fast == ref
    assert not fast.ok  # type: ignore[attr-defined]


async def test_tampered_scenario_same_as_reference(scenario: Built) -> None:
    tamper(scenario.path, "DELETE FROM fills WHERE trade_id = 5")
    fast, ref = _both(scenario.path, Scope())
    assert fast == ref and not fast.ok  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "sql",
    [
        None,
        "UPDATE balance_events SET free = '1.5' WHERE id = (SELECT id FROM balance_events WHERE "
        "kind = 'outboundAccountPosition' AND asset = 'USDT' ORDER BY id LIMIT 1 OFFSET 100)",
        "UPDATE balance_events SET free = '1.5' WHERE id = (SELECT id FROM balance_events WHERE "
        "kind = 'outboundAccountPosition' AND asset = 'BTC' ORDER BY id LIMIT 1 OFFSET 100)",
    ],
)
def test_split_across_two_processes_same_as_reference(
    generated: Path, tmp_path: Path, sql: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import executor.audit.verify_fast as vf

    monkeypatch.setattr(vf, "PARALLEL_MIN_FILLS", 1)
    path = tmp_path / "ledger.db"
    shutil.copyfile(generated, path)
    if sql:
        tamper(path, sql)
    with AuditDB(path) as db:
        assert vf._cut(db, Scope()) is not None
    fast, ref = _both(path, Scope())
    assert fast == ref
    assert fast.ok is (sql is None)
    if sql is None:
        assert _fast_used(path, Scope(), monkeypatch)  # type: ignore[attr-defined]


def _times(path: Path) -> list[int]:
    """Every time a delta or an observation of the ledger has, and one before them all."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        ts = {r[0] for r in conn.execute("SELECT coalesce(trade_ms, received_ms) FROM fills")}
        ts |= {r[0] for r in conn.execute("SELECT coalesce(event_ms, received_ms) FROM balance_events")}
    return sorted(t for t in ts if t is not None)


async def test_scenario_every_time_cut_same_as_reference(
    scenario: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The time split at every cut the scenario allows (its balanceUpdates, openings and
    same-millisecond deltas on either side, at the cut itself): the reference's result."""
    import executor.audit.verify as v
    import executor.audit.verify_fast as vf

    times = _times(scenario.path)
    cuts = sorted({times[0] - 1, *times, *(t - 1 for t in times)})
    fallbacks: list[int] = []
    real = v.verify_reference
    for scope in (Scope(), Scope(since_ms=T0 + 2000), Scope(until_ms=T0 + 3050)):
        with AuditDB(scenario.path) as db:
            ref = real(db, scope)
        for cut in cuts:
            monkeypatch.setattr(vf, "_cut", lambda db, scope, cut=cut: cut)
            spy = lambda db, sc, cut=cut: (fallbacks.append(cut), real(db, sc))[1]  # noqa: E731
            monkeypatch.setattr(v, "verify_reference", spy)
            with AuditDB(scenario.path) as db:
                assert verify(db, scope) == ref, (scope, cut)
    assert not fallbacks  # the fast path confirmed every one (the reference never ran)


@pytest.mark.parametrize(
    "sql",
    [
        # after the cut (the later half checks relative to the totals at the cut)
        "UPDATE balance_events SET free = '1.5' WHERE id = (SELECT id FROM balance_events WHERE "
        "kind = 'outboundAccountPosition' AND asset = 'USDT' ORDER BY id DESC LIMIT 1 OFFSET 100)",
        # before the cut: the earlier half's closing total is off by the fill, the later
        # half's offsets are not
        "DELETE FROM fills WHERE id = 700",
        "DELETE FROM fills WHERE id = 2900",
    ],
)
def test_split_in_time_tampered_same_as_reference(
    generated: Path, tmp_path: Path, sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import executor.audit.verify_fast as vf

    monkeypatch.setattr(vf, "PARALLEL_MIN_FILLS", 1)
    path = tmp_path / "ledger.db"
    shutil.copyfile(generated, path)
    tamper(path, sql)
    fast, ref = _both(path, Scope())
    assert fast == ref and not fast.ok  # type: ignore[attr-defined]


@pytest.mark.parametrize("scope", [Scope(), Scope(since_ms=T0 + 2000), Scope(until_ms=T0 + 3050)])
async def test_untimed_observations_counted_per_kind(scenario: Built, scope: Scope) -> None:
    """``count_untimed_observations`` (a seek per kind) counts what the plain scan counts."""
    import sqlite3

    tamper(scenario.path, "UPDATE balance_events SET event_ms = NULL WHERE id % 3 = 0")
    where, params = scope.where("received_ms", symbol_col=None)
    cond = (where + " AND" if where else " WHERE") + " kind != 'balanceUpdate' AND event_ms IS NULL"
    with sqlite3.connect(scenario.path) as conn:
        plain = conn.execute(f"SELECT count(*) FROM balance_events{cond}", params).fetchone()[0]
    with AuditDB(scenario.path) as db:
        assert db.count_untimed_observations(scope) == plain > 0
