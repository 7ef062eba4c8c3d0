"""The main job: ``python run.py`` wires every part into the running bot and stops it cleanly.

Start, in order: the live confirmation (profile ``live``: ``--live`` or LIVE typed at a
terminal, before any key is read, the venue contacted or the ledger opened), the strategy
(its parameters checked), the venue (the embedded exchange in-process for profile ``sim``, or an
already running one with ``--exchange URL``, or the profile's real endpoints with keys;
on testnet/demo the futures account has keys of its own, ``keys.load_futures_credentials``),
the ledger (migrated, its lease taken (``persistence.lease``: a second bot is refused, exit 2),
its identity checked (``persistence.identity``: this ledger's client-id prefix, its venue),
a run row opened), the REST gateway (clock synced; the account's uid bound to the ledger), the
live gate (``preflight.ensure_live_ready``, before anything can be sent), exchangeInfo (the traded
symbols' filters), the market streams (spot bookTicker and USDⓈ-M markPrice@1s), the
reconciler and the spot user stream (whose first subscription runs the start-up gap fill),
the scheduler's jobs, then the strategy loop, the live status, and the oversight
(``executor.oversight.hub``: operator controls, alerts and the web server when configured).

Stop (SIGINT/SIGTERM, ``--duration`` or an error), each step bounded by ``shutdown.Shutdown``:
strategy off, orders in flight settled, our open orders cancelled (``orders.cancel_on_shutdown``),
a final reconciliation, the run row closed with how it ended (``clean``; ``unclean`` naming
the steps that failed or were skipped; ``forced`` after a second signal, which abandons the
remaining steps but still writes the row), streams and connections closed; the exit code
follows the ending (``failures.exit_code_for_ending``). The ledger stays consistent because
every write is its own transaction. While a 429/418 holds REST closed longer than a step
may take, the REST steps (cancels, final reconciliation) are skipped at once with one
WARNING (until when, what was skipped, which of our orders stay on the book) noted in the
run row; the next start's gap fill reconciles.

A failure at start or while running is one ERROR line (``failures.classify``: what failed,
what to do) and its exit code; the traceback is logged at DEBUG only.

Without ``[database] url`` each profile has its own ledger (``config.default_database_url``);
testnet, demo and live write it with ``synchronous=FULL``. The embedded exchange restarts its
order and trade ids with every start, so a run on a freshly started one gets its own ledger
file next to the configured one
(``<db dir>/sim/<name>-<UTC time>.db``): two runs' ids must never meet in one ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import logging
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import IO, Any

from sqlalchemy.exc import SQLAlchemyError

from executor.config import Config, ConfigError
from executor.core.fees import FeeRates
from executor.core.filters import SymbolRules
from executor.core.ids import ClientIdFactory, is_ours, make_run_tag
from executor.core.money import format_decimal
from executor.core.reports import wire_symbol
from executor.exchange import binance_reports
from executor.exchange.credentials import Credentials
from executor.market.state import MarketState
from executor.orders.id_supply import IdSupply
from executor.orders.manager import OrderManager, ResolveTiming
from executor.orders.order_log import OrderLog
from executor.orders.tracker import OrderTracker
from executor.persistence.identity import LedgerMismatch
from executor.persistence.lease import EXIT_LEDGER_REFUSED, LeaseHeld
from executor.reconcile.futures_account import FuturesAccountReconciler
from executor.risk.checks import RiskChecker
from executor.run.engine_loop import StrategyLoop
from executor.run.failures import EXIT_ERROR, EXIT_OK, VenueUnreachable, classify, exit_code_for_ending
from executor.run.health import HealthMonitor
from executor.run.shutdown import Shutdown
from executor.status import StatusPrinter, StatusSources
from executor.strategy.base import Strategy, StrategyContext
from executor.venue.endpoints import Endpoints
from executor.venue.profiles import Venue

__all__ = ["Bot", "BotOptions", "fetch_sim_venue", "futures_keys_needed",
           "futures_user_data_wanted", "run_bot", "run_command", "sim_ledger_url"]

log = logging.getLogger(__name__)


async def _logged(what: str, work: Awaitable[Any]) -> None:
    """Await ``work`` on a path that must go on (shutdown, housekeeping); a failure is
    logged with ``what`` and its traceback, never dropped. Cancellation propagates."""
    try:
        await work
    except Exception:
        log.exception("%s failed", what)

VERSION = "0.1.0"
# stop() during a 429/418: how long in-flight work (and scheduler jobs) may still settle;
# whatever waits on the closed REST gate cannot finish anyway.
BANNED_SETTLE_S = 1.0


@dataclass
class BotOptions:
    """Knobs of one run that are not configuration (tests and benchmarks set them)."""

    max_requests_per_s: int = 50
    resolve: ResolveTiming = field(default_factory=ResolveTiming)
    user_stream: bool = True
    scheduler: bool = True
    status_out: IO[str] | None = None
    status_tty: bool | None = None
    status_interval_s: float | None = None
    ready_timeout_s: float = 15.0
    timer_s: float = 1.0
    poll_orders_s: float = 2.0  # REST polling of our resting orders when no user stream runs
    futures_user_stream: bool | None = None  # None: on for profile sim, else when futures are used
    stall_after_s: float = 10.0  # user streams: an expected event later than this = stalled
    probe_every_s: float = 30.0  # spot user stream: session.status probe interval
    args: argparse.Namespace | None = None  # for the live confirmation (--live)
    log_setup: Any = None  # executor.run.logs.LogSetup: the log file is renamed to carry the run id
    # A replay (executor/replay/runner.py): the bot's clock follows the exchange's. ``clock`` is
    # seconds (in place of time.monotonic), ``clock_ms`` epoch ms for the ledger's times, and
    # ``run_salt`` makes the client-id run tag reproducible.
    clock: Any = None
    clock_ms: Any = None
    run_salt: int | None = None
    # A max-speed replay: the ledger's SQLite calls run on the loop's thread (persistence/db.py,
    # "Inline SQLite"); the lock-step waits for every write, so a worker thread only costs.
    inline_ledger: bool = False


class Bot:
    """One run of the bot on one venue. ``start()``, then ``stop(reason)``."""

    def __init__(self, cfg: Config, venue: Venue, credentials: Credentials | None,
                 options: BotOptions | None = None, *,
                 futures_credentials: Credentials | None = None) -> None:
        self.cfg = cfg
        self.venue = venue
        self.credentials = credentials
        # The futures account's own key (testnet/demo: ``keys.load_futures_credentials``);
        # None: the order client's key serves futures too (live, sim).
        self.futures_credentials = futures_credentials
        self.futures_client: Any = None
        self.futures_trading: Any = None  # executor.run.futures_trading.FuturesTrading when [futures] trade
        self.options = options or BotOptions()
        self.symbols = list(dict.fromkeys(cfg.symbols.spot))
        self.market = MarketState(self.symbols, clock=self.options.clock)
        self.strategy: Strategy | None = None
        self.store: Any = None
        self.gateway: Any = None
        self.reconciler: Any = None
        self.rules: dict[str, SymbolRules] = {}
        self.fees: dict[str, FeeRates] = {}
        self.tracker: OrderTracker | None = None
        self.manager: OrderManager | None = None
        self.id_supply: IdSupply | None = None
        self.id_resolution: Any = None  # reconcile.id_blocks.BlockResolution of the start
        self.risk: RiskChecker | None = None
        self.loop: StrategyLoop | None = None
        self.ctx: StrategyContext | None = None
        self.streams: list[Any] = []
        self.user_streams: list[Any] = []
        self.futures_streams: list[Any] = []
        self.futures_recon: FuturesAccountReconciler | None = None
        self.scheduler: Any = None
        self.status: StatusPrinter | None = None
        self.order_log = OrderLog()  # one INFO line per order sent, acknowledged, filled, ended
        self.run_id: int | None = None
        # One owner per ledger, its namespace and venue (executor.persistence.lease/identity).
        self.lease: Any = None
        self.identity: Any = None
        self.prefix = cfg.orders.client_id_prefix  # replaced by the ledger's own on start
        self.lease_lost: str | None = None
        self.on_lease_lost: Callable[[str], None] | None = None  # run_bot: ask for a stop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: list[Any] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._status_stop = asyncio.Event()
        self.oversight: Any = None  # executor.oversight.hub.Oversight: controls, alerts, web
        self.health = HealthMonitor(cfg.health)
        self.started = False

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        from executor.strategy.loader import load_strategy

        cfg = self.cfg
        # The strategy first: a bad parameter must stop us before anything connects.
        self.strategy = load_strategy(cfg.strategy)
        self._check_futures_keys()
        from executor.oversight.hub import Oversight

        self.oversight = Oversight(self)  # alert secrets and the web token are checked here
        await self.oversight.bind()  # the web port, if configured: in use -> ConfigError now
        await self._open_ledger()
        await self._open_gateway()
        await self._load_rules()
        await self._load_fees()
        await self._open_futures_trading()
        await self._start_market()
        self._build_trading()
        assert self.id_supply is not None
        await self.id_supply.start()  # the first block of order ids, reserved before any order
        # The user stream subscribes and gap-fills while the market streams wait for their
        # first message (a mark price comes once a second): neither needs the other.
        await self._start_user_data()
        await self._market_ready()
        await self._start_scheduler()
        assert self.loop is not None
        self.loop.start()
        self.health.start()
        self._start_status()
        await self.oversight.start()
        self.started = True
        log.info("bot running: run %s, %s, symbols %s, strategy %s", self.run_id, self.venue.describe(),
                 ", ".join(self.symbols), cfg.strategy.path)

    async def _open_ledger(self) -> None:
        """The lease first (a second bot is refused before it writes anything), then the
        ledger's identity (its prefix; another venue is refused), then our run row."""
        from executor.persistence.db import synchronous_for
        from executor.persistence.identity import VenueIdentity, establish, rest_host
        from executor.persistence.lease import LedgerLease
        from executor.persistence.store import Store, config_hash

        url, sync = self.cfg.database.url, synchronous_for(self.cfg.profile)
        self._loop = asyncio.get_running_loop()
        # A replay's ledger keeps the recording's time (the bot's clock follows the exchange's).
        store_clock = {"clock": self.options.clock_ms} if self.options.clock_ms is not None else {}
        self.store = await Store.open(url, synchronous=sync, inline=self.options.inline_ledger, **store_clock)
        lease = LedgerLease(url, synchronous=sync)
        await asyncio.to_thread(lease.acquire)  # LeaseHeld: refused, nothing written
        self.lease = lease
        lease.start_heartbeat(self._lease_lost_from_thread)
        venue = VenueIdentity(self.cfg.profile, rest_host(self.venue.orders.spot_rest))
        self.identity = await establish(self.store.engine, lease.path,
                                        configured_prefix=self.cfg.orders.client_id_prefix, venue=venue)
        self.prefix = self.identity.prefix
        self.run_id = await self.store.start_run(VERSION, self.cfg.profile, config_hash(self.cfg))
        await asyncio.to_thread(lease.set_run, self.run_id)
        log.info("ledger %s: %s", lease.path, self.identity.describe())
        if self.options.log_setup is not None:
            with contextlib.suppress(OSError):
                self.options.log_setup.attach_run_id(self.run_id)

    async def _open_gateway(self) -> None:
        from executor.exchange.rest import RestGateway
        from executor.venue.profiles import make_clients

        if self.credentials is None:
            raise ConfigError(f"profile {self.cfg.profile!r}: no API credentials")
        orders_client, market_client = make_clients(self.venue, self.credentials, self.cfg)
        self._clients = [orders_client] if market_client is orders_client else [orders_client, market_client]
        self.gateway = RestGateway(orders_client, max_requests_per_s=self.options.max_requests_per_s)
        offset = await self.gateway.start()
        log.info("server clock offset %d ms", offset)
        if self.cfg.profile == "live":
            from executor.venue.preflight import ensure_live_ready

            # Nothing has been sent yet; LiveRefused (raised on any failure) ends the run here.
            await ensure_live_ready(self.cfg, self.options.args or argparse.Namespace(live=False),
                                    self.gateway.client)
        await self._bind_account()

    async def _bind_account(self) -> None:
        """The ledger belongs to one account: record its uid once, refuse another one."""
        from executor.persistence.identity import bind_account

        uid = (await self.gateway.account()).get("uid")
        if uid is not None and self.lease is not None:
            await bind_account(self.store.engine, self.lease.path, str(uid))

    def _lease_lost_from_thread(self, message: str) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_lease_lost, message)

    def _on_lease_lost(self, message: str) -> None:
        """Another process owns the ledger now: no order may leave from here any more."""
        self.lease_lost = message
        log.critical("%s; stopping trading NOW (no more orders, no shutdown cancels, the run row "
                     "is left to the new owner)", message)
        if self.manager is not None:
            self.manager.accepting = False
        if self.on_lease_lost is not None:
            self.on_lease_lost(message)

    async def _load_rules(self) -> None:
        info = await self.gateway.exchange_info(self.symbols)
        by_name = {s.get("symbol"): s for s in info.get("symbols", [])}
        missing = [s for s in self.symbols if s not in by_name]
        if missing:
            raise ConfigError(f"symbols.spot: {', '.join(missing)} not listed by the exchange")
        self.rules = {s: SymbolRules.from_exchange_info(by_name[s]) for s in self.symbols}
        not_trading = [s for s, r in self.rules.items() if r.status != "TRADING"]
        if not_trading:
            log.warning("symbols not TRADING (orders on them will be refused): %s", ", ".join(not_trading))

    async def _load_fees(self) -> None:
        """The fee model: the account's commission rates per symbol, read from the exchange."""
        from executor.core.fees import parse_commission
        from executor.exchange.rest import GatewayError

        for symbol in self.symbols:
            try:
                self.fees[symbol] = parse_commission(await self.gateway.commission(symbol))
            except (GatewayError, ValueError) as exc:  # the bot trades on without a fee estimate
                log.warning("%s: commission rates unavailable (%s); strategies see fees() None", symbol, exc)
                continue
            rates = self.fees[symbol]
            log.info("%s commission: maker %s, taker %s (+ buyer %s / seller %s)", symbol, rates.maker,
                     rates.taker, rates.buyer, rates.seller)

    async def _start_market(self) -> None:
        from executor.exchange.market_stream import book_ticker_stream, kline_stream, mark_price_stream

        stale = max(float(self.cfg.risk.stale_after_s) * 2, 10.0)
        market_ep: Endpoints = self.venue.market
        self.streams = [book_ticker_stream(market_ep, self.symbols, self.market, stale_after_s=stale),
                        mark_price_stream(market_ep, self.symbols, self.market, stale_after_s=stale)]
        intervals = tuple(getattr(self.strategy, "candle_intervals", ()))
        if intervals:
            self.streams.append(kline_stream(market_ep, self.symbols, self.market, intervals,
                                             stale_after_s=stale))
        for stream in self.streams:
            await stream.start()

    async def _market_ready(self) -> None:
        for stream in self.streams:
            try:
                await stream.wait_ready(self.options.ready_timeout_s)
            except TimeoutError:
                log.warning("%s stream not ready after %.0f s; carrying on (the supervisor keeps trying)",
                            stream.kind, self.options.ready_timeout_s)

    def _build_trading(self) -> None:
        from executor.reconcile.reconciler import Reconciler

        cfg = self.cfg
        rules = self.rules
        clock = {"clock": self.options.clock} if self.options.clock is not None else {}
        self.tracker = tracker = OrderTracker(lambda s: rules[s].base_asset, **clock)
        # The -2013 grace is at least the request timeout, for the manager and gap fills alike.
        timing = replace(self.options.resolve, request_timeout_s=float(cfg.orders.request_timeout_s))
        fut = self.futures_trading
        on_update = tracker.apply_update if fut is None else fut.route_update(tracker.apply_update)
        self.reconciler = Reconciler(self.store, self.gateway, prefix=self.prefix,
                                     translate=binance_reports.SPOT,
                                     symbols=self.symbols, on_order_update=on_update,
                                     not_found_grace_ms=int(timing.grace_s * 1000))
        # Position and free balances from the ledger after every gap fill (start included).
        self.reconciler.on_resync = functools.partial(tracker.load, self.store)
        self.reconciler.on_balances = tracker.set_balances
        if self.options.run_salt is not None and self.options.clock_ms is not None:
            run_tag = make_run_tag(self.options.clock_ms(), self.options.run_salt)
        else:
            run_tag = make_run_tag(time.time_ns() // 1_000_000, secrets.randbits(20))
        # Order ids only from blocks the ledger reserved durably (orders.id_supply).
        ids = ClientIdFactory(self.prefix, run_tag, blocks=True)
        self.id_supply = IdSupply(self.store, ids)
        self.risk = RiskChecker(cfg.risk, **clock)
        views = tracker.views if fut is None else (lambda: [*tracker.views(), *fut.manager_views()])
        self.ctx = StrategyContext(self.market, rules, views, tracker.inventory,
                                   stale_after_s=float(cfg.risk.stale_after_s), fees=self.fees,
                                   free_balance=tracker.free_balance,
                                   futures_position=None if fut is None else fut.position,
                                   exchange_closes=None if fut is None else fut.exchange_closes,
                                   futures_rules=None if fut is None else fut.rules, **clock)
        self.manager = OrderManager(gateway=self.gateway, store=self.store, reconciler=self.reconciler,
                                    tracker=tracker, risk=self.risk, view=self.ctx, rules=rules, ids=ids,
                                    market=self.market, timing=timing, **clock)
        if fut is not None:
            self.manager = fut.build(store=self.store, reconciler=self.reconciler, spot_manager=self.manager,
                                     spot_risk=self.risk, spot_inventory=tracker.inventory, spot_rules=rules,
                                     market=self.market, ids=ids, timing=timing)
        assert self.strategy is not None
        self.loop = StrategyLoop(self.market, self.strategy, self.ctx, self.manager, self.risk,
                                 timer_s=self.options.timer_s, on_timer_extra=self._on_timer)
        tracker.on_change = self._on_order_change
        if fut is not None and fut.tracker is not None:
            fut.tracker.on_change = self._on_order_change
            fut.on_exchange_close = self._on_exchange_close
        self.manager.on_sending = self._expect_stream_event
        self.manager.on_no_effect = self._withdraw_expectation
        self.manager.wait_for_ids = self.id_supply.wait

    def _on_order_change(self, order: Any) -> None:
        assert self.loop is not None
        self.order_log.changed(order)
        self.loop.on_order(order)

    def _on_exchange_close(self, close: Any) -> None:
        """The exchange closed (part of) the bot's perpetual position: never silent (a WARNING
        and an alert saying what the strategy does next)."""
        symbol = wire_symbol(close.symbol)
        plan = self.strategy.after_exchange_close(symbol, close) if self.strategy is not None else ""
        price = "an unknown price" if close.price is None else format_decimal(close.price)
        what = "liquidated" if close.kind == "liquidation" else "ADL-closed"
        text = (f"the perpetual leg of {symbol} was {what} by the exchange at {price}, "
                f"{close.side.value} {format_decimal(close.qty)} (order {close.client_order_id}); "
                f"position now {format_decimal(self.futures_trading.position(symbol))}. Next: {plan}")
        log.warning("%s", text)
        if self.oversight is not None:
            self.oversight.alerter.send("liquidation", text, symbol=symbol, close=close.kind,
                                        price=None if close.price is None else str(close.price),
                                        qty=str(close.qty), side=close.side.value,
                                        client_order_id=close.client_order_id, run_id=self.run_id)

    def _expect_stream_event(self, client_id: str) -> None:
        order = self.tracker.get(client_id) if self.tracker is not None else None
        if order is not None:
            self.order_log.sent(order)
        # Armed before the request leaves (the stream's event can beat the HTTP answer): if
        # the exchange acts on it, its executionReport must follow on the user stream, or
        # the stream is silently dead (its supervisor then replaces it). Not while the
        # REST gate is closed (429/418): the request then waits, possibly for minutes,
        # before it leaves, and a healthy stream would be declared stalled.
        gate = getattr(self.gateway, "gate", None)
        if gate is not None and not gate.is_open:
            return
        for stream in self.user_streams:
            stream.expect_event(client_id)

    def _withdraw_expectation(self, client_id: str) -> None:
        # The exchange definitely did not act (rejected, rate limited, never placed): no
        # event will come, and waiting for one would declare a healthy stream stalled.
        for stream in self.user_streams:
            withdraw = getattr(stream, "withdraw_expectation", None)
            if withdraw is not None:
                withdraw(client_id)
            else:
                pending = getattr(getattr(stream, "activity", None), "_pending", None)
                if isinstance(pending, dict):
                    pending.pop(client_id, None)

    def _on_timer(self) -> None:
        if self.tracker is not None:
            self.tracker.prune()

    async def _start_user_data(self) -> None:
        await self.reconciler.start()
        await self._resolve_id_blocks()
        if not self.options.user_stream:
            await self.reconciler.gap_fill("start")
            self._tasks.append(asyncio.create_task(self._poll_orders(), name="order-poller"))
            return
        from executor.exchange.user_stream import SpotUserStream, reconciler_sink
        from executor.exchange.ws_sign import WsSigner

        signer = WsSigner(self.gateway.client, recv_window_ms=self.cfg.orders.recv_window_ms)
        stream = SpotUserStream(self.venue.orders.spot_ws_api, signer, reconciler_sink(self.reconciler),
                                self.reconciler.gap_fill, gate=self.gateway.gate,
                                resync_clock=self.gateway.sync_clock,
                                stall_after_s=self.options.stall_after_s,
                                probe_every_s=self.options.probe_every_s)
        self.user_streams = [stream]
        await stream.start()
        try:
            await stream.wait_ready(self.options.ready_timeout_s)
            # The first subscription runs the start-up gap fill; trade only once it is done.
            await asyncio.wait_for(stream.gaps.wait_idle(), self.options.ready_timeout_s * 4)
        except TimeoutError:
            log.warning("user stream not ready after %.0f s; running the start-up gap fill over REST",
                        self.options.ready_timeout_s)
            await self.reconciler.gap_fill("start")
        await self._adopt_open_orders()
        await self._start_futures_user_data()

    async def _resolve_id_blocks(self) -> None:
        """Before the start-up gap fill: the ids an earlier, unclean run reserved but the
        ledger does not hold are looked up on the exchange and adopted (``reconcile.id_blocks``)."""
        from executor.reconcile.id_blocks import VenueOrders, resolve_open_blocks

        gateway = self.gateway

        async def spot_since(symbol: str, since_ms: int) -> list[Any]:
            return await gateway.orders_since(symbol, since_ms, now_ms=time.time_ns() // 1_000_000)

        venues = [VenueOrders("spot", tuple(self.symbols), binance_reports.SPOT.order, gateway.get_order,
                              list_since=spot_since)]
        fut = self.futures_trading
        if fut is not None and fut.gateway is not None:
            fgw = fut.gateway

            async def futures_since(symbol: str, since_ms: int) -> list[Any]:
                return await fgw.orders_since(symbol, since_ms, now_ms=time.time_ns() // 1_000_000)

            venues.append(VenueOrders("USD-M", tuple(wire_symbol(s) for s in fut.symbols),
                                      binance_reports.USDM.order, fgw.get_order, list_since=futures_since,
                                      fetch_fills=False))
        self.id_resolution = await resolve_open_blocks(
            self.store, self.reconciler, venues, prefix=self.prefix, current_run_id=self.run_id)

    def _futures_wanted(self) -> bool:
        return futures_user_data_wanted(self.cfg, self.options)

    def _check_futures_keys(self) -> None:
        """Testnet/demo futures hosts take only their own keys: refuse to start without them
        rather than send the spot key to the futures host."""
        if self.futures_credentials is None and futures_keys_needed(self.cfg, self.options):
            from executor.venue.keys import KeysError, default_env_files, futures_missing_message

            raise KeysError(futures_missing_message(self.cfg.profile,
                                                    [f for f in default_env_files() if f.is_file()]))

    async def _open_futures_trading(self) -> None:
        """``[futures] trade``: the futures gateway, rules and account settings (checked)."""
        if not self.cfg.futures.trade:
            return
        from executor.run.futures_trading import FuturesTrading

        self.futures_trading = FuturesTrading(self.cfg, self.symbols)
        await self.futures_trading.open(self._make_futures_client(), self.gateway)

    def _make_futures_client(self) -> Any:
        """The client for the futures listenKey and account calls: its own key where the
        venue issues one (testnet/demo), else the order client."""
        if self.futures_client is not None:
            return self.futures_client
        if self.futures_credentials is None:
            self._check_futures_keys()
            self.futures_client = self.gateway.client
            return self.futures_client
        from executor.venue.profiles import make_client

        client = make_client(self.venue.orders, self.futures_credentials,
                             timeout_s=float(self.cfg.orders.request_timeout_s),
                             recv_window_ms=self.cfg.orders.recv_window_ms)
        client.timestamp_offset = self.gateway.clock.offset_ms
        self._clients.append(client)  # closed with the others at stop
        self.futures_client = client
        return client

    async def _start_futures_user_data(self) -> None:
        if not self._futures_wanted():
            return
        from executor.exchange.futures_user_stream import FuturesListenKeys, FuturesUserStream
        from executor.exchange.user_stream import reconciler_sink

        client = self._make_futures_client()
        self.futures_recon = recon = FuturesAccountReconciler(self.store, self.gateway, client=client,
                                                              translate=binance_reports.USDM.account)
        fut = self.futures_trading
        observe = recon.note_report
        if fut is not None:
            def observe(report: Any) -> None:   # the account's figures, then the bot's position
                recon.note_report(report)
                fut.note_account(report)

        deliver = reconciler_sink(self.reconciler, observe=observe)
        gap_fill = recon.gap_fill
        if fut is not None:
            async def gap_fill(reason: str) -> Any:   # the account, then our futures orders and fills
                report = await recon.gap_fill(reason)
                await fut.gap_fill(reason)
                return report

        stream = FuturesUserStream(self.venue.orders.futures_private_stream,
                                   FuturesListenKeys(client, gate=self.gateway.gate),
                                   deliver, gap_fill, stall_after_s=self.options.stall_after_s)
        self.futures_streams = [stream]
        await stream.start()
        try:
            await stream.wait_ready(self.options.ready_timeout_s)
            # As on spot, the first connection runs the start-up gap fill: the futures position
            # from the ledger, then what happened while the bot was down (a liquidation). Trade
            # only once it is done, or the strategy and risk would read a position not loaded.
            await asyncio.wait_for(stream.gaps.wait_idle(), self.options.ready_timeout_s * 4)
        except TimeoutError:
            log.warning("futures user stream not ready after %.0f s; its supervisor keeps trying; "
                        "running the start-up futures gap fill over REST", self.options.ready_timeout_s)
            await gap_fill("start")

    async def _adopt_open_orders(self) -> None:
        """Our orders left open by an earlier run become tracked (so they are cancelled and
        counted against limits); never anyone else's."""
        assert self.tracker is not None
        for rec in await self.store.orders_not_final(include_external=False):
            if rec.symbol not in self.rules or rec.client_order_id in self.tracker:
                continue
            if not is_ours(rec.client_order_id, self.prefix):
                continue
            self.tracker.adopt(rec.client_order_id, rec.symbol, rec.side, rec.type, rec.price or Decimal(0),
                               rec.quantity or Decimal(0), rec.status, rec.executed_qty)
            adopted = self.tracker.get(rec.client_order_id)
            if adopted is not None and adopted.unresolved and self.manager is not None:
                # Left unresolved by a crash, inside the -2013 grace: it counts against the
                # limits and is resolved by query (the grace from its last recorded change).
                self.manager.resume(rec.symbol, rec.client_order_id,
                                    (self.store.clock() - rec.updated_ms) / 1000)

    async def _poll_orders(self) -> None:
        """Without a user stream: ask the exchange about our resting orders now and then."""
        assert self.tracker is not None
        while True:
            await asyncio.sleep(self.options.poll_orders_s)
            for order in self.tracker.working():
                if order.unresolved or order.status.value not in ("NEW", "PARTIALLY_FILLED"):
                    continue
                try:
                    found = await self.gateway.get_order(order.symbol, order.client_id)
                    if found is not None:
                        await self.reconciler.apply_order_response(found, source="rest_query")
                except Exception as exc:  # noqa: BLE001 - a failed poll is logged and retried next round; gap fills cover the rest
                    log.info("order poll of %s failed: %s", order.client_id, exc)

    async def _start_scheduler(self) -> None:
        if not self.options.scheduler:
            return
        from executor.run.scheduler import build_scheduler

        # On the embedded exchange intervals are exchange seconds: a faster sim clock runs
        # the keepalives, reconciliations and daily reconnects faster too.
        scale = float(self.cfg.sim.time_scale) if self.cfg.profile == "sim" else 1.0
        rec: Any = self.reconciler
        if self.futures_recon is not None:
            rec = _BothMarkets(self.reconciler, self.futures_recon, self.futures_trading)
        url, settle_s = self.cfg.database.url, self.cfg.scheduler.audit_settle_s

        async def checkpoint() -> str:
            from executor.audit.checkpoint_job import run_in_child

            return await run_in_child(url, settle_s)

        self.scheduler = build_scheduler(self.cfg.scheduler, time_scale=scale, market_streams=self.streams,
                                         user_streams=self.user_streams, futures_streams=self.futures_streams,
                                         reconciler=rec, gateway=self.gateway, checkpoint=checkpoint)
        self.scheduler.start()

    def _start_status(self) -> None:
        from executor.figures import balances, open_orders

        opts = self.options
        out = opts.status_out if opts.status_out is not None else sys.stdout
        title = f"bx run {self.run_id} · {self.cfg.profile}"
        self._balances: list[Any] = []
        self._open_orders: list[Any] = []

        def watch() -> Any:  # the oversight's LedgerWatch: the figures the web shows too
            return getattr(self.oversight, "watch", None)

        def pnl(period: str) -> Any:
            w = watch()
            return None if w is None or period not in w.folds else w.pnl(period)  # folds: after start()

        async def refresh() -> None:
            while True:
                with contextlib.suppress(Exception):
                    self._balances = balances(await self.store.get_balances())
                    self._open_orders = open_orders(await self.store.recent_orders(50, open_only=True))
                await asyncio.sleep(2.0)

        kill = self.risk.kill_switch if self.risk is not None else None

        strategy_flags = getattr(self.strategy, "flags", dict)  # symbol -> e.g. an unhedged carry leg

        def flags() -> list[str]:
            out = ["KILL SWITCH engaged"] if kill is not None and kill.is_engaged() else []
            return out + [f"!! {symbol} {text}" for symbol, text in sorted(strategy_flags().items())]

        src = StatusSources(title=title, symbols=self.symbols, market=self.market, tracker=self.tracker,
                            manager=self.manager, balances=lambda: self._balances, pnl=pnl,
                            positions=lambda: watch().positions if watch() is not None else {},
                            open_orders=lambda: self._open_orders,
                            streams=lambda: [h for s in self.streams for h in s.health()],
                            user_streams=lambda: [u.health for u in self.user_streams + self.futures_streams],
                            jobs=self._job_counts, reconcile=self._reconcile_text,
                            flags=flags, health=self.health.text,
                            stale_after_s=float(self.cfg.risk.stale_after_s))
        self.status = StatusPrinter(src, out, tty=opts.status_tty, interval_s=opts.status_interval_s)
        self._tasks.append(asyncio.create_task(refresh(), name="status-figures"))
        self._tasks.append(asyncio.create_task(self.status.run(self._status_stop), name="status"))

    def _job_counts(self) -> dict[str, int]:
        if self.scheduler is None:
            return {}
        return {name: st.runs for name, st in self.scheduler.stats.items()}

    def _reconcile_text(self) -> str:
        if self.reconciler is None:
            return ""
        t = self.reconciler.totals
        return f"ledger: {t.fills_added} fills stored, {t.fills_duplicate} seen twice (kept once)"

    # ------------------------------------------------------------------ stop

    async def stop(self, shutdown: Shutdown, *, ended: str = "clean", reason: str = "") -> str:
        """Stop in order (see the module docstring); returns how the run ended.

        ``clean`` only when every step finished; ``unclean`` (the run row names the steps
        that failed or were skipped) otherwise; ``forced`` after a second signal, written to
        the run row before the process exits; ``error`` when called after a failure."""
        forced = False
        failed: list[str] = []

        async def step(name: str, work: Any, timeout: float) -> None:
            nonlocal forced
            ok = await shutdown.try_step(name, work, timeout)
            forced = forced or shutdown.forced.is_set()
            if not ok and not forced:
                failed.append(name)
                log.warning("shutdown: %s did not complete", name)

        # During a 429/418 nothing can be sent (sending extends the ban), so a REST step
        # the gate holds longer than the step may take is skipped, not waited out.
        skipped: list[str] = []

        def rest_closed(*names: str, wait_s: float) -> bool:
            if self._rest_closed_s() <= wait_s:
                return False
            skipped.extend(names)
            return True

        if self.loop is not None:
            await step("stop strategy", self.loop.stop(), 5)
        # The ledger has a new owner: its orders carry our prefix too, so cancelling "ours"
        # and the final reconciliation are its business now, and so is our run row.
        lost = self.lease_lost is not None
        if lost:
            ended = "error"
        if self.manager is not None:
            self.manager.accepting = False
            # What still waits for REST cannot finish during a ban; the rest settles quickly.
            settle_s = BANNED_SETTLE_S if self._rest_closed_s() > 20 else 15
            await step("settle orders in flight", self.manager.drain(settle_s), settle_s + 5)
            if self.cfg.orders.cancel_on_shutdown and self.gateway is not None and not lost and \
                    not rest_closed("cancel our open orders", "settle cancels", wait_s=20):
                await step("cancel our open orders", self.manager.cancel_all_ours("shutdown"), 20)
                await step("settle cancels", self.manager.drain(10), 15)
        if self.scheduler is not None:
            grace = {"grace_s": BANNED_SETTLE_S} if self._rest_closed_s() > 8 else {}
            await step("stop scheduler", self.scheduler.shutdown(**grace), 8)
        if self.reconciler is not None and self.gateway is not None and self.run_id is not None and \
                not lost and not rest_closed("final reconciliation", wait_s=30):
            await step("final reconciliation", self._final_reconcile(), 30)
        if skipped:
            reason = (reason + "; " if reason else "") + self._log_rest_skipped(skipped)
        for stream in [*self.user_streams, *self.futures_streams]:
            await step("close user stream", stream.close(), 5)
        if self.futures_trading is not None:
            await step("stop futures position tasks", self.futures_trading.stop(), 5)
        if self.reconciler is not None:
            await step("stop reconciler", self.reconciler.stop(), 10)
        if self.manager is not None:
            await step("stop order manager", self.manager.stop(2), 5)
        forced = forced or shutdown.forced.is_set()
        ended, reason = run_ending(ended, reason, failed=failed, skipped=skipped, forced=forced)
        if self.id_supply is not None:
            await _logged("stop the id supply", self.id_supply.stop())
        if self.store is not None and self.run_id is not None and not lost:
            # (A lost lease: the new owner closes this run as abandoned.)
            # Not a ``step``: after a second signal every step is skipped, and the run row
            # must still say how the run ended before the process exits. A clean end also
            # releases the run's unused order ids (persistence.store).
            used_to = self.id_supply.used_to if self.id_supply is not None else None
            try:
                await asyncio.wait_for(self.store.finish_run(
                    self.run_id, ended=ended, reason=reason or None, used_to=used_to), 5)
            except Exception as exc:  # noqa: BLE001 - logged as one line; the run row is best effort here
                log.warning("shutdown: could not close the run row: %s", classify(exc).line)
        if self.run_id is not None:
            # After a failure the failure itself was the line; this one only closes the story.
            log.info("run %s ended %s%s", self.run_id, ended,
                     " (the failure above)" if ended == "error" else f": {reason}" if reason else "")
        if self.oversight is not None:
            await step("stop web and alerts", self.oversight.stop(ended, reason), 8)
        self._status_stop.set()
        await self.health.stop()
        for task in self._tasks:
            if task.get_name() == "status":
                await _logged("final status line", asyncio.wait_for(asyncio.shield(task), 2))
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for stream in self.streams:
            await step("close market stream", stream.close(), 5)
        if self.gateway is not None:
            for client in self._clients:
                await _logged("closing an HTTP client", client.close_connection())
        if self.lease is not None:
            try:
                await asyncio.to_thread(self.lease.release)
            except (SQLAlchemyError, OSError) as exc:  # the next start takes a dead holder's lease over
                log.warning("could not release the ledger lease: %s: %s", type(exc).__name__, exc)
        if self.store is not None:
            await _logged("closing the ledger", self.store.close())
        return ended

    def _rest_closed_s(self) -> float:
        """Seconds the REST gate (429/418 Retry-After) stays closed from now; 0 when open."""
        gate = getattr(self.gateway, "gate", None)
        return 0.0 if gate is None else float(gate.remaining())

    def _log_rest_skipped(self, skipped: list[str]) -> str:
        """One WARNING for the REST steps a ban made stop() skip; returns the run row's note."""
        gate = getattr(self.gateway, "gate", None)
        kind = "banned (418)" if gate is not None and gate.banned else "rate limited (429)"
        left = self._rest_closed_s()
        until = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=left)).strftime("%Y-%m-%dT%H:%M:%SZ")
        working = self.tracker.working() if self.tracker is not None else []
        on_book = [o for o in working if not o.unresolved]
        unresolved = [o for o in working if o.unresolved]
        left_text = ", ".join(f"{o.client_id} ({o.symbol} {o.side.value} {o.qty} @ {o.price})"
                              for o in on_book) or "none"
        log.warning("shutdown: REST is %s until %s (%.0f s more; sending now would extend it): skipped %s. "
                    "Open orders of ours left on the book: %s.%s The next start reconciles "
                    "(start-up gap fill) and cancels or adopts what is left.",
                    kind, until, left, ", ".join(skipped), left_text,
                    f" Not yet sent or unresolved (the next start queries them by client id): "
                    f"{', '.join(o.client_id for o in unresolved)}." if unresolved else "")
        note = f"REST {kind} until {until}: skipped {', '.join(skipped)}"
        if on_book:
            note += f"; {len(on_book)} open order(s) left: {', '.join(o.client_id for o in on_book)}"
        return note

    async def _final_reconcile(self) -> None:
        # Events already on the wire (the last orders, cancels) land first, as long as some
        # stream still waits for one (at most 0.3 s).
        streams = [*self.user_streams, *self.futures_streams]
        await self.reconciler.settle(0.3, in_flight=lambda: sum(s.activity.pending for s in streams))
        report = await self.reconciler.gap_fill("shutdown")
        log.info("final reconciliation: %s", gap_fill_summary(report))
        if self.futures_recon is not None:
            await _logged("final futures reconciliation", self.futures_recon.gap_fill("shutdown"))
        if self.futures_trading is not None:
            await _logged("final futures trading reconciliation", self.futures_trading.gap_fill("shutdown"))


def run_ending(ended: str, reason: str, *, failed: list[str], skipped: list[str],
               forced: bool) -> tuple[str, str]:
    """How a run ended, for its run row: ``forced`` beats everything, then a run asked to end
    ``clean`` becomes ``unclean`` when a shutdown step failed or was skipped (named in the
    reason); ``error`` stays ``error``."""
    notes = [reason] if reason else []
    if forced:
        return "forced", "; ".join([*notes, "forced exit on a second signal"])
    if failed:
        notes.append(f"shutdown steps failed: {', '.join(dict.fromkeys(failed))}")
    # Skipped steps (REST closed by a 429/418) are already named in ``reason``.
    if ended == "clean" and (failed or skipped):
        ended = "unclean"
    return ended, "; ".join(notes)


def gap_fill_summary(report: Any) -> str:
    """A gap fill report as one readable line (not the dataclass repr)."""
    counts = getattr(report, "counts", {}) or {}
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in sorted(counts.items()) if v]
    found = len(getattr(report, "discrepancies", []) or [])
    text = f"{found} discrepanc{'y' if found == 1 else 'ies'}"
    if parts:
        text += " (" + ", ".join(parts) + ")"
    error = getattr(report, "error", None)
    return text + (f"; error: {error}" if error else "")


# ---------------------------------------------------------------------- futures account


def futures_user_data_wanted(cfg: Config, options: BotOptions) -> bool:
    """Whether this run streams and reconciles the USDⓈ-M futures account."""
    if not options.user_stream:
        return False
    if options.futures_user_stream is not None:
        return options.futures_user_stream
    if cfg.profile == "sim":
        return True
    from executor.venue.preflight import futures_used

    return futures_used(cfg)


def futures_keys_needed(cfg: Config, options: BotOptions) -> bool:
    """Whether this run needs the futures account's own keys (testnet/demo with futures)."""
    from executor.venue.keys import separate_futures_keys

    return separate_futures_keys(cfg.profile) and futures_user_data_wanted(cfg, options)


class _BothMarkets:
    """The scheduler's reconciler: the spot reconciliation, then the futures account."""

    def __init__(self, spot: Any, futures: FuturesAccountReconciler, trading: Any = None) -> None:
        self.spot = spot
        self.futures = futures
        self.trading = trading

    async def gap_fill(self, reason: str) -> Any:
        report = await self.spot.gap_fill(reason)
        await self.futures.gap_fill(reason)
        if self.trading is not None:
            await self.trading.gap_fill(reason)
        return report

    async def snapshot_balances(self) -> Any:
        snap = await self.spot.snapshot_balances()
        await self.futures.gap_fill("balance_snapshot")
        return snap


# ---------------------------------------------------------------------- venues


def _admin_base(url: str) -> str:
    base = url.strip().rstrip("/")
    for suffix in ("/state", "/urls", "/sim"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base


async def fetch_sim_venue(url: str, timeout_s: float = 10.0) -> tuple[Endpoints, Credentials]:
    """Ask a running ``run.py sim`` (its admin URL) for its endpoints and test key."""
    import aiohttp

    base, _, query = url.strip().partition("?")   # "?account=ID": another account of the sim
    target = _admin_base(base) + "/sim/urls" + (f"?{query}" if query else "")
    if not target.startswith(("http://", "https://")):
        raise ConfigError(f"--exchange: expected the sim's admin URL (http://HOST:PORT), got {url!r}")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session, \
                session.get(target) as resp:
            if resp.status != 200:
                raise ConfigError(f"--exchange: {target} answered HTTP {resp.status}; is it `run.py sim`?")
            data = await resp.json()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise VenueUnreachable(f"--exchange: cannot reach {target}: {type(exc).__name__}: {exc}") from None
    try:
        endpoints = Endpoints(name="sim", spot_rest=data["spot_rest"], spot_stream=data["spot_stream"],
                              spot_ws_api=data["spot_ws_api"], futures_rest=data["futures_rest"],
                              futures_stream=data["futures_stream"], sapi_rest=data.get("sapi_rest"))
        creds = Credentials(api_key=data["api_key"], api_secret=data["api_secret"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"--exchange: {target} gave an unexpected answer ({exc})") from None
    return endpoints, creds


def sim_ledger_url(cfg: Config, now: dt.datetime | None = None) -> str:
    """A fresh ledger file beside the configured one, for a run on a freshly started sim (a
    PostgreSQL ledger is used as configured: a server holds no per-run files)."""
    from executor.persistence.db import database_path, is_sqlite

    if not is_sqlite(cfg.database.url):
        return cfg.database.url
    path = database_path(cfg.database.url)
    now = now or dt.datetime.now(dt.UTC)
    stamp = f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z"
    fresh = path.parent / "sim" / f"{path.stem}-{stamp}{path.suffix}"
    return f"sqlite+aiosqlite:///{fresh}"


def _prune_sim_ledgers(cfg: Config) -> None:
    """Keep the last ``sim.keep_ledgers`` per-run ledgers (this run's counted) and say so."""
    from executor.persistence.db import database_path
    from executor.persistence.retention import prune_sim_ledgers

    current = database_path(cfg.database.url)
    removed = prune_sim_ledgers(current, cfg.sim.keep_ledgers)
    log.info("%s: keeping the last %d per-run ledgers ([sim] keep_ledgers)%s", current.parent,
             cfg.sim.keep_ledgers, f"; deleted {len(removed)} older" if removed else "")


# ---------------------------------------------------------------------- the run


async def run_bot(cfg: Config, args: argparse.Namespace | None = None, *, options: BotOptions | None = None,
                  install_signals: bool = True, shutdown: Shutdown | None = None) -> int:
    """Run until a signal, ``--duration`` or an error; returns the process exit code."""
    from executor.run.logs import register_secrets

    args = args or argparse.Namespace()
    options = options or BotOptions()
    options.args = args
    shutdown = shutdown or Shutdown()
    if install_signals:
        shutdown.install()
    server = None
    bot: Bot | None = None
    futures_creds: Credentials | None = None
    code = EXIT_OK
    venue_url: str | None = getattr(args, "exchange", None)
    try:
        if cfg.profile == "live":
            _confirm_live_first(args)
        from executor.strategy.loader import load_strategy

        load_strategy(cfg.strategy)  # a bad parameter stops us before anything starts
        exchange_url = getattr(args, "exchange", None)
        if cfg.profile == "sim":
            from executor.venue.profiles import venue_for

            if exchange_url:
                endpoints, creds = await fetch_sim_venue(exchange_url)
                venue = Venue("sim", endpoints, endpoints)
            else:
                from executor.sim.exchange import SimExchange
                from executor.sim.server import SimServer

                try:
                    sim = SimExchange.from_config(cfg.sim, symbols=cfg.symbols.spot)
                except ValueError as exc:  # e.g. a symbol whose quote asset it cannot tell
                    raise ConfigError(f"symbols.spot: the embedded exchange cannot list it: {exc}") from None
                ports = {n: getattr(cfg.sim.ports, n) for n in
                         ("spot_rest", "spot_stream", "spot_ws_api", "futures_rest", "futures_stream")}
                server = SimServer(sim, host=cfg.sim.host, ports=ports)
                urls = await server.start()
                venue = venue_for(cfg, urls)
                creds = sim.credentials("HMAC")
                cfg = replace(cfg, database=replace(cfg.database, url=sim_ledger_url(cfg)))
                _prune_sim_ledgers(cfg)
                from executor.persistence.db import describe_url

                log.info("embedded exchange up: admin %s/state; ledger %s", urls.admin,
                         describe_url(cfg.database.url))
        else:
            from executor.venue.keys import load_credentials, load_futures_credentials
            from executor.venue.profiles import venue_for

            if exchange_url:
                raise ConfigError("--exchange only works with profile sim")
            creds = load_credentials(cfg.profile)
            venue = venue_for(cfg)
            if futures_keys_needed(cfg, options):
                futures_creds = load_futures_credentials(cfg.profile)
        venue_url = venue.orders.spot_rest
        log.info("%s; exchange %s; ledger %s", venue.describe(), venue.orders.spot_rest,
                 _ledger_text(cfg.database.url))
        register_secrets(creds, futures_creds)
        bot = Bot(cfg, venue, creds, options, futures_credentials=futures_creds)
        bot.on_lease_lost = lambda message: shutdown.request("ledger lease lost")
        start = asyncio.ensure_future(bot.start())
        stop_wait = asyncio.ensure_future(shutdown.stopping.wait())
        done, _ = await asyncio.wait({start, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if start not in done:
            start.cancel()
            await asyncio.wait({start})  # our own cancellation still propagates
            if not start.cancelled() and start.exception() is not None:
                log.warning("start-up failed while being stopped", exc_info=start.exception())
        else:
            start.result()
            duration = getattr(args, "duration", None)
            if duration is not None:
                if not await shutdown.wait(float(duration)):
                    shutdown.request(f"--duration {duration:g} s elapsed")
            else:
                await shutdown.wait()
        ended = await bot.stop(shutdown, ended="clean", reason=shutdown.reason or "stopped")
        code = EXIT_ERROR if bot.lease_lost else exit_code_for_ending(ended)
    except ConfigError as exc:
        # The caller (``cli``) prints it as one line and exits 2; a run row already opened
        # is closed first.
        if bot is not None:
            await _logged("stopping after the config error",
                          bot.stop(shutdown, ended="error", reason=f"config error: {exc}"[:500]))
        raise
    except (LeaseHeld, LedgerMismatch) as exc:
        print(str(exc), file=sys.stderr)  # one line naming the holder / the ledger's venue
        code = EXIT_LEDGER_REFUSED
    except Exception as exc:
        started = bot is not None and bot.started
        failure = classify(exc, database=cfg.database.url, venue=venue_url)
        # One line; the traceback only at DEBUG (--log-level DEBUG).
        log.error("%s%s", "the bot stopped: " if started else "cannot start: ", failure.line)
        log.debug("the failure in full", exc_info=exc)
        code = failure.code
        if bot is not None:
            try:
                await bot.stop(shutdown, ended="error", reason=failure.line[:500])
            except Exception as stop_exc:  # noqa: BLE001 - logged as one line; the first failure decides the exit
                log.warning("stopping after the failure also failed: %s", classify(stop_exc).line)
    finally:
        if server is not None:
            await _logged("stopping the embedded exchange", server.stop())
        if install_signals:
            shutdown.uninstall()
    return code


def _confirm_live_first(args: argparse.Namespace) -> None:
    """Before anything touches the venue or the ledger: ``--live`` or LIVE typed at a
    terminal, else ``LiveRefused`` (exit 3). Confirmed once; the preflight does not ask again."""
    import io

    from executor.venue.preflight import LiveRefused, confirm_live

    terminal = sys.stdin is not None and sys.stdin.isatty()
    # At a terminal the question is asked there; otherwise the refusal is this one line.
    if not confirm_live(args, out=None if terminal else io.StringIO()):
        how = "type LIVE when asked" if terminal else "stdin is not a terminal to type LIVE on"
        raise LiveRefused(f"live run not confirmed: pass --live ({how}); nothing was sent and "
                          "the ledger was not touched")
    args.live = True


def _ledger_text(url: str) -> str:
    from executor.persistence.db import database_path

    try:
        return str(database_path(url))
    except ValueError:
        return url


def run_command(cfg: Config, args: argparse.Namespace) -> int:
    """``python run.py [run]``: logging, then the bot until it stops; the exit code."""
    from executor.run.logs import setup_logging

    setup = setup_logging(cfg)
    try:
        return asyncio.run(run_bot(cfg, args, options=BotOptions(log_setup=setup)))
    finally:
        setup.close()
