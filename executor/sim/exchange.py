"""``SimExchange``: the embedded exchange's in-process ground truth.

One object holds the clock, the accounts (balances, keys), the market (books per symbol,
symbol rules and status), the spot matching engine, the public trade tape and market-data
streams (``sim.tape``, ``sim.feed``), the futures side (``sim.futures``), the
user-event bus, the fault switchboard and the REST rate limiter. Transports (``server.py``
and its route modules) only translate wire requests into calls on it; tests read and steer
it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from executor.config import SimConfig, SimPorts
from executor.exchange.credentials import Credentials
from executor.sim.accounts import COUNTERPARTY_ID, DEFAULT_ID, FEES_ID, Account, Accounts
from executor.sim.bus import UserEventBus
from executor.sim.clock import SimClock
from executor.sim.engine import SYMBOL_STATUSES, SpotEngine
from executor.sim.faults import Faults
from executor.sim.futures_account import FuturesSide, attach
from executor.sim.market import Market, SymbolSpec
from executor.sim.market_feed import MarketFeed
from executor.sim.ratelimit import RateLimiter, RateLimits
from executor.sim.tape import Tape

COUNTERPARTY_FUNDS = Decimal("1000000000000")


def default_sim_config(**overrides: Any) -> SimConfig:
    """A SimConfig with config/default.toml's sim values, for tests that need no file."""
    base = SimConfig(
        seed=7, time_scale=Decimal(1), host="127.0.0.1", book_update_hz=Decimal(20),
        max_connection_age_s=86400, market_file="",
        ports=SimPorts(spot_rest=0, spot_stream=0, spot_ws_api=0, futures_rest=0, futures_stream=0),
        start_prices={"BTCUSDT": Decimal(60000), "ETHUSDT": Decimal(3000)},
        balances={"USDT": Decimal(10000), "BTC": Decimal("0.1"), "ETH": Decimal(2)},
    )
    return replace(base, **overrides)


class SimExchange:
    """Accounts, books, orders, trades and the clock of the embedded exchange.

    ``symbols`` defaults to the keys of ``settings.start_prices``. ``extra_accounts`` adds
    accounts (id -> balances) next to the default one.
    """

    def __init__(self, settings: SimConfig | None = None, *, symbols: Iterable[str] | None = None,
                 extra_accounts: Mapping[str, Mapping[str, Decimal]] | None = None,
                 limits: RateLimits | None = None, start_ms: int | None = None,
                 clock: SimClock | None = None) -> None:
        self.settings = settings or default_sim_config()
        cfg = self.settings
        self.seed = cfg.seed
        # ``clock``: a replay passes its ReplayClock (sim/replay_source.py).
        self.clock = clock or SimClock(float(cfg.time_scale), start_ms=start_ms)
        syms = list(symbols) if symbols is not None else list(cfg.start_prices)
        if not syms:
            raise ValueError("the sim needs at least one symbol")
        prices = {s: Decimal(cfg.start_prices.get(s, Decimal(100))) for s in syms}
        self.specs: dict[str, SymbolSpec] = {s: SymbolSpec.for_symbol(s, prices[s]) for s in syms}
        self.market = Market(self.clock, self.specs, prices, seed=cfg.seed,
                             book_update_hz=float(cfg.book_update_hz), market_file=cfg.market_file or None)
        self.bus = UserEventBus()
        self.faults = Faults()
        if hasattr(self.faults, "bind"):
            self.faults.bind(self)
        self.ratelimiter = RateLimiter(self.clock, limits or RateLimits())
        now = self.clock.now_ms()
        self.accounts = Accounts(cfg.seed)
        self.accounts.add(DEFAULT_ID, dict(cfg.balances), now_ms=now)
        assets = sorted({a for s in self.specs.values() for a in (s.base, s.quote)})
        self.accounts.add(COUNTERPARTY_ID, dict.fromkeys(assets, COUNTERPARTY_FUNDS), with_keys=False,
                          now_ms=now)
        self.accounts.add(FEES_ID, {}, with_keys=False, now_ms=now)
        for account_id, balances in (extra_accounts or {}).items():
            self.accounts.add(account_id, {a: Decimal(v) for a, v in balances.items()}, now_ms=now)
        self.engine = SpotEngine(self.accounts, self.market, self.clock, self.bus, seed=cfg.seed)
        # The public tape and streams listen after the engine, so they see each book update
        # with the liquidity our orders took already gone.
        self.tape = Tape(self.clock, self.market, self.engine.allocate_trade_id, seed=cfg.seed)
        self.engine.trade_listeners.append(self.tape.record_fill)
        self.market.subscribe(self.tape.on_book)
        self.feed = MarketFeed(self.clock, self.market, self.tape)
        self.system_status = 0          # GET /sapi/v1/system/status: 0 normal, 1 maintenance
        self.max_connection_age_s = cfg.max_connection_age_s
        self._tasks: list[asyncio.Task[None]] = []
        # Awaited before each spot REST answer leaves / before an order request is handled
        # (a lock-step replay sets them: executor/replay/runner.py).
        self.before_response: Callable[[], Awaitable[None]] | None = None
        self.before_order: Callable[[Any], Awaitable[None]] | None = None
        # Spot market, futures market and WebSocket API sockets opened from now on write each
        # frame as it is sent instead of through their writer task (``faults.ServerSocket``;
        # a max-speed replay).
        self.send_inline = False
        # The futures side exists from the start, so ``sim.futures`` works before any server.
        self.futures: FuturesSide = attach(self)

    # -- construction shortcuts -----------------------------------------------------------------
    @classmethod
    def from_config(cls, settings: SimConfig, **kwargs: Any) -> SimExchange:
        return cls(settings, **kwargs)

    @classmethod
    def for_tests(cls, *, symbols: Iterable[str] = ("BTCUSDT", "ETHUSDT"), limits: RateLimits | None = None,
                  extra_accounts: Mapping[str, Mapping[str, Decimal]] | None = None,
                  **overrides: Any) -> SimExchange:
        """A cheap exchange: default sim settings with ``overrides`` (any SimConfig field)."""
        for key in ("time_scale", "book_update_hz"):
            if key in overrides:
                overrides[key] = Decimal(str(overrides[key]))
        for key in ("start_prices", "balances"):
            if key in overrides:
                overrides[key] = {k: Decimal(str(v)) for k, v in overrides[key].items()}
        return cls(default_sim_config(**overrides), symbols=symbols, limits=limits,
                   extra_accounts=extra_accounts)

    # -- symbols --------------------------------------------------------------------------------
    def set_symbol_status(self, symbol: str, status: str) -> SymbolSpec:
        """Change ``symbol``'s exchangeInfo status; anything but TRADING refuses new orders."""
        if symbol not in self.specs:
            raise ValueError(f"unknown symbol {symbol!r}")
        if status not in SYMBOL_STATUSES:
            raise ValueError(f"status must be one of {', '.join(SYMBOL_STATUSES)}, got {status!r}")
        # One dict shared by market and engine, so replacing the entry updates both.
        self.specs[symbol] = replace(self.specs[symbol], status=status)
        return self.specs[symbol]

    # -- accounts -------------------------------------------------------------------------------
    @property
    def default_account(self) -> Account:
        return self.accounts.default

    def add_account(self, account_id: str, balances: Mapping[str, Decimal | str] | None = None) -> Account:
        return self.accounts.add(account_id, {a: Decimal(str(v)) for a, v in (balances or {}).items()},
                                 now_ms=self.clock.now_ms())

    def balances(self, account_id: str = DEFAULT_ID) -> dict[str, tuple[Decimal, Decimal]]:
        """Ground truth: asset -> (free, locked) of ``account_id``."""
        acct = self.accounts.get(account_id)
        return {a: (b.free, b.locked) for a, b in acct.balances.items()}

    def credentials(self, kind: str = "HMAC", account_id: str = DEFAULT_ID) -> Credentials:
        """Test credentials of ``account_id``'s key of ``kind`` ("HMAC", "Ed25519", "RSA")."""
        api = self.accounts.key_of(account_id, kind)
        if kind == "HMAC":
            return Credentials(api_key=api.key, api_secret=api.secret)
        return Credentials(api_key=api.key, private_key_pem=api.private_key_pem)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start background work (market updates). Idempotent."""
        if self._tasks:
            return
        if self.market.hz > 0 or self.market.replaying:
            self._tasks.append(asyncio.create_task(self.market.run(), name="sim-market"))
        self._tasks.append(asyncio.create_task(self.feed.run(), name="sim-market-feed"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
