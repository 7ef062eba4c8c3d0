"""``python run.py data import FILE…``: Binance's public historical data files
(data.binance.vision daily/monthly ZIPs, or the CSV inside) into a recording.

Supported files and the columns Binance documents for them (a header row is optional;
older files have none):

* ``<SYMBOL>-bookTicker-<date>.csv`` (USDⓈ-M; the same layout for spot where published):
  ``update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time``
  → ``spot_book`` or ``fut_book`` lines at ``event_time``.
* ``<SYMBOL>-aggTrades-<date>.csv``: USDⓈ-M
  ``agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker``;
  spot adds an eighth column ``is_best_match`` (no header; timestamps in microseconds since
  2025, which are brought back to milliseconds) → ``trade`` lines.
* markPriceKlines ``<SYMBOL>-<interval>-<date>.csv`` (under a ``markPriceKlines`` folder, or
  with ``--kind markPriceKlines``):
  ``open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,
  taker_buy_quote_volume,ignore`` → one ``mark`` line per kline at ``close_time`` with the
  close as mark price. The files carry neither index price nor funding rate: the index is
  set to the mark and the funding rate to 0, and marks are as sparse as the interval (with
  1m klines, set ``[risk] stale_after_s`` above 60 or every mark looks stale).

Spot or futures: a path containing ``futures`` or ``/um/`` is USDⓈ-M, one containing
``spot`` is spot, otherwise ``--market`` decides (default spot). Rows of all files are
merged in time order into one recording.
"""

from __future__ import annotations

import csv
import heapq
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from executor.core.money import parse_decimal
from executor.replay.format import RecordingError, RecordingWriter

FUNDING_INTERVAL_MS = 8 * 3600 * 1000

Row = tuple[int, int, str, str, dict[str, Any]]  # (t, file order, kind, symbol, payload)


def _kind_of(path: Path, kind: str | None) -> str:
    if kind:
        return kind
    name = path.name
    if "bookTicker" in name:
        return "bookTicker"
    if "aggTrades" in name:
        return "aggTrades"
    if "markPriceKlines" in path.parts or "markPriceKlines" in name:
        return "markPriceKlines"
    raise RecordingError(
        f"{path}: cannot tell the data type from the name; pass --kind bookTicker|aggTrades|markPriceKlines"
    )


def _market_of(path: Path, market: str) -> str:
    text = path.as_posix().lower()
    if "futures" in text or "/um/" in text:
        return "futures"
    if "spot" in text:
        return "spot"
    return market


def _symbol_of(path: Path) -> str:
    sym = path.name.split("-", 1)[0].upper()
    if not sym.isalnum():
        raise RecordingError(f"{path}: the file name does not start with a symbol (SYMBOL-...)")
    return sym


def _text_rows(path: Path) -> Iterator[list[str]]:
    if path.suffix.lower() == ".zip":
        try:
            zf = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise RecordingError(f"{path}: not a readable ZIP ({exc})") from None
        with zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".csv")]
            if len(names) != 1:
                raise RecordingError(f"{path}: expected one CSV inside, found {len(names)}")
            with zf.open(names[0]) as raw:
                yield from csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        return
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            yield from csv.reader(fh)
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read ({exc.strerror})") from None


def _dec(text: str, path: Path, n: int, what: str) -> str:
    try:
        parse_decimal(text, what)
    except (ValueError, ArithmeticError, TypeError):
        raise RecordingError(f"{path}:{n}: {what} {text!r} is not a decimal") from None
    return text


def _int(text: str, path: Path, n: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RecordingError(f"{path}:{n}: {what} {text!r} is not an integer") from None


def _ms(value: int) -> int:
    return value // 1000 if value >= 10**14 else value  # spot files use µs since 2025


def _bool(text: str) -> bool:
    return text.strip().lower() in ("true", "1")


def parse_file(path: Path, *, kind: str | None = None, market: str = "spot", order: int = 0) -> list[Row]:
    """All rows of one file as recording lines, sorted by time."""
    kind = _kind_of(path, kind)
    symbol = _symbol_of(path)
    mkt = _market_of(path, market)
    rows: list[Row] = []
    for n, cols in enumerate(_text_rows(path), 1):
        if not cols or not cols[0].strip():
            continue
        if not cols[0].strip().lstrip("-").isdigit():
            if n == 1:
                continue  # header row
            raise RecordingError(f"{path}:{n}: unexpected row {','.join(cols)[:80]!r}")
        if kind == "bookTicker":
            if len(cols) < 7:
                raise RecordingError(f"{path}:{n}: bookTicker rows have 7 columns, found {len(cols)}")
            u = _int(cols[0], path, n, "update_id")
            b, bq, a, aq = (
                _dec(cols[i], path, n, name)
                for i, name in (
                    (1, "best_bid_price"),
                    (2, "best_bid_qty"),
                    (3, "best_ask_price"),
                    (4, "best_ask_qty"),
                )
            )
            tt, et = (
                _ms(_int(cols[5], path, n, "transaction_time")),
                _ms(_int(cols[6], path, n, "event_time")),
            )
            if mkt == "futures":
                d: dict[str, Any] = {
                    "e": "bookTicker",
                    "u": u,
                    "E": et,
                    "T": tt,
                    "s": symbol,
                    "b": b,
                    "B": bq,
                    "a": a,
                    "A": aq,
                }
                rows.append((et, order, "fut_book", symbol, d))
            else:
                rows.append(
                    (et, order, "spot_book", symbol, {"u": u, "s": symbol, "b": b, "B": bq, "a": a, "A": aq})
                )
        elif kind == "aggTrades":
            if len(cols) < 7:
                raise RecordingError(f"{path}:{n}: aggTrades rows have 7 or 8 columns, found {len(cols)}")
            t = _ms(_int(cols[5], path, n, "transact_time"))
            d = {
                "a": _int(cols[0], path, n, "agg_trade_id"),
                "p": _dec(cols[1], path, n, "price"),
                "q": _dec(cols[2], path, n, "quantity"),
                "T": t,
                "m": _bool(cols[6]),
                "market": mkt,
            }
            rows.append((t, order, "trade", symbol, d))
        elif kind == "markPriceKlines":
            if len(cols) < 7:
                raise RecordingError(f"{path}:{n}: kline rows have 12 columns, found {len(cols)}")
            close = _dec(cols[4], path, n, "close")
            ct = _ms(_int(cols[6], path, n, "close_time"))
            nxt = (ct // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS
            d = {
                "e": "markPriceUpdate",
                "E": ct,
                "s": symbol,
                "p": close,
                "i": close,
                "P": close,
                "r": "0.00000000",
                "T": nxt,
            }
            rows.append((ct, order, "mark", symbol, d))
        else:
            raise RecordingError(f"--kind {kind!r}: expected bookTicker, aggTrades or markPriceKlines")
    if not rows:
        raise RecordingError(f"{path}: no data rows")
    rows.sort(key=lambda r: r[0])
    return rows


def import_files(
    files: list[Path], out: Path, *, kind: str | None = None, market: str = "spot"
) -> RecordingWriter:
    """Convert ``files`` into one recording in ``out``; returns the closed writer (its counts)."""
    if not files:
        raise RecordingError("no files given")
    parsed = [parse_file(Path(f), kind=kind, market=market, order=i) for i, f in enumerate(files)]
    symbols = sorted({r[3] for rows in parsed for r in rows})
    kinds = sorted({r[2] for rows in parsed for r in rows})
    writer = RecordingWriter(
        out, source="import: " + ", ".join(Path(f).name for f in files)[:500], symbols=symbols, kinds=kinds
    )
    for t, _, k, sym, d in heapq.merge(*parsed, key=lambda r: (r[0], r[1])):
        writer.write(t, k, sym, d)
    writer.close()
    return writer


def data_command(args: Any) -> int:
    """Entry point of ``run.py data import``; one line and exit 2 on bad input."""
    import sys

    try:
        writer = import_files(
            [Path(f) for f in args.files], Path(args.out), kind=args.kind, market=args.market
        )
    except RecordingError as exc:
        print(f"data import: {exc}", file=sys.stderr)
        return 2
    print(
        f"imported {writer.lines} lines for {', '.join(writer.symbols)} into {args.out} "
        f"({len(writer.chunks)} chunk(s))"
    )
    return 0
