"""``verify_fast``'s concatenated reads (one row of ``group_concat`` columns instead of a
million tuples) and its text comparison of recorded balances: the same columns as the
row-wise reads, a fall back to them for any row they cannot carry, and ``verify`` still
the reference's result, also when a recorded text is not the expected total's text but the
same value."""

from __future__ import annotations

import shutil
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import executor.audit.verify_fast as vf
from executor.audit.query import AuditDB, Scope
from executor.audit.verify import VerifyResult, verify, verify_reference
from tests.audit.scenario import tamper
from tests.audit.test_verify_fast import _bench, _fast_used

_OBS = (
    " WHERE kind != 'balanceUpdate' AND event_ms IS NOT NULL AND (free IS NOT NULL OR locked IS NOT NULL)"
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("verify-concat") / "ledger.db"
    _bench().build(path, 2000)
    return path


def _copy(generated: Path, tmp_path: Path, sql: str | None) -> Path:
    path = tmp_path / "ledger.db"
    shutil.copyfile(generated, path)
    if sql:
        tamper(path, sql)
    return path


def _names(db: AuditDB) -> tuple[list[str], list[str]]:
    return db.distinct("fills", "symbol"), sorted(db.known_assets())


@pytest.mark.parametrize(
    ("sql", "carried"),
    [
        (None, True),
        # ids no longer follow time (and new ties): the concatenated read sorts
        ("UPDATE fills SET trade_ms = trade_ms + 7000 WHERE id % 97 = 0", True),
        ("UPDATE fills SET trade_ms = (SELECT min(trade_ms) FROM fills) WHERE id % 50 = 3", True),
        ("UPDATE fills SET trade_ms = NULL WHERE id % 31 = 0", True),  # the receive time
        ("UPDATE fills SET side = NULL WHERE id = 500", False),
        ("UPDATE fills SET commission_asset = 'XYZ' WHERE id = 600", False),
        ("UPDATE fills SET commission_asset = NULL WHERE id = 601", False),
        ("UPDATE fills SET qty = '1,5' WHERE id = 602", False),
    ],
)
@pytest.mark.parametrize("window", ["", " AND coalesce(trade_ms, received_ms) <= ?"])
def test_fill_columns_equal_row_wise(generated: Path, tmp_path: Path, sql: str | None, carried: bool,
                                     window: str) -> None:
    path = _copy(generated, tmp_path, sql)
    with AuditDB(path) as db:
        symbols, names = _names(db)
        lo, hi = db.conn.execute("SELECT min(trade_ms), max(trade_ms) FROM fills").fetchone()
        params = [(lo + hi) // 2] if window else []
        fwhere = " WHERE 1 = 1" + window
        cols = vf._fill_columns(db, symbols, names, fwhere, params)
        rows = vf._fill_rows(db, symbols, names, fwhere, params)
    assert (cols is not None) is carried
    if cols is not None:
        assert [list(c) for c in cols] == [list(c) for c in rows]
        assert len(rows[0]) > 100


@pytest.mark.parametrize(
    ("sql", "carried"),
    [
        (None, True),
        ("UPDATE balance_events SET locked = '0.0' WHERE id % 5 = 0", True),  # zero: free alone
        ("UPDATE balance_events SET locked = NULL WHERE id % 7 = 0", True),
        ("UPDATE balance_events SET locked = '0.5' WHERE id % 11 = 0", False),
        ("UPDATE balance_events SET free = NULL, locked = '3' WHERE id = 40", False),
        ("UPDATE balance_events SET free = '1,5' WHERE id = 41", False),
    ],
)
def test_observations_concat_equal_row_wise(generated: Path, tmp_path: Path, sql: str | None,
                                            carried: bool) -> None:
    path = _copy(generated, tmp_path, sql)
    with AuditDB(path) as db:
        _, names = _names(db)
        concat = vf._observations_concat(db, names, _OBS, [])
        rows = vf._observations_rows(db, names, _OBS, [])
    assert rows is not None and sum(len(v[0]) for v in rows.values()) > 1000
    assert (concat is not None) is carried
    if concat is not None:
        # every locked zero or none: the row-wise read says so too (its locked list is None)
        assert concat == rows



def _verified(generated: Path, tmp_path: Path, sql: str, split: bool,
              monkeypatch: pytest.MonkeyPatch) -> tuple[VerifyResult, VerifyResult, Path]:
    """``verify`` and ``verify_reference`` of a copy of ``generated`` changed by ``sql``, in
    one process or split in two."""
    if split:
        monkeypatch.setattr(vf, "PARALLEL_MIN_FILLS", 1)
    path = _copy(generated, tmp_path, sql)
    with AuditDB(path) as db:
        return verify(db, Scope()), verify_reference(db, Scope()), path

@pytest.mark.parametrize(
    "sql",
    [
        # the same values in other texts: the text comparison misses them, Decimals agree
        "UPDATE balance_events SET free = free || '000' "
        "WHERE kind = 'outboundAccountPosition' AND id % 7 = 0",
        "UPDATE balance_events SET free = '0' || free WHERE kind = 'outboundAccountPosition' AND id % 3 = 1",
        # a zero locked written as a non-zero-looking text of zeros, and free split into free + locked
        "UPDATE balance_events SET locked = '00.000' WHERE id % 5 = 0",
        "UPDATE balance_events SET free = printf('%.8f', free - 1), locked = '1' "
        "WHERE kind = 'outboundAccountPosition' AND id % 13 = 0 AND free > 10",
    ],
)
@pytest.mark.parametrize("split", [False, True])
def test_other_texts_same_values_confirmed(generated: Path, tmp_path: Path, sql: str, split: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fast, ref, path = _verified(generated, tmp_path, sql, split, monkeypatch)
    assert fast == ref and fast.ok
    assert _fast_used(path, Scope(), monkeypatch)


@pytest.mark.parametrize(
    "sql",
    [
        # a value one unit off in the last place, and one whose text only looks like the total
        "UPDATE balance_events SET free = printf('%.8f', free + 0.00000001) WHERE id = "
        "(SELECT id FROM balance_events WHERE asset = 'USDT' ORDER BY id LIMIT 1 OFFSET 300)",
        "UPDATE balance_events SET free = free || '1' WHERE id = "
        "(SELECT id FROM balance_events WHERE asset = 'BTC' ORDER BY id DESC LIMIT 1 OFFSET 50)",
    ],
)
@pytest.mark.parametrize("split", [False, True])
def test_tampered_text_same_as_reference(generated: Path, tmp_path: Path, sql: str, split: bool,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fast, ref, _ = _verified(generated, tmp_path, sql, split, monkeypatch)
    assert fast == ref and not fast.ok


_dec = st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**12), max_value=10**12, places=None)
_text = st.one_of(
    _dec.map(str),
    _dec.map(lambda d: f"{d:f}"),
    _dec.map(lambda d: f"{d:.8f}"),
    st.from_regex(r"\A-?0*[0-9]{1,6}(\.[0-9]{0,10})?\Z"),
)


@given(expected=_dec, free=_text, locked=st.one_of(st.none(), _text))
@settings(max_examples=400, deadline=None)
def test_text_comparison_against_decimal(expected: Decimal, free: str, locked: str | None) -> None:
    """The per-row rule: equal text means the row agrees, which is what the Decimals say; an
    unequal text is decided by ``_recorded``, the row-wise read's total (free + locked)."""
    if locked is None and free == str(expected):
        assert Decimal(free) == expected
    # ``verify_fast`` traps Inexact (a rounded sum sends the ledger to the reference): exact here
    with localcontext(prec=200):
        assert vf._recorded(free, locked) == Decimal(free) + (Decimal(locked) if locked is not None else 0)
        assert vf._recorded(None, locked) == (Decimal(locked) if locked is not None else 0)
