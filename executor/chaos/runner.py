"""The chaos run's schedule and report (see the package docstring).

One cycle: start the bot (``run.py --exchange ADMIN``, a child process with its own log),
let it trade for a random while as faults are switched on at random moments, then end it:
mostly SIGKILL (sometimes right while a response is held, so an order is in doubt),
sometimes a graceful SIGTERM; leave it down for a moment (a fault may be armed meanwhile,
met by the next start). After ``minutes``: every fault off, one last clean run so the bot
reconciles, then the ledger is compared with the exchange's ground truth and
``run.py audit verify`` is run on it.

Futures: a share of the cycles (``futures_share``) starts the futures bot instead: a second
account of the exchange with its own ledger, trading ``CashAndCarry`` with ``[futures] trade``
on (spot and perpetual legs) while the runner swings the perpetuals' basis so it keeps
entering and exiting; half of its faults are futures ones (futures user stream dropped,
listenKey expired, 5xx on ``POST /fapi/v1/order``, futures market stream dropped). It gets
its own last clean run, comparison (spot and futures orders, trades, positions, income) and
``audit verify`` (the futures wallet included). The same ``seed`` gives the same schedule of faults
and kills (the bot's own timing still varies with the machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from executor.chaos.faults import FAULT_KINDS, FUTURES_KINDS, inject
from executor.chaos.truth import Comparison, compare_ledger
from executor.config import ROOT, load_config
from executor.sim.accounts import DEFAULT_ID
from executor.sim.exchange import SimExchange
from executor.sim.ratelimit import RateLimits
from executor.sim.server import SimServer

__all__ = ["ChaosOptions", "ChaosReport", "run_chaos"]

# The bot trades all the time (buys while the ask is within 50 bps over the mark, sells once
# the bid is 51 bps over it), so every fault meets orders in flight.
BOT_PARAMS = {"entry_bps": "-50", "exit_bps": "51", "order_quote": "50", "max_inventory_quote": "50000",
              "post_only": False, "quote_ttl_s": "3"}
BALANCES = {"USDT": Decimal("1000000"), "BTC": Decimal("1"), "ETH": Decimal("20")}
# The futures bot: one clip is 0.04 base (BTC ~2400 USDT, ETH ~120 USDT: above both venues'
# minimum notionals), at most three clips a symbol; its account's futures wallet holds plenty.
FUTURES_ACCOUNT = "carry"
CARRY_PARAMS = {"entry_bps": "10", "exit_bps": "0", "qty": "0.04", "max_position": "0.12",
                "hedge_timeout_s": "2", "cooldown_s": "0.3"}
FUTURES_WALLET = Decimal("100000")
BASIS_HIGH, BASIS_LOW = Decimal("0.004"), Decimal("-0.002")
STOP_TIMEOUT_S = 60.0
FINAL_RUN_S = 12.0


@dataclass
class ChaosOptions:
    minutes: float
    seed: int
    workdir: Path
    up_s: tuple[float, float] = (3.0, 18.0)  # how long the bot trades before it is ended
    fault_gap_s: tuple[float, float] = (1.0, 5.0)  # between two faults while it trades
    down_s: tuple[float, float] = (0.2, 3.0)
    kill_share: float = 0.8  # SIGKILL; the rest are graceful stops
    in_doubt_share: float = 0.25  # of the kills: while a REST response is held
    final_run_s: float = FINAL_RUN_S  # the last clean run, to reconcile
    futures_share: float = 0.4  # cycles that run the futures (cash-and-carry) bot; 0: none
    swing_s: tuple[float, float] = (1.0, 3.0)  # how long the basis stays high or low
    # A graceful stop under faults may wait out its steps' timeouts (a stalled exchange);
    # past this the cycle's bot is SIGKILLed (the last clean runs always get STOP_TIMEOUT_S).
    stop_timeout_s: float = STOP_TIMEOUT_S


@dataclass
class ChaosReport:
    seed: int
    cycles: int = 0
    kills: int = 0
    kills_in_doubt: int = 0
    graceful: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    bot_exit_codes: Counter[int] = field(default_factory=Counter)
    comparison: Comparison | None = None
    verify_rc: int | None = None
    verify_text: str = ""
    futures_cycles: int = 0
    futures_comparison: Comparison | None = None  # the futures bot's ledger (None: it never ran)
    futures_verify_rc: int | None = None
    futures_verify_text: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        spot = self.comparison is not None and self.comparison.ok and self.verify_rc == 0
        f = self.futures_comparison
        futures = f is None or (f.ok and self.futures_verify_rc == 0)
        return spot and futures

    def render(self) -> str:
        c = self.comparison or Comparison()
        rows = [
            ("seed", self.seed), ("wall time", f"{self.seconds:.0f} s"), ("cycles", self.cycles),
            ("SIGKILLs", self.kills), ("  of them with a response in doubt", self.kills_in_doubt),
            ("graceful stops", self.graceful),
            ("faults", sum(self.faults.values())),
            *((f"  {k}", n) for k, n in sorted(self.faults.items())),
            ("orders (exchange)", c.orders), ("trades (exchange)", c.trades),
            ("fills (ledger)", c.fills_stored),
            ("missing", c.missing), ("duplicated", c.duplicated), ("phantom fills", c.phantom),
            ("mismatched", c.mismatched), ("orders missing", c.orders_missing),
            ("orders only in the ledger", c.orders_phantom),
            ("client ids sent twice", c.sent_twice), ("balance differences", c.balance_diffs),
            ("audit verify", "clean" if self.verify_rc == 0 else f"FAILED (exit {self.verify_rc})"),
        ]
        f = self.futures_comparison
        if f is not None:
            rows += [
                ("futures bot: cycles", self.futures_cycles),
                ("  orders (exchange: spot + futures)", f.orders), ("  of them futures", f.futures_orders),
                ("  trades (exchange: spot + futures)", f.trades), ("  of them futures", f.futures_trades),
                ("  fills (ledger)", f.fills_stored), ("  missing", f.missing),
                ("  duplicated", f.duplicated),
                ("  phantom fills", f.phantom), ("  mismatched", f.mismatched),
                ("  orders missing", f.orders_missing), ("  orders only in the ledger", f.orders_phantom),
                ("  client ids sent twice", f.sent_twice), ("  balance differences", f.balance_diffs),
                ("  position differences", f.position_diffs), ("  income differences", f.income_diffs),
                ("  audit verify", "clean" if self.futures_verify_rc == 0
                 else f"FAILED (exit {self.futures_verify_rc})"),
            ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        if c.examples:
            lines.append("differences:")
            lines.extend(f"  {e}" for e in c.examples)
        if self.verify_rc not in (0, None) and self.verify_text:
            lines.append("audit verify said:")
            lines.extend(f"  {line}" for line in self.verify_text.strip().splitlines()[-12:])
        if f is not None and f.examples:
            lines.append("futures bot differences:")
            lines.extend(f"  {e}" for e in f.examples)
        if self.futures_verify_rc not in (0, None) and self.futures_verify_text:
            lines.append("futures bot audit verify said:")
            lines.extend(f"  {line}" for line in self.futures_verify_text.strip().splitlines()[-12:])
        lines.append("RESULT: " + ("PASS — every trade exactly once, nothing sent twice, balances equal"
                                   if self.ok else "FAIL"))
        return "\n".join(lines)


def _toml(data: dict[str, dict[str, object]]) -> str:
    def value(v: object) -> str:
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return json.dumps(str(v))

    out: list[str] = []

    def table(name: str, node: dict[str, object]) -> None:
        out.append(f"[{name}]")
        out.extend(f"{k} = {value(v)}" for k, v in node.items() if not isinstance(v, dict))
        for k, v in node.items():
            if isinstance(v, dict):
                table(f"{name}.{k}", v)

    for name, node in data.items():
        table(name, node)
    return "\n".join(out) + "\n"


class _Bot:
    """One ``run.py`` child process and its log files."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    async def running(self, timeout: float) -> bool:
        """Until the bot says it is running (its start-up done), it exits, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.returncode is None:
            if b"bot running" in self.log.read_bytes():
                return True
            await asyncio.sleep(0.1)
        return False

    async def end(self, sig: int, timeout: float = STOP_TIMEOUT_S) -> int:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            return await self.proc.wait()


class _Chaos:
    def __init__(self, opts: ChaosOptions, out: TextIO) -> None:
        self.opts = opts
        self.out = out
        self.rng = random.Random(opts.seed)
        self.report = ChaosReport(seed=opts.seed)
        self.db = opts.workdir / "ledger.db"
        self.url = f"sqlite+aiosqlite:///{self.db}"
        self.config = opts.workdir / "bot.toml"
        self.logs = opts.workdir / "logs"
        self.futures_db = opts.workdir / "ledger-futures.db"
        self.futures_url = f"sqlite+aiosqlite:///{self.futures_db}"
        self.futures_config = opts.workdir / "bot-futures.toml"

    def say(self, text: str) -> None:
        print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", file=self.out, flush=True)

    def write_config(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.config.write_text(_toml({
            "database": {"url": self.url},
            "logging": {"dir": str(self.logs)},
            "risk": {"kill_switch_file": str(self.opts.workdir / "KILL"), "max_orders_per_minute": 600,
                     "max_position": {"BTC": "5", "ETH": "100"}},
            "orders": {"request_timeout_s": "2"},
            "strategy": {"params": BOT_PARAMS},
        }), encoding="utf-8")
        self.futures_config.write_text(_toml({
            "database": {"url": self.futures_url},
            "logging": {"dir": str(self.logs / "futures")},
            "risk": {"kill_switch_file": str(self.opts.workdir / "KILL"), "max_orders_per_minute": 600,
                     "max_position": {"BTC": "5", "ETH": "100"}},
            "orders": {"request_timeout_s": "2"},
            "futures": {"trade": True, "leverage": 3, "max_position": {"BTC": "1", "ETH": "1"},
                        "max_net_delta": {"BTC": "0.2", "ETH": "0.2"}},
            "strategy": {"path": "executor.strategy.carry:CashAndCarry", "params": CARRY_PARAMS},
        }), encoding="utf-8")

    async def spawn(self, admin: str, futures: bool = False) -> _Bot:
        self.report.cycles += 1
        self.report.futures_cycles += futures
        kind = "futures-bot" if futures else "bot"
        log = self.logs / f"{kind}-{self.report.cycles:03d}.out"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        target = f"{admin}?account={FUTURES_ACCOUNT}" if futures else admin
        config = self.futures_config if futures else self.config
        with log.open("wb") as fh:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "run.py"), "--exchange", target, "--config", str(config),
                stdin=asyncio.subprocess.DEVNULL, stdout=fh, stderr=asyncio.subprocess.STDOUT, env=env,
                cwd=self.opts.workdir)
        return _Bot(proc, log)

    async def fault(self, sim: SimExchange, futures: bool = False) -> None:
        kind, what = await inject(sim, self.rng, futures=futures)
        self.report.faults[kind] += 1
        self.say(f"fault {kind}: {what}")

    async def swing(self, sim: SimExchange) -> None:
        """The perpetuals' basis high, then low, and again: the carry enters and exits."""
        rng = random.Random(self.rng.random())
        high = True
        while True:
            for symbol in sim.futures.market.symbols:
                sim.futures.market.set_basis(symbol, BASIS_HIGH if high else BASIS_LOW)
            high = not high
            await asyncio.sleep(rng.uniform(*self.opts.swing_s))

    async def cycle(self, sim: SimExchange, admin: str, deadline: float) -> None:
        # The futures bot runs whenever it is behind its share of the cycles so far (not a coin
        # toss): a short run with a share of 0.5 alternates, so both bots meet faults and kills.
        share = self.opts.futures_share
        futures = share >= 1 or (share > 0 and self.report.futures_cycles < share * (self.report.cycles + 1))
        bot = await self.spawn(admin, futures)
        swing = asyncio.get_running_loop().create_task(self.swing(sim)) if futures else None
        up = self.rng.uniform(*self.opts.up_s)
        end = min(time.monotonic() + up, deadline)
        try:
            while True:
                gap = self.rng.uniform(*self.opts.fault_gap_s)
                if time.monotonic() + gap >= end or bot.proc.returncode is not None:
                    break
                await asyncio.sleep(gap)
                await self.fault(sim, futures)
            await asyncio.sleep(max(0.0, end - time.monotonic()))
        finally:
            if swing is not None:
                swing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await swing
                for symbol in sim.futures.market.symbols:
                    sim.futures.market.set_basis(symbol, None)
        if self.rng.random() < self.opts.kill_share:
            if self.rng.random() < self.opts.in_doubt_share:
                # Hold the next REST answer (its effect happens) and kill the bot while it
                # waits: an order sent, its outcome unknown to the bot that sent it.
                sim.faults.hold(1, 6.0)
                await asyncio.sleep(self.rng.uniform(0.3, 2.0))
                self.report.kills_in_doubt += 1
            rc = await bot.end(signal.SIGKILL)
            self.report.kills += 1
            self.say(f"cycle {self.report.cycles}: SIGKILL after {up:.1f} s")
        else:
            rc = await bot.end(signal.SIGTERM, self.opts.stop_timeout_s)
            self.report.graceful += 1
            self.say(f"cycle {self.report.cycles}: graceful stop after {up:.1f} s, exit {rc}")
        self.report.bot_exit_codes[rc] += 1
        await asyncio.sleep(self.rng.uniform(*self.opts.down_s))
        if self.rng.random() < 0.5:
            await self.fault(sim, futures)  # armed while the bot is down: the next start meets it

    async def verify(self, url: str | None = None) -> tuple[int | None, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "run.py"), "audit", "verify", "--db", url or self.url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=self.opts.workdir)
        data, _ = await proc.communicate()
        return proc.returncode, data.decode(errors="replace")

    async def final_run(self, sim: SimExchange, admin: str, futures: bool) -> None:
        # A 418 ban earned during the cycles, or a 429's Retry-After (a request inside it earns
        # one), would eat the clean run: wait them out first, so it has all its seconds.
        from executor.sim.rest_futures_orders import limiter_of

        left_ms = max(sim.ratelimiter.blocked_left_ms(), limiter_of(sim).weight.blocked_left_ms())
        if left_ms > 0:
            wait_s = left_ms / 1000 / max(float(sim.clock.time_scale), 1e-9) + 0.5
            self.say(f"waiting {wait_s:.1f} s for a 418 ban or 429 Retry-After to end before the last run")
            await asyncio.sleep(wait_s)
        bot = await self.spawn(admin, futures)
        # The clean run's seconds count from the end of its start-up: on a busy machine
        # Python alone may take seconds to start, and a run ended before it trades
        # reconciles nothing.
        await bot.running(STOP_TIMEOUT_S)
        await asyncio.sleep(self.opts.final_run_s)
        rc = await bot.end(signal.SIGTERM)
        self.report.bot_exit_codes[rc] += 1
        sim.faults.reset()

    async def run(self) -> ChaosReport:
        started = time.monotonic()
        self.opts.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        cfg = load_config(local=None)
        settings = replace(cfg.sim, seed=self.opts.seed, balances=dict(BALANCES), market_file="")
        # Bans and 429 Retry-Afters short enough to be waited out within a run (Binance's first
        # ban is 2 minutes; its Retry-After, often a minute).
        limits = RateLimits(ban_first_s=5, burst_retry_after_s=5)
        sim = SimExchange.from_config(settings, symbols=cfg.symbols.spot, limits=limits)
        if self.opts.futures_share > 0:
            sim.accounts.add(FUTURES_ACCOUNT, dict(BALANCES), now_ms=sim.clock.now_ms())
            sim.futures.transfer(FUTURES_ACCOUNT, "USDT", FUTURES_WALLET)
        server = SimServer(sim, host="127.0.0.1")
        urls = await server.start()
        self.say(f"seed {self.opts.seed}, {self.opts.minutes:g} min, exchange {urls.admin}, "
                 f"work dir {self.opts.workdir}; fault kinds: {', '.join(sorted(FAULT_KINDS))}; "
                 f"futures share {self.opts.futures_share:g} (futures faults: {', '.join(FUTURES_KINDS)})")
        try:
            deadline = started + self.opts.minutes * 60
            while time.monotonic() < deadline:
                await self.cycle(sim, urls.admin, deadline)
            sim.faults.reset()
            self.say(f"faults off; a last clean run of {self.opts.final_run_s:g} s to reconcile")
            await self.final_run(sim, urls.admin, futures=False)
            self.report.comparison = await compare_ledger(sim, self.url, DEFAULT_ID)
            if self.report.futures_cycles:
                self.say(f"the futures bot's last clean run of {self.opts.final_run_s:g} s")
                await self.final_run(sim, urls.admin, futures=True)
                self.report.futures_comparison = await compare_ledger(sim, self.futures_url, FUTURES_ACCOUNT)
        finally:
            await server.stop()
        self.report.verify_rc, self.report.verify_text = await self.verify()
        if self.report.futures_comparison is not None:
            rc, text = await self.verify(self.futures_url)
            self.report.futures_verify_rc, self.report.futures_verify_text = rc, text
        self.report.seconds = time.monotonic() - started
        return self.report


async def run_chaos(opts: ChaosOptions, out: TextIO | None = None) -> ChaosReport:
    """Run the chaos schedule; the report says what was done and what differs."""
    return await _Chaos(opts, out or sys.stdout).run()


def chaos_command(minutes: float, seed: int | None, keep: Path | None, out: TextIO | None = None) -> int:
    """``run.py chaos``: exit 0 when the ledger equals the exchange and verify is clean, else 1."""
    import tempfile

    out = out or sys.stdout
    if minutes <= 0:
        print("chaos: --minutes must be greater than 0", file=sys.stderr)
        return 2
    seed = seed if seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    workdir = keep or Path(tempfile.mkdtemp(prefix=f"bx-chaos-{seed}-"))
    report = asyncio.run(run_chaos(ChaosOptions(minutes=minutes, seed=seed, workdir=workdir), out))
    print(report.render(), file=out, flush=True)
    print(f"ledger and bot logs kept in {workdir}", file=out, flush=True)
    return 0 if report.ok else 1
