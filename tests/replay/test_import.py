"""``run.py data import``: Binance's public CSV/ZIP files (columns as Binance documents them,
small samples committed in tests/replay/data) into a recording, which then replays."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.replay.format import RecordingError, load_manifest, read_lines
from executor.replay.importer import import_files
from executor.replay.runner import run_replay
from tests.replay.helpers import replay_config

DATA = Path(__file__).parent / "data"
BOOK = DATA / "BTCUSDT-bookTicker-2026-11-01.csv"
KLINES = DATA / "markPriceKlines" / "BTCUSDT-1m-2026-11-01.csv"
TRADES = DATA / "BTCUSDT-aggTrades-2026-11-01.csv"
T0 = 1_793_491_200_000
ROOT = Path(__file__).resolve().parents[2]


def zipped(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / (src.stem + ".zip")
    with zipfile.ZipFile(out, "w") as zf:
        zf.write(src, src.name)
    return out


def test_import_merges_the_files_in_time_order(tmp_path: Path) -> None:
    klines_zip = zipped(KLINES, tmp_path / "markPriceKlines")
    writer = import_files([BOOK, klines_zip, TRADES], tmp_path / "rec")
    manifest = load_manifest(tmp_path / "rec")
    assert manifest["symbols"] == ["BTCUSDT"] and manifest["complete"] is True
    assert sorted(manifest["kinds"]) == ["mark", "spot_book", "trade"]
    lines = list(read_lines(tmp_path / "rec"))
    assert writer.lines == len(lines) == 180 + 4 + 6
    assert [x.t for x in lines] == sorted(x.t for x in lines)
    first_book = next(x for x in lines if x.kind == "spot_book")
    assert first_book.t == T0 + 7  # event_time
    assert first_book.data == {
        "u": 5000000,
        "s": "BTCUSDT",
        "b": "59969.00",
        "B": "1.25000000",
        "a": "59970.00",
        "A": "0.80000000",
    }
    first_mark = next(x for x in lines if x.kind == "mark")
    assert (
        first_mark.t == T0 + 59_999
        and first_mark.data["p"] == "60000.00"
        and first_mark.data["r"] == "0.00000000"
    )
    first_trade = next(x for x in lines if x.kind == "trade")
    assert first_trade.t == T0 + 20_000  # microseconds brought back to ms
    assert first_trade.data["p"] == "59969.00000000" and first_trade.data["m"] is True


def test_a_futures_path_gives_futures_book_lines(tmp_path: Path) -> None:
    fut = tmp_path / "data" / "futures" / "um" / "daily" / "bookTicker" / "BTCUSDT"
    fut.mkdir(parents=True)
    shutil.copy(BOOK, fut / BOOK.name)
    import_files([fut / BOOK.name], tmp_path / "rec")
    line = next(iter(read_lines(tmp_path / "rec")))
    assert line.kind == "fut_book"
    assert line.data["e"] == "bookTicker" and line.data["E"] == T0 + 7 and line.data["T"] == T0 + 5


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("BTCUSDT-bookTicker-2026-11-01.csv", "1,abc,1,2,1,5,6\n", "best_bid_price 'abc' is not a decimal"),
        ("BTCUSDT-bookTicker-2026-11-01.csv", "1,2,3\n", "bookTicker rows have 7 columns"),
        ("BTCUSDT-trades-2026-11-01.csv", "1,2,3\n", "cannot tell the data type"),
    ],
)
def test_bad_files_are_refused_with_one_line(tmp_path: Path, name: str, body: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(RecordingError, match=message):
        import_files([path], tmp_path / "rec")


def test_cli_import_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "BTCUSDT-bookTicker-x.csv"
    bad.write_text("1,2,3\n")
    run = subprocess.run(
        [sys.executable, "run.py", "data", "import", str(bad), "--out", str(tmp_path / "r1")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "bookTicker rows have 7 columns" in run.stderr
    ok = subprocess.run(
        [sys.executable, "run.py", "data", "import", str(BOOK), "--out", str(tmp_path / "r2")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "imported 180 lines for BTCUSDT" in ok.stdout


async def test_an_imported_binance_csv_replays_and_trades(tmp_path: Path) -> None:
    import_files([BOOK, KLINES], tmp_path / "rec")
    # 1m mark klines: a mark a minute, so the staleness limit must exceed 60 s.
    cfg = replay_config(
        tmp_path, symbols=("BTCUSDT",), risk={"stale_after_s": "120"}, params={"max_inventory_quote": "50"}
    )
    result = await run_replay(cfg, tmp_path / "rec", speed=None, db=str(tmp_path / "l.db"))
    assert result.code == 0 and result.stats.lines == 184
    con = sqlite3.connect(tmp_path / "l.db")
    sides = {r[0]: r[1] for r in con.execute("select side, count(*) from fills group by side")}
    assert sides.get("BUY") and sides.get("SELL")
    prices = {Decimal(r[0]) for r in con.execute("select price from fills")}
    assert prices <= {Decimal("59970.00"), Decimal("60010.00")}  # the recorded touches


async def test_resting_orders_fill_on_recorded_trades_at_their_price(tmp_path: Path) -> None:
    # post_only: a LIMIT_MAKER bid at the recorded bid; the recorded aggTrades at that price
    # fill it as maker (the book alone never reaches it: its ask stays above).
    only_buys = tmp_path / "BTCUSDT-bookTicker-2026-11-01.csv"
    only_buys.write_text("\n".join(x for x in BOOK.read_text().splitlines() if "60010.00" not in x) + "\n")
    import_files([only_buys, KLINES, TRADES], tmp_path / "rec")
    cfg = replay_config(
        tmp_path,
        symbols=("BTCUSDT",),
        risk={"stale_after_s": "120"},
        params={"post_only": True, "quote_ttl_s": "30"},
    )
    result = await run_replay(cfg, tmp_path / "rec", speed=None, db=str(tmp_path / "l.db"))
    assert result.code == 0 and result.stats.trades == 6
    con = sqlite3.connect(tmp_path / "l.db")
    fills = con.execute("select price, qty, is_maker, trade_ms from fills order by trade_ms").fetchall()
    assert fills, "the recorded trades at our bid should fill it"
    for price, qty, is_maker, trade_ms in fills:
        assert Decimal(price) == Decimal("59969.00") and is_maker == 1
        assert Decimal(qty) <= Decimal("0.005")
        assert (trade_ms - T0 - 20_000) % 10_000 == 0  # at a recorded trade's time


decimals = st.decimals(
    min_value=Decimal("0.00000001"),
    max_value=Decimal("99999999"),
    places=8,
    allow_nan=False,
    allow_infinity=False,
).map(lambda d: f"{d:f}")


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 2**40), decimals, decimals, decimals, decimals, st.integers(0, 86_400_000)),
        min_size=1,
        max_size=20,
    )
)
def test_book_ticker_rows_import_exactly(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[int, str, str, str, str, int]]
) -> None:
    folder = tmp_path_factory.mktemp("imp")
    path = folder / "ETHUSDT-bookTicker-2026-11-01.csv"
    path.write_text("".join(f"{u},{b},{bq},{a},{aq},{T0 + t - 1},{T0 + t}\n" for u, b, bq, a, aq, t in rows))
    import_files([path], folder / "rec")
    got = [(x.t, x.data) for x in read_lines(folder / "rec")]
    want = sorted(
        ((T0 + t, {"u": u, "s": "ETHUSDT", "b": b, "B": bq, "a": a, "A": aq}) for u, b, bq, a, aq, t in rows),
        key=lambda r: r[0],
    )
    assert [t for t, _ in got] == [t for t, _ in want]
    assert sorted(map(str, got)) == sorted(map(str, want))  # exact strings, nothing re-formatted
