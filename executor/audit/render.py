"""Rendering the audit: readable plain-text tables, CSV and JSON, and the order/fill exports.

Display rounds (quote amounts to 4 places, bps to 2); CSV and JSON never do: every Decimal
is written as its exact text, so ``read_orders_csv(write_orders_csv(rows))`` gives back the
same rows. In the exports an empty cell is NULL.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import orjson

from executor.audit.numbers import amount, pct, plain
from executor.audit.numbers import quantity as _qty
from executor.audit.query import (
    FILL_COLUMNS,
    FILL_DECIMALS,
    ORDER_BOOLS,
    ORDER_COLUMNS,
    ORDER_DECIMALS,
    FillRow,
    OrderRow,
    fmt_iso,
    fmt_ms,
)
from executor.audit.report import OUTCOMES, AuditReport, Stats, SymbolReport, order_outcome
from executor.core.orders import Side
from executor.persistence.values import decimal_to_text

__all__ = [
    "read_fills_csv",
    "read_orders_csv",
    "render_csv",
    "render_json",
    "render_table",
    "report_dict",
    "write_fills_csv",
    "write_orders_csv",
    "write_out_dir",
]

_INT_ORDER = frozenset(
    {
        "id",
        "exchange_order_id",
        "run_id",
        "created_ms",
        "sent_ms",
        "acked_ms",
        "updated_ms",
        "exchange_update_ms",
        "decision_ms",
    }
)
_INT_FILL = frozenset(
    {"id", "trade_id", "order_id", "exchange_order_id", "trade_ms", "received_ms", "run_id"}
)


# ---------------------------------------------------------------- value formatting


def _q(value: Decimal | None, places: int) -> str:
    return amount(value, places)


def _stats(s: Stats, places: int = 2, unit: str = "") -> str:
    if not s.n:
        return "-"
    mean = _q(s.mean, places) if s.mean is not None else "-"
    return f"{mean} / {_q(Decimal(s.p50), places)} / {_q(Decimal(s.p99), places)}{unit} (n={s.n})"


def _ms_stats(s: Stats) -> str:
    if not s.n:
        return "-"
    return f"{s.p50} / {s.p99} ms (n={s.n})"


def _fees(rep: SymbolReport) -> str:
    if not rep.fees_by_asset:
        return "0"
    return ", ".join(f"{_qty(v)} {a}" for a, v in rep.fees_by_asset.items())


def _table(rows: Sequence[Sequence[str]], header: Sequence[str], right_from: int = 1) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        cells = [
            str(c).ljust(widths[i]) if i < right_from else str(c).rjust(widths[i]) for i, c in enumerate(r)
        ]
        return "  ".join(cells).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


# ---------------------------------------------------------------- the readable report


def _metric_rows(reps: Sequence[SymbolReport]) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    def row(label: str, fn: Any) -> tuple[str, list[str]]:
        return (label, [fn(r) for r in reps])

    sections = [
        (
            "Orders",
            [
                row("orders", lambda r: str(r.orders_total)),
                *[row(f"  {oc}", lambda r, oc=oc: str(r.orders.get(oc, 0))) for oc in OUTCOMES],
                row("  resolved from unknown", lambda r: str(r.resolved_from_unknown)),
                row("  external (not ours)", lambda r: str(r.external_orders)),
                row("fill ratio (qty)", lambda r: pct(r.fill_ratio)),
            ],
        ),
        (
            "Fills and volume",
            [
                row("fills", lambda r: str(r.fills)),
                row("bought (base)", lambda r: _qty(r.bought_qty)),
                row("sold (base)", lambda r: _qty(r.sold_qty)),
                row("bought (quote)", lambda r: _q(r.bought_quote, 4)),
                row("sold (quote)", lambda r: _q(r.sold_quote, 4)),
                row("maker share (quote vol)", lambda r: pct(r.maker_share)),
            ],
        ),
        (
            "Fees",
            [
                row("fees paid", _fees),
                row("fees in quote", lambda r: _q(r.fees_quote, 4)),
                row(
                    "unconverted fees",
                    lambda r: ", ".join(f"{_qty(v)} {a}" for a, v in r.fees_unconverted.items()) or "-",
                ),
            ],
        ),
        (
            "PnL (quote, net of fees)",
            [
                row("realized FIFO", lambda r: _q(r.realized_fifo, 4)),
                row("realized average cost", lambda r: _q(r.realized_avg, 4)),
                row("realized FIFO before fees", lambda r: _q(r.realized_fifo_gross, 4)),
                row("closing inventory (base)", lambda r: _qty(r.position_qty)),
                row("bot position (own orders, base)", lambda r: _qty(r.own_position_qty)),
                row("last known price", lambda r: "-" if r.mark_price is None else f"{_qty(r.mark_price)}"),
                row("  taken from", lambda r: r.mark_source or "-"),
                row("  recorded at", lambda r: fmt_iso(r.mark_ms)),
                row("inventory value at it", lambda r: _q(r.market_value, 4)),
                row("unrealized FIFO at it", lambda r: _q(r.unrealized_fifo, 4)),
            ],
        ),
        (
            "Execution (mean / p50 / p99)",
            [
                row("slippage vs mid, bps", lambda r: _stats(r.slippage_mid_bps)),
                row("slippage vs touch, bps", lambda r: _stats(r.slippage_touch_bps)),
                row("decision->ack (p50/p99)", lambda r: _ms_stats(r.latency_ack_ms)),
                row("decision->1st fill (p50/p99)", lambda r: _ms_stats(r.latency_first_fill_ms)),
            ],
        ),
    ]
    return sections


def _symbol_block(reps: Sequence[SymbolReport], title: str) -> list[str]:
    heads = [r.symbol if r.group == "all" else f"{r.group} {r.symbol}" for r in reps]
    out = [title]
    for name, rows in _metric_rows(reps):
        out.append("")
        out.extend("  " + line for line in _table([[label, *vals] for label, vals in rows], [name, *heads]))
    return out


def render_table(rep: AuditReport) -> str:
    out = [
        f"binance-executor audit of {rep.database}",
        f"scope: {rep.scope}   generated {fmt_ms(rep.generated_ms)}",
    ]
    out.append("")
    if rep.runs:
        run_rows = [
            [
                f"#{r['id']}",
                r["profile"],
                r["version"],
                fmt_ms(r["started_ms"]),
                fmt_ms(r["stopped_ms"]),
                r["ended"] or "running",
            ]
            for r in rep.runs
        ]
        out.extend(
            _table(run_rows, ["run", "profile", "version", "started", "stopped", "ended"], right_from=99)
        )
    else:
        out.append("no runs recorded")
    if not rep.symbols:
        out += ["", "no orders or fills in scope"]
    else:
        out.append("")
        out.extend(_symbol_block(rep.symbols, "BY SYMBOL"))
        if rep.by_run:
            out.append("")
            out.extend(_symbol_block(rep.by_run, "BY RUN AND SYMBOL"))
        out.append("")
        tot_rows = [
            [
                q,
                _q(t.get("realized_fifo"), 4),
                _q(t.get("realized_avg"), 4),
                _q(t.get("fees"), 4),
                _q(t.get("unrealized_fifo"), 4),
                _q(t.get("volume"), 2),
            ]
            for q, t in rep.totals_by_quote.items()
        ]
        out.extend(
            _table(
                tot_rows, ["TOTAL in", "realized FIFO", "realized avg", "fees", "unrealized FIFO", "volume"]
            )
        )
    out.append("")
    out.extend(balance_lines(rep))
    out.append("")
    out.extend(_recon_lines(rep.reconciliations))
    out.append("")
    out.extend(_operator_lines(rep.operator_actions))
    if rep.notes:
        out.append("")
        out.extend(f"note: {n}" for n in rep.notes)
    return "\n".join(out) + "\n"


def balance_lines(rep: AuditReport) -> list[str]:
    """Balances as the ledger last recorded them, and positions from the fills in scope."""
    out: list[str] = []
    if rep.balances:
        out.append(f"BALANCES (as last recorded, {fmt_iso(rep.balances_ms)})")
        rows = [[b.asset, _qty(b.free), _qty(b.locked), _qty(b.total)] for b in rep.balances]
        out.extend("  " + line for line in _table(rows, ["asset", "free", "locked", "total"]))
    else:
        out.append("BALANCES: none recorded")
    out.append("")
    if rep.positions:
        out.append("POSITIONS (net of our fills in scope, base-asset fees deducted)")
        rows = [[a, _qty(q)] for a, q in rep.positions.items()]
        out.extend("  " + line for line in _table(rows, ["asset", "position"]))
    else:
        out.append("POSITIONS: none (no fills in scope)")
    return out


def _recon_lines(recon: Sequence[dict[str, Any]]) -> list[str]:
    if not recon:
        return ["RECONCILIATION RUNS: none recorded"]
    rows = [
        [
            str(r["id"]),
            str(r["run_id"] or "-"),
            r["reason"],
            fmt_ms(r["started_ms"]),
            "-" if r["duration_ms"] is None else f"{r['duration_ms']} ms",
            r["outcome"],
            str(r["found"]),
            str(r["fixed"]),
        ]
        for r in recon
    ]
    out = [f"RECONCILIATION RUNS ({len(recon)})"]
    out.extend(
        "  " + line
        for line in _table(
            rows, ["id", "run", "reason", "started", "took", "outcome", "found", "fixed"], right_from=4
        )
    )
    disc = [(r["id"], d) for r in recon for d in (r["discrepancies"] or [])]
    errors = [(r["id"], r["error"]) for r in recon if r.get("error")]
    if disc:
        out.append(f"  discrepancies ({len(disc)}):")
        out.extend(f"    #{rid}: {_disc_text(d)}" for rid, d in disc)
    out.extend(f"  error in #{rid}: {e}" for rid, e in errors)
    return out


def _operator_lines(actions: Sequence[dict[str, Any]]) -> list[str]:
    if not actions:
        return ["OPERATOR ACTIONS: none recorded"]
    rows = [[str(a["id"]), str(a["run_id"] or "-"), fmt_ms(a["at_ms"]), a["action"], a["source"],
             a["detail"] or ""] for a in actions]
    out = [f"OPERATOR ACTIONS ({len(actions)})"]
    out.extend("  " + line for line in _table(rows, ["id", "run", "at", "action", "source", "detail"],
                                              right_from=99))
    return out


def _disc_text(d: Any) -> str:
    if isinstance(d, dict):
        return ", ".join(f"{k}={v}" for k, v in d.items())
    return str(d)


# ---------------------------------------------------------------- JSON and CSV of the report


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, Stats):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _symbol_dict(r: SymbolReport) -> dict[str, Any]:
    return {f.name: _plain(getattr(r, f.name)) for f in dataclasses.fields(r)}


def report_dict(rep: AuditReport) -> dict[str, Any]:
    """The report as JSON-ready data; every Decimal as its exact string."""
    return {
        "database": rep.database,
        "scope": rep.scope,
        "generated_ms": rep.generated_ms,
        "runs": _plain(rep.runs),
        "symbols": [_symbol_dict(r) for r in rep.symbols],
        "by_run": [_symbol_dict(r) for r in rep.by_run],
        "totals_by_quote": _plain(rep.totals_by_quote),
        "reconciliations": _plain(rep.reconciliations),
        "operator_actions": _plain(rep.operator_actions),
        "balances": [{"asset": b.asset, "free": plain(b.free), "locked": plain(b.locked)}
                     for b in rep.balances],
        "balances_ms": rep.balances_ms,
        "positions": _plain(rep.positions),
        "notes": rep.notes,
    }


def render_json(rep: AuditReport) -> str:
    return orjson.dumps(report_dict(rep), option=orjson.OPT_INDENT_2).decode() + "\n"


def _flat(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out.append((prefix, "" if value is None else str(value)))


def render_csv(rep: AuditReport) -> str:
    """The per-symbol metrics in long form: group, symbol, metric, value."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["group", "symbol", "metric", "value"])
    for r in [*rep.symbols, *rep.by_run]:
        pairs: list[tuple[str, str]] = []
        d = _symbol_dict(r)
        for k in ("group", "run_id", "symbol"):
            d.pop(k)
        _flat("", d, pairs)
        for metric, value in pairs:
            w.writerow([r.group, r.symbol, metric, value])
    return buf.getvalue()


# ---------------------------------------------------------------- order and fill exports


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Side):
        return value.value
    if isinstance(value, Decimal):
        return decimal_to_text(value)  # the ledger's own text: positional, exact, round-trips
    return str(value)


def write_orders_csv(rows: Iterable[OrderRow], out: TextIO) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow([*ORDER_COLUMNS, "outcome", "created_utc"])
    for r in rows:
        w.writerow([*(_cell(v) for v in r), order_outcome(r.status, r.executed_qty), fmt_iso(r.created_ms)])


def _bps(value: Decimal | None) -> str:
    """A derived slippage figure (not a ledger value): 6 places are plenty."""
    return "" if value is None else format(value.quantize(Decimal("1e-6")), "f")


def write_fills_csv(
    rows: Iterable[FillRow],
    out: TextIO,
    slippage: dict[int, tuple[Decimal | None, Decimal | None]] | None = None,
) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow([*FILL_COLUMNS, "slippage_mid_bps", "slippage_touch_bps", "time_utc"])
    slip = slippage or {}
    for r in rows:
        mid, touch = slip.get(r.id, (None, None))
        w.writerow([*(_cell(v) for v in r), _bps(mid), _bps(touch), fmt_iso(r.time_ms)])


def _parse(col: str, text: str, decimals: frozenset[str], ints: frozenset[str], bools: frozenset[str]) -> Any:
    if text == "":
        return None
    if col in decimals:
        return Decimal(text)
    if col in ints:
        return int(text)
    if col in bools:
        return text == "1"
    return text


def read_orders_csv(src: TextIO) -> list[OrderRow]:
    out = []
    for rec in csv.DictReader(src):
        out.append(
            OrderRow._make(_parse(c, rec[c], ORDER_DECIMALS, _INT_ORDER, ORDER_BOOLS) for c in ORDER_COLUMNS)
        )
    return out


def read_fills_csv(src: TextIO) -> list[FillRow]:
    sides = {"BUY": Side.BUY, "SELL": Side.SELL}
    out = []
    for rec in csv.DictReader(src):
        vals = [_parse(c, rec[c], FILL_DECIMALS, _INT_FILL, frozenset({"is_maker"})) for c in FILL_COLUMNS]
        vals[FILL_COLUMNS.index("side")] = sides.get(vals[FILL_COLUMNS.index("side")])
        out.append(FillRow._make(vals))
    return out


def write_out_dir(rep: AuditReport, out_dir: Path) -> list[Path]:
    """Write orders.csv, fills.csv, summary.csv, report.json (with the reconciliations) and report.txt."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with (out_dir / "orders.csv").open("w", newline="") as fh:
        write_orders_csv(rep.orders, fh)
    with (out_dir / "fills.csv").open("w", newline="") as fh:
        write_fills_csv(rep.fills, fh, rep.fill_slippage)
    (out_dir / "summary.csv").write_text(render_csv(rep))
    (out_dir / "report.json").write_text(render_json(rep))
    (out_dir / "report.txt").write_text(render_table(rep))
    for name in ("orders.csv", "fills.csv", "summary.csv", "report.json", "report.txt"):
        written.append(out_dir / name)
    return written
