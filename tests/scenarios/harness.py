"""Helpers for the bot-level scenarios: a bot on an exchange the test owns, and the check
that, once settled, the bot's ledger equals the exchange's ground truth exactly.

The exchange (``tests.conftest.start_sim``) is started by the test and outlives every bot
run, so a restarted bot finds the same orders, trades and balances it left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from executor.config import Config, load_config
from executor.exchange.credentials import Credentials
from executor.orders.manager import ResolveTiming
from executor.persistence.db import database_path
from executor.run.app import Bot, BotOptions
from executor.run.shutdown import Shutdown
from executor.sim.accounts import DEFAULT_ID
from executor.venue.profiles import Venue
from tests.conftest import SimHandle

SYMBOLS = ("BTCUSDT", "ETHUSDT")
# Trades at once and keeps trading whatever the synthetic basis does: buys (IOC at the ask)
# while the ask is within 50 bps above the mark (sells once the bid is 51 bps above it).
# With ``SIM_OPTIONS`` (a few book updates a second, a large USDT balance) that is a few
# orders a second, and no limit is reached within a scenario's seconds.
FAST_PARAMS = {"entry_bps": "-50", "exit_bps": "51", "order_quote": "50", "max_inventory_quote": "50000",
               "post_only": False, "quote_ttl_s": "5"}
SIM_OPTIONS = {"book_update_hz": 3, "balances": {"USDT": "100000", "BTC": "0.1", "ETH": "2"}}
RISK = {"max_orders_per_minute": 600, "max_position": {"BTC": "2", "ETH": "40"}}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def overrides(tmp_path: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    base: dict[str, Any] = {
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"},
        "logging": {"dir": str(tmp_path / "logs")},
        "risk": {"kill_switch_file": str(tmp_path / "KILL"), **RISK},
        "orders": {"request_timeout_s": "2"},
        "strategy": {"params": dict(FAST_PARAMS)},
    }
    return _merge(base, extra or {})


def scenario_config(tmp_path: Path, extra: dict[str, Any] | None = None) -> Config:
    return load_config(local=None, overrides=overrides(tmp_path, extra))


def _toml_value(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    """A config file for ``run.py --config`` (tables of scalars, nested one level deeper)."""
    lines: list[str] = []

    def table(name: str, node: dict[str, Any]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict)}
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in node.items():
            if isinstance(v, dict):
                table(f"{name}.{k}", v)

    for name, node in data.items():
        table(name, node)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def until(predicate: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    """Wait (polling the event loop) until ``predicate()``; fail with ``what`` after ``timeout``."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def fills(bot: Bot) -> int:
    assert bot.tracker is not None
    return int(bot.tracker.stats.fills)


class BotRun:
    """Starts and stops bots (one at a time) on one ledger against the test's exchange."""

    def __init__(
        self, sim: SimHandle, cfg: Config, *, creds: Credentials | None = None, **options: Any
    ) -> None:
        self.sim = sim
        self.cfg = cfg
        self.creds = creds or sim.creds  # another account of the exchange for a second bot
        self.options = options
        self.bot: Bot | None = None
        self.status = io.StringIO()

    async def start(self) -> Bot:
        opts = dict(status_out=self.status, status_tty=False, status_interval_s=0.5, stall_after_s=1.0,
                    probe_every_s=1.0, ready_timeout_s=10.0,
                    resolve=ResolveTiming(first_s=0.05, max_s=0.5, not_found_grace_s=1.0))
        opts.update(self.options)
        self.bot = Bot(self.cfg, Venue("sim", self.sim.endpoints, self.sim.endpoints), self.creds,
                       BotOptions(**opts))
        await asyncio.wait_for(self.bot.start(), 30)
        return self.bot

    async def stop(self, reason: str = "test over") -> str:
        assert self.bot is not None
        shutdown = Shutdown()
        shutdown.request(reason)
        bot, self.bot = self.bot, None
        return await asyncio.wait_for(bot.stop(shutdown, reason=reason), 60)

    async def close(self) -> None:
        """Stop a bot a failed test left running (before its exchange goes away)."""
        if self.bot is not None:
            with contextlib.suppress(Exception):
                await self.stop("test failed")

    async def trade(self, more_fills: int, timeout: float = 15.0) -> None:
        bot = self.bot
        assert bot is not None
        target = fills(bot) + more_fills
        await until(lambda: fills(bot) >= target, timeout, f"{target} fills")


async def ledger_equals_exchange(
    sim: SimHandle, ledger_url: str, account_id: str = DEFAULT_ID
) -> tuple[int, int]:
    """Orders, fills and balances in the ledger == the exchange's (of ``account_id``);
    nothing sent twice (the chaos run's own comparison, ``executor.chaos.truth``)."""
    from executor.chaos.truth import compare_ledger

    found = await compare_ledger(sim.exchange, ledger_url, account_id)
    assert found.ok, found.examples
    return found.orders, found.trades


def futures_snapshots(ledger_url: str) -> list[tuple[str, str, str]]:
    """(reason, balances json, positions json) of every futures account row, oldest first."""
    with sqlite3.connect(database_path(ledger_url)) as conn:
        return conn.execute("SELECT reason, balances, positions FROM futures_account_updates "
                            "ORDER BY id").fetchall()


def recon_reasons(ledger_url: str) -> list[str]:
    with sqlite3.connect(database_path(ledger_url)) as conn:
        return [r[0] for r in conn.execute("SELECT reason FROM reconciliation_runs ORDER BY id")]
