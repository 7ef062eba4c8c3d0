"""The audit a trader reads, on the hand-computed ledger of ``tests/audit/scenario.py``:
``audit trades`` and ``audit daily`` rows, balances and positions in the report, plain
numbers, an unknown run, read-only ledgers (nothing written beside them) and the plot."""

from __future__ import annotations

import hashlib
import io
import os
import re
import sqlite3
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import pytest

from executor.audit.daily import daily
from executor.audit.query import AuditDB, Scope
from executor.audit.render import render_json, render_table, write_fills_csv
from executor.audit.report import Pairs, PriceSeries, build_report
from executor.audit.tables import trade_rows
from executor.cli import main
from tests.audit.scenario import Built

ROOT = Path(__file__).resolve().parents[2]


def test_trades_rows(scenario: Built, capsys: pytest.CaptureFixture[str]) -> None:
    with AuditDB(scenario.path) as db:
        rep = build_report(db, Scope(), keep_rows=True)
        rows = trade_rows(rep.fills, {o.id: o for o in rep.orders}, rep.fill_slippage)
    # Slippage vs the decision mid: B bought at 128 against a mid of 125 (+240 bps), D sold
    # at 100 against 102.4 (+234.375 bps); A and C traded at the mid.
    assert rows == [
        ["2026-01-01T00:00:01.015Z", "BTCUSDT", "BUY", "1", "100", "0.1 USDT", "0.00", "-"],
        ["2026-01-01T00:00:02.045Z", "BTCUSDT", "BUY", "0.4", "128", "0.0004 BNB", "+240.00", "-"],
        ["2026-01-01T00:00:02.055Z", "BTCUSDT", "BUY", "0.6", "128", "0.0006 BNB", "+240.00", "-"],
        ["2026-01-01T00:00:03.080Z", "BTCUSDT", "SELL", "1.5", "160", "0.002 BTC", "0.00", "-"],
        ["2026-01-01T00:00:04.035Z", "BTCUSDT", "SELL", "0.2", "100", "0.0003 BNB", "+234.38", "-"],
    ]
    buf = io.StringIO()
    write_fills_csv(rep.fills, buf, rep.fill_slippage)
    header, first = buf.getvalue().splitlines()[:2]
    assert header.endswith(",time_utc") and first.endswith(",2026-01-01T00:00:01.015Z")  # the exports too
    assert main(["audit", "trades", "--db", scenario.url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("TRADES (5, everything)") and "2026-01-01T00:00:03.080Z  BTCUSDT  SELL" in out


def test_daily_rows(scenario: Built, capsys: pytest.CaptureFixture[str]) -> None:
    with AuditDB(scenario.path) as db:
        (day,) = daily(db.fills(Scope()), Pairs(db.known_assets()), PriceSeries(db))
    # Fees in USDT: 0.1 + BNB (0.0004 + 0.0006 + 0.0003) x 600 + 0.002 BTC x 160 = 1.2
    # Round trip 1, C sells 1.502 (incl. its BTC fee): 1 @100, 0.4 @128, 0.102 @128 -> +76.064;
    #   its fees 0.32 + 0.1 + 0.24 + 0.102/0.6 x 0.36 = 0.7212: a win.
    # Round trip 2, D sells 0.2 of the 0.6 @128 lot at 100: -5.6; fees 0.18 + 0.12 = 0.30: a loss.
    assert (day.day, day.quote, day.fills) == ("2026-01-01", "USDT", 5)
    assert (day.volume, day.fees) == (D("488"), D("1.2"))
    assert (day.gross, day.realized) == (D("70.464"), D("69.264"))
    assert (day.round_trips, day.wins, day.win_rate) == (2, 1, D("0.5"))
    assert (day.trip_gross, day.trip_fees) == (D("70.464"), D("1.0212"))
    assert (day.edge_per_trip, day.fees_per_trip) == (D("35.232"), D("0.5106"))
    assert main(["audit", "daily", "--db", scenario.url]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("2026-01-01"))
    assert row.split() == ["2026-01-01", "USDT", "5", "488.00", "1.2000", "+70.4640", "+69.2640", "2", "1",
                           "50.0%", "+35.2320", "0.5106"]


def test_report_has_balances_positions_and_names_its_price_source(scenario: Built) -> None:
    with AuditDB(scenario.path) as db:
        rep = build_report(db, Scope())
    assert [(b.asset, b.free, b.locked) for b in rep.balances] == [
        ("BNB", D("0.9987"), D(0)), ("BTC", D("1.298"), D(0)), ("USDT", D("1081.9"), D(0))]
    # figures.positions: 1 + 0.4 + 0.6 - (1.5 + 0.002) - 0.2
    assert rep.positions == {"BTC": D("0.298")}
    text = render_table(rep)
    assert "BALANCES (as last recorded, 2026-01-01T00:00:06.000Z)" in text
    assert "POSITIONS (net of our fills in scope" in text and "BTC       0.298" in text
    assert "mark price" not in text
    assert "last known price" in text and "taken from" in text and "last fill" in text


def test_numbers_are_plain_in_json(scenario: Built) -> None:
    with AuditDB(scenario.path) as db:
        text = render_json(build_report(db, Scope()))
    assert "E+" not in text and "E-" not in text
    # fill ratio 3.7 / 4 ... and the means are cut to 12 places, not 50 digits
    assert '"fill_ratio": "0.925"' in text
    assert '"positions": {\n    "BTC": "0.298"' in text and '"asset": "USDT",\n      "free": "1081.9"' in text
    numbers = re.findall(r'"-?\d+\.(\d+)"', text)
    assert numbers and max(len(places) for places in numbers) <= 12


def test_unknown_run_exits_2_with_one_line(scenario: Built) -> None:
    p = subprocess.run([sys.executable, str(ROOT / "run.py"), "audit", "--run", "99", "--db", scenario.url],
                       capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [f"audit: no run 99 in {scenario.path} (it holds run 1)"]
    assert p.stdout == ""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _state(path: Path) -> tuple[str, int, list[str]]:
    return _digest(path), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


def test_an_audit_writes_nothing_beside_the_ledger(scenario: Built,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    before = _state(scenario.path)
    with AuditDB(scenario.path) as db:
        assert db.opened_as == "immutable"
        assert db.runs(Scope())[0]["id"] == 1
    for command in ("report", "trades", "daily", "verify"):
        assert main(["audit", command, "--db", scenario.url]) == 0, command
    capsys.readouterr()
    assert _state(scenario.path) == before  # same bytes, same mtime, no -wal or -shm created


def test_a_ledger_in_a_read_only_folder_can_be_audited(scenario: Built,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = scenario.path.parent
    scenario.path.chmod(0o444)
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: chmod does not stop writes (the immutable open is tested above)")
        assert main(["audit", "--db", scenario.url]) == 0
        assert "69.2640" in capsys.readouterr().out
    finally:
        folder.chmod(0o755)
        scenario.path.chmod(0o644)


def test_a_ledger_with_a_wal_is_read_through_a_copy_when_it_cannot_be_opened_in_place(
        scenario: Built, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    writer = sqlite3.connect(scenario.path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("UPDATE balances SET free = '1234.5' WHERE asset = 'USDT'")
    writer.commit()  # in the WAL only, the writer still open: a bot at work
    wal = scenario.path.with_name(scenario.path.name + "-wal")
    assert wal.stat().st_size > 0
    real = sqlite3.connect

    def no_ro_in_place(target: object, *a: object, **kw: object) -> sqlite3.Connection:
        if isinstance(target, str) and "mode=ro" in target:
            raise sqlite3.OperationalError("unable to open database file")  # as in a read-only folder
        return real(target, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", no_ro_in_place)
    main_before = _digest(scenario.path)
    try:
        with AuditDB(scenario.path) as db:
            assert db.opened_as == "copy"
            assert {b["asset"]: b["free"] for b in db.balances()}["USDT"] == D("1234.5")  # the WAL's row
        assert "reading a copy" in capsys.readouterr().err
        assert _digest(scenario.path) == main_before
    finally:
        writer.close()


def test_the_ledger_is_read_through_a_memory_map_also_beside_a_writing_bot(scenario: Built) -> None:
    # mmap (session 9): the pages come from a mapping of the file, and a writer's commits in
    # the WAL, and the file growing when they are checkpointed, are seen by later readers.
    with AuditDB(scenario.path) as db:
        assert db.opened_as == "immutable"
        assert db.conn.execute("PRAGMA mmap_size").fetchone()[0] > 0
    writer = sqlite3.connect(scenario.path)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("UPDATE balances SET free = '1234.5' WHERE asset = 'USDT'")
        writer.commit()  # in the WAL only
        with AuditDB(scenario.path) as db:
            assert db.opened_as == "read-only"
            assert db.conn.execute("PRAGMA mmap_size").fetchone()[0] > 0
            assert {b["asset"]: b["free"] for b in db.balances()}["USDT"] == D("1234.5")
            size = scenario.path.stat().st_size
            # The file grows under the open reader: 2,000 rows checkpointed into it.
            writer.execute("CREATE TABLE pad (x TEXT)")
            writer.executemany("INSERT INTO pad VALUES (?)", [("x" * 500,)] * 2000)
            writer.execute("UPDATE balances SET free = '99' WHERE asset = 'USDT'")
            writer.commit()
            writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            assert scenario.path.stat().st_size > size
            assert {b["asset"]: b["free"] for b in db.balances()}["USDT"] == D("99")
    finally:
        writer.close()


def test_plot_goes_to_the_ledger_folder_by_default(scenario: Built, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    assert main(["audit", "--plot", "--db", scenario.url]) == 0
    png = scenario.path.parent / "ledger-BTCUSDT.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in capsys.readouterr().err
    assert main(["audit", "--plot", "--run", "1", "--plot-dir", str(tmp_path / "charts"), "--db",
                 scenario.url]) == 0
    assert (tmp_path / "charts" / "ledger-run1-BTCUSDT.png").read_bytes()[:4] == b"\x89PNG"
