"""The fleet view: ``audit --bot all`` and ``audit verify --bot all`` on a shared PostgreSQL.

Every bot of a fleet keeps its ledger in its own schema (``?bot=NAME`` ->
``bot_NAME``, see ``executor.persistence.db.bot_schema``). This module lists those bots and
audits each one in turn with the ordinary report and verification, then prints one summary
table: runs, orders, fills, realized PnL (FIFO, net of fees) per quote asset, and whether
``audit verify`` agrees. Exit codes as ``audit``: 0, 1 when any bot's verify differs, 2
when nothing could be read.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from executor.audit.query import AuditDB, AuditError, Scope
from executor.persistence.db import BOT_SCHEMA_PREFIX, create_engine, is_sqlite, with_bot

ALL = "all"


@dataclass(frozen=True)
class BotLine:
    bot: str
    runs: int
    orders: int
    fills: int
    realized: dict[str, Decimal]
    verify_ok: bool | None  # None: verify was not run (report only)
    differences: int


def fleet_bots(url: str) -> list[str]:
    """The bot names with a ledger schema on the server at ``url`` (any ``?bot`` ignored)."""
    if is_sqlite(url):
        raise AuditError("--bot all lists the bots of a shared PostgreSQL; a SQLite ledger is one bot")
    base = sa.engine.make_url(url)
    base = base.set(query={k: v for k, v in base.query.items() if k != "bot"})

    async def names() -> list[str]:
        engine = create_engine(base)
        try:
            async with engine.connect() as conn:
                schemas = await conn.run_sync(lambda c: sa.inspect(c).get_schema_names())
        finally:
            await engine.dispose()
        return sorted(s[len(BOT_SCHEMA_PREFIX) :] for s in schemas if s.startswith(BOT_SCHEMA_PREFIX))

    try:
        return asyncio.run(names())
    except (OSError, sa.exc.SQLAlchemyError) as exc:
        raise AuditError(f"cannot list the bots: {type(exc).__name__}") from None


def audit_bot(url: str, bot: str, scope: Scope, *, verify: bool) -> BotLine:
    from executor.audit.report import build_report
    from executor.audit.verify import verify as run_verify

    with AuditDB.from_url(with_bot(url, bot)) as db:
        rep = build_report(db, scope)
        res = run_verify(db, Scope(scope.run_id, scope.since_ms, scope.until_ms)) if verify else None
    return BotLine(
        bot=bot,
        runs=len(rep.runs),
        orders=sum(s.orders_total for s in rep.symbols),
        fills=sum(s.fills for s in rep.symbols),
        realized={q: t.get("realized_fifo", Decimal(0)) for q, t in sorted(rep.totals_by_quote.items())},
        verify_ok=None if res is None else res.ok,
        differences=0 if res is None else len(res.differences),
    )


def render_fleet(lines: list[BotLine]) -> str:
    header = ("bot", "runs", "orders", "fills", "realized PnL (FIFO, net)", "verify")
    rows = [
        (
            b.bot,
            str(b.runs),
            f"{b.orders:,}",
            f"{b.fills:,}",
            ", ".join(f"{v} {q}" for q, v in b.realized.items()) or "-",
            "-" if b.verify_ok is None else ("OK" if b.verify_ok else f"DIFFERS ({b.differences})"),
        )
        for b in lines
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    out = ["FLEET", ""]
    out.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    out.append("  ".join("-" * w for w in widths))
    out.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    total_fills = sum(b.fills for b in lines)
    out.append("")
    out.append(f"{len(lines)} bots, {total_fills:,} fills")
    return "\n".join(out) + "\n"


def fleet_command(url: str, scope: Scope, *, verify: bool) -> int:
    bots = fleet_bots(url)
    if not bots:
        raise AuditError("no bot ledgers on this server (a bot's URL names it with ?bot=NAME)")
    lines = [audit_bot(url, b, scope, verify=verify) for b in bots]
    sys.stdout.write(render_fleet(lines))
    return 1 if verify and not all(b.verify_ok for b in lines) else 0
