"""``python run.py --replay DIR``: the unchanged bot trading on a recording, and
``python run.py sim --replay DIR``: the embedded exchange alone, driven by one.

A replay run starts the embedded exchange in-process with a ``ReplayClock`` and a
``ReplaySource`` (``executor/sim/replay_source.py``), starts the bot against it over the
same HTTP/WebSocket wire path as any paper run (same streams, REST, user stream, reconciler,
ledger), and feeds the recording. The bot's clock follows the exchange's: receipt times,
order ages, risk windows, the strategy's ``now`` and the ledger's times all read exchange
time (``BotOptions.clock``/``clock_ms``), so a recorded gap looks to the bot exactly as a
live one would (its data ages and it stops trading after ``[risk] stale_after_s``).

Speed. ``--speed N`` paces the recording at N times real time; the bot runs freely beside it
(like live trading: what the bot sees depends on how fast it is). ``--speed max`` (the
default) runs in **lock-step**, which makes a replay deterministic:

1. The exchange applies one recorded line (sets its clock to the line's time, publishes the
   book or mark, fills what the line fills).
2. It then waits at a barrier (``LockStep``) until the bot has finished reacting: every
   market frame published so far has reached the bot's market state (the bot's ``u``/``E``
   equal the exchange's last published ones), every user-data event published has been
   received by the bot's user stream, the strategy loop has no unseen change, the order
   manager has nothing in flight (each request answered and applied) and the reconciler has
   committed everything queued.
3. Only then the next line. The bot's timer (``on_timer``) is fired by the replay once per
   exchange-time second at the first line of that second, also followed by the barrier.

Two orderings that would otherwise race on the wire are fixed: a REST answer leaves the
exchange only once the bot has every market frame published before it (the touch the order
just took, ``SimExchange.before_response``), and user-data events are held in the exchange
until the bot has the REST answers of the requests that caused them (no request in flight),
so the ledger always learns an order's outcome from its answer first.

Every order or cancel request is parked on its way in (``SimExchange.before_order``) and
taken by the exchange only when the bot is otherwise idle, once due (send time +
``[replay] latency_ms`` in recording time; later ones before the line after their due time),
in a fixed order (``request_key``: cancels, then new orders, by client-id sequence) whatever
order the sockets delivered them in, each handled 1 ms after the later of its due time and
the previous request's, each followed by the barrier. So concurrent requests cannot race,
and a burst of orders at one recorded instant gets distinct exchange times, as live.

Cost at max speed (bench/replay_speed.py, bench/RESULTS.md). Two things a lock-step replay
does differently from a live run, neither visible on the wire or in the ledger: the ledger's
SQLite calls run on the event loop's thread (``BotOptions.inline_ledger`` →
``persistence.db.InlineConnection``: the barrier waits for every write anyway, and a worker
thread cost two thread switches and a loop wake-up per call, ~30 calls an order), and the
exchange's sockets write each frame when it is sent rather than a writer-task turn later
(``SimExchange.send_inline``). The timers that remain on wall time (the sim's socket
pings, the bot's health and ledger-watch loops) only fire a few times a second.

Nothing on the bot's wire path changes for this: the barrier only reads public counters of
the bot's parts (market state, manager, reconciler, user-stream health) and the exchange's
own bus, both living in this process. Same recording + config + seed → the same ledger:
order ids, client ids (the run tag is made from the exchange's start time and the seed),
fills, prices, quantities, fees and every time in it. The scheduler (periodic REST
reconciliation, snapshots, keepalives) is off in a replay: its jobs run on wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import heapq
import logging
import re
import sys
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from executor.config import Config, ConfigError
from executor.core.money import parse_decimal
from executor.replay.format import RecordingError, load_manifest
from executor.sim.accounts import DEFAULT_ID
from executor.sim.replay_source import ReplayClock, ReplaySource, ReplayStats, first_values

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
TIMER_OFF_S = 1e9  # the loop's own timer never fires; the replay fires it on exchange time
STALL_OFF_S = 1e6  # wall-time stall checks off in lock-step


_CLIENT_ID_TAIL = re.compile(r"-([oc])([0-9]{1,10})$")


def request_key(client_id: str) -> tuple[int, int]:
    """The order in which requests in flight together reach a lock-step exchange: cancels
    (``…-c<seq>``) before new orders (``…-o<seq>``), each by sequence; foreign ids last."""
    m = _CLIENT_ID_TAIL.search(client_id)
    if m is None:
        return (2, 0)
    return (0 if m.group(1) == "c" else 1, int(m.group(2)))


def _after_io() -> asyncio.Future[None]:
    """A future done one loop turn from now, *after* that turn's socket callbacks.

    The barrier polls while frames are on their way over local sockets. ``sleep(0)`` would
    resume it at the head of the next turn, before the socket's read callback, so every
    hand-off down the bot's chain (socket read → stream reader task → strategy task) was
    seen one turn late and each line cost one extra loop turn (a ``select`` and a pass over
    every ready handle). A zero-delay timer fires after the turn's I/O callbacks, so the
    barrier's next check is queued behind the reader task those callbacks woke, and (via
    ``sleep(0)`` while ``market.pending()``) behind the strategy task: an idle line now
    takes three turns instead of four. Only when the barrier looks changes, never what it
    waits for, so the replay stays deterministic.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    loop.call_later(0, _settle, fut)
    return fut


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ReplayStalled(RuntimeError):
    """The bot did not settle within the barrier's timeout (a bug, not a market condition)."""


def parse_speed(text: str | None) -> float | None:
    """``max`` (or None) → None; otherwise a positive number."""
    if text is None or str(text).lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ConfigError(f"--speed: expected a number or 'max', got {text!r}") from None
    if not speed > 0:
        raise ConfigError(f"--speed: must be positive, got {text!r}")
    return speed


def build_exchange(cfg: Config, folder: Path, speed: float | None) -> tuple[Any, ReplaySource]:
    """A ``SimExchange`` on a ``ReplayClock`` with its ``ReplaySource``, primed with the first
    recorded book and mark of every configured symbol."""
    from executor.sim.exchange import SimExchange

    try:
        manifest = load_manifest(folder)
    except RecordingError as exc:
        raise ConfigError(f"--replay: {exc}") from None
    symbols = list(dict.fromkeys(cfg.symbols.spot))
    missing = [s for s in symbols if s not in manifest.get("symbols", [])]
    if missing:
        raise ConfigError(
            f"--replay: {folder} has no data for {', '.join(missing)} "
            f"(it holds {', '.join(manifest.get('symbols', [])) or 'nothing'}); set symbols.spot"
        )
    try:
        t0, books, marks = first_values(folder, symbols)
    except (RecordingError, ValueError) as exc:
        raise ConfigError(f"--replay: {exc}") from None
    no_book = [s for s in symbols if s not in books]
    if no_book:
        raise ConfigError(f"--replay: {folder} has no spot bookTicker for {', '.join(no_book)}")
    try:
        prices = {
            s: (parse_decimal(books[s].data["b"], "b") + parse_decimal(books[s].data["a"], "a")) / 2
            for s in symbols
        }
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"--replay: {folder}: unusable first bookTicker ({exc})") from None
    settings = replace(
        cfg.sim,
        book_update_hz=Decimal(0),
        market_file="",
        start_prices=prices,
        max_connection_age_s=10 * 365 * 86400,
    )
    clock = ReplayClock(t0, speed)
    sim = SimExchange(settings, symbols=symbols, clock=clock)
    # A replay's market trades are the recording's own (imported aggTrades): none invented on
    # book updates, whose random draws would also move the trade ids our fills get.
    sim.tape.trades_per_update = 0
    fees = cfg.replay
    if not (0 <= fees.maker_fee < 1 and 0 <= fees.taker_fee < 1):
        raise ConfigError('replay.maker_fee and replay.taker_fee must be fractions in [0, 1), e.g. "0.001"')
    if fees.latency_ms < 0:
        raise ConfigError("replay.latency_ms must be 0 or more")
    # At max speed the lock-step waits for each frame: write it at once, not a task later.
    sim.send_inline = speed is None
    sim.default_account.maker_rate = fees.maker_fee
    sim.default_account.taker_rate = fees.taker_fee
    source = ReplaySource(sim, folder, speed=speed)
    source.prime(books, marks)
    return sim, source


class LockStep:
    """The barrier of a max-speed replay (see the module docstring)."""

    def __init__(
        self, bot: Any, sim: Any, source: ReplaySource, timeout_s: float = 60.0, latency_ms: int = 0
    ) -> None:
        self.bot = bot
        self.sim = sim
        self.source = source
        self.timeout_s = timeout_s
        self.latency_ms = latency_ms
        # Order requests waiting to reach the exchange: (due exchange time, arrival seq, waiter).
        # Order/cancel requests on their way in: (due exchange ms, request_key, seq, waiter).
        self._parked: list[tuple[int, tuple[int, int], int, asyncio.Future[None]]] = []
        self._handled_ms = 0
        self._seq = 0
        # Resolved when a request parks, while _wait_for_manager waits (a bare future, not an
        # Event: waiting on Event.wait() took a task of its own and one more loop turn).
        self._park_waiter: asyncio.Future[None] | None = None
        sim.before_order = self._park
        self.published_user = 0
        self.waits = 0
        self._held: list[tuple[str, str, dict[str, Any]]] = []
        # The reconciler's writer only gets work from user events, which only this barrier
        # releases: after a release it must be drained (a commit may be under way).
        self._drain_due = False
        self._unsubscribe = sim.bus.subscribe(DEFAULT_ID, "spot", self._count)
        # User-data events wait in the exchange until the bot has the REST answer of the
        # request that caused them: the answer and the stream's event race otherwise, and the
        # ledger records which came first.
        self._inner_filter = sim.bus.filter
        sim.bus.filter = self._hold
        # A REST answer leaves only once the bot has every market frame published before it
        # (e.g. the touch the order just took), so the two never race either.
        sim.before_response = self._market_first

    def _hold(self, account: str, channel: str, event: dict[str, Any]) -> list[dict[str, Any]]:
        self._held.append((account, channel, event))
        return []

    def _release(self) -> None:
        held, self._held = self._held, []
        self._drain_due = True
        bus, inner = self.sim.bus, self._inner_filter
        for account, channel, event in held:
            for ev in [event] if inner is None else inner(account, channel, event):
                bus.deliver(account, channel, ev)

    async def _park(self, request: Any) -> None:
        """An order or cancel request waits here until the exchange takes it (see __call__)."""
        params = dict(request.query)
        if request.body_exists:
            params.update(parse_qsl(await request.text()))  # aiohttp keeps the body for the handler
        key = request_key(params.get("newClientOrderId") or params.get("origClientOrderId") or "")
        due = self.sim.clock.now_ms() + self.latency_ms
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._parked, (due, key, self._seq, waiter))
        self._seq += 1
        parked = self._park_waiter
        if parked is not None and not parked.done():
            parked.set_result(None)
        await waiter

    def _take_next(self, limit: float) -> bool:
        """Let the first parked request due by ``limit`` through; False if there is none. It is
        handled 1 ms after the later of its due time and the previous request's time."""
        if not self._parked or self._parked[0][0] > limit:
            return False
        due, _, _, waiter = heapq.heappop(self._parked)
        clock = self.sim.clock
        clock.set_ms(max(due, self._handled_ms) + 1)
        self._handled_ms = clock.now_ms()
        waiter.set_result(None)
        return True

    async def _wait_for_manager(self, manager: Any) -> None:
        """Until one of the manager's tasks ends or one more of its requests parks."""
        parked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._park_waiter = parked
        try:
            await asyncio.wait(
                {*manager.in_flight_tasks(), parked},
                timeout=self.timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            self._park_waiter = None
            if not parked.done():
                parked.cancel()

    async def release_due(self, t: float) -> None:
        """Hand the exchange every parked request due by ``t`` (before the line at ``t`` is
        applied), settling the bot after each."""
        while self._take_next(t):
            await self()

    async def _market_first(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        spins = 0
        while not self.market_delivered() and time.monotonic() < deadline:
            spins += 1
            await (_after_io() if spins < 64 else asyncio.sleep(0.0002))

    def _count(self, _event: dict[str, Any]) -> None:
        self.published_user += 1

    def close(self) -> None:
        self._release()
        self.sim.bus.filter = self._inner_filter
        self.sim.before_response = None
        self.sim.before_order = None
        for _, _, _, waiter in self._parked:  # the run is over: let any straggler through
            if not waiter.done():
                waiter.set_result(None)
        self._parked.clear()
        self._unsubscribe()

    def market_delivered(self) -> bool:
        market = self.bot.market
        books = self.sim.market.books
        last_marks = self.source.last_mark_ms
        for sym in self.source.symbols:
            st = market.get(sym)
            if st is None or st.update_id < books[sym].u:
                return False
            lm = last_marks.get(sym)
            if lm is not None and st.mark_event_ms < lm:
                return False
        return True

    def user_delivered(self) -> bool:
        return sum(s.health.events for s in self.bot.user_streams) >= self.published_user

    def delivered(self) -> bool:
        return self.market_delivered() and not self._held and self.user_delivered()

    async def __call__(self) -> None:
        bot = self.bot
        manager, reconciler, market = bot.manager, bot.reconciler, bot.market
        deadline = time.monotonic() + self.timeout_s
        spins = 0
        while True:
            if not self.market_delivered():
                spins += 1
                # Frames are in flight on local sockets: a few loop turns, then brief sleeps.
                await (_after_io() if spins < 64 else asyncio.sleep(0.0002))
            elif manager.in_flight > len(self._parked):
                # Work in flight that is not a request parked on its way to the exchange.
                await self._wait_for_manager(manager)
            elif self._held:
                self._release()
            elif not self.user_delivered():
                spins += 1
                await (_after_io() if spins < 64 else asyncio.sleep(0.0002))
            elif market.pending():
                await asyncio.sleep(0)
            elif reconciler.queued:
                await reconciler.drain()
            elif self._drain_due:
                self._drain_due = False
                await reconciler.drain()  # also waits for a commit the writer has under way
            elif self._take_next(self.sim.clock.now_ms()):
                # The bot is idle but for requests parked on their way in: the exchange takes
                # the first one due (fixed order whatever order they arrived in).
                pass
            else:
                # Everything is delivered and idle. Work can only start from a frame, an answer
                # or a user event (all counted above) or a task (counted in in_flight): the
                # strategy's handlers and the reconciler's callbacks run synchronously.
                self.waits += 1
                return
            if time.monotonic() > deadline:
                raise ReplayStalled(
                    f"the bot did not settle within {self.timeout_s:g} s at exchange time "
                    f"{self.sim.clock.now_ms()} (in flight {manager.in_flight}, "
                    f"user events {self.published_user} published)"
                )


@dataclass
class ReplayResult:
    code: int
    stats: ReplayStats
    ledger: str
    timer_ticks: int = 0


def default_ledger(cfg: Config, folder: Path) -> str:
    from executor.persistence.db import database_path

    base = database_path(cfg.database.url).parent
    now = dt.datetime.now(dt.UTC)
    name = f"{folder.resolve().name}-{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z.db"
    return f"sqlite+aiosqlite:///{base / 'replay' / name}"


def ledger_url(db: str | None, cfg: Config, folder: Path) -> str:
    if not db:
        return default_ledger(cfg, folder)
    if "://" in db:
        return db
    return f"sqlite+aiosqlite:///{Path(db).resolve()}"


async def run_replay(
    cfg: Config,
    folder: Path,
    *,
    speed: float | None,
    db: str | None = None,
    progress: Any = None,
    ready_timeout_s: float = 15.0,
) -> ReplayResult:
    """Run the bot over the recording in ``folder``; returns when the recording has been played."""
    from executor.run.app import Bot, BotOptions
    from executor.run.shutdown import Shutdown
    from executor.sim.server import SimServer
    from executor.venue.profiles import venue_for

    folder = Path(folder)
    sim, source = build_exchange(cfg, folder, speed)
    url = ledger_url(db, cfg, folder)
    from executor.persistence.db import database_path

    path = database_path(url)
    if path.exists():
        # The replay's exchange numbers orders and trades from 1 and its client ids come from
        # the recording and seed: a second replay's ids would meet the first one's.
        raise ConfigError(f"--db: {path} exists; a replay writes a fresh ledger (choose a new file)")
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = replace(cfg, database=replace(cfg.database, url=url))
    if not cfg.orders.client_id_prefix:
        # A fixed namespace instead of one drawn at random with the ledger: the same recording,
        # config and seed give the same client ids (each replay writes its own fresh ledger).
        cfg = replace(cfg, orders=replace(cfg.orders, client_id_prefix="rpl"))
    server = SimServer(sim, host="127.0.0.1")
    urls = await server.start()
    await sim.start()
    clock = sim.clock
    options = BotOptions(
        clock=lambda: clock.now_ms() / 1000.0,
        clock_ms=clock.now_ms,
        run_salt=int(cfg.sim.seed),
        scheduler=False,
        futures_user_stream=False,
        status_out=_Null(),
        status_tty=False,
        status_interval_s=3600.0,
        ready_timeout_s=ready_timeout_s,
        timer_s=TIMER_OFF_S if speed is None else 1.0,
        # The barrier guarantees delivery; wall-time health checks would only misfire while
        # the bot reacts within one frozen instant.
        stall_after_s=STALL_OFF_S if speed is None else 10.0,
        probe_every_s=STALL_OFF_S if speed is None else 30.0,
        max_requests_per_s=1000 if speed is None else 50,
        inline_ledger=speed is None,
    )
    bot = Bot(cfg, venue_for(cfg, urls), sim.credentials("HMAC"), options)
    shutdown = Shutdown()
    lock: LockStep | None = None
    code = EXIT_OK
    ticks = 0
    # The strategy may act on the primed books while the bot is still starting: its first
    # orders wait here until the replay's own order hook (lock-step or latency) is in place.
    hooks_ready = asyncio.Event()

    async def until_hooks_ready(request: Any) -> None:
        await hooks_ready.wait()
        hook = sim.before_order
        if hook is not None and hook is not until_hooks_ready:
            await hook(request)

    sim.before_order = until_hooks_ready
    try:
        start = asyncio.ensure_future(bot.start())
        # The streams need a first update to be ready: repeat the primed state until they have it.
        while not start.done():
            if not all(
                bot.market.get(s) is not None and bot.market[s].has_book and bot.market[s].has_mark
                for s in source.symbols
            ):
                source.republish()
            await asyncio.wait({start}, timeout=0.05)
        start.result()
        # One millisecond on from the bot's opening balance snapshot (its time is the account's
        # last update): nothing the bot does can share the opening's millisecond, which
        # ``audit verify`` could not order (it takes everything at that time as in the opening).
        clock.set_ms(clock.now_ms() + 1)
        latency_ms = int(cfg.replay.latency_ms)
        sim.before_order = None
        if speed is None:
            lock = LockStep(bot, sim, source, latency_ms=latency_ms)
            hooks_ready.set()
            await lock()
            next_timer = (clock.now_ms() // 1000 + 1) * 1000
            loop = bot.loop

            async def on_time(t: int) -> None:
                nonlocal next_timer, ticks
                await lock.release_due(t)
                clock.set_ms(t)
                if t >= next_timer:
                    next_timer = (t // 1000 + 1) * 1000
                    loop.timer_tick()
                    ticks += 1
                    await lock()

            source.barrier = lock
            source.on_time = on_time
        elif latency_ms > 0:
            pace = speed

            async def late(_request: Any) -> None:
                await asyncio.sleep(latency_ms / 1000.0 / pace)

            sim.before_order = late
        hooks_ready.set()
        source.on_progress = progress
        stats = await source.run()
        if lock is not None:
            await lock.release_due(float("inf"))
            await lock()
        ended = await bot.stop(shutdown, ended="clean", reason="replay finished")
        code = EXIT_OK if ended != "killed" else EXIT_ERROR
    except BaseException as exc:
        if not isinstance(exc, Exception):
            raise
        if isinstance(exc, RecordingError):  # a damaged recording: one line, no traceback
            log.error("replay stopped: %s", exc)
            code = EXIT_BAD_INPUT
        else:
            log.exception("replay stopped on an error")
            code = EXIT_ERROR
        with contextlib.suppress(Exception):
            await bot.stop(shutdown, ended="error", reason=f"{type(exc).__name__}: {exc}"[:500])
        stats = source.stats
    finally:
        if lock is not None:
            lock.close()
        with contextlib.suppress(Exception):
            await sim.stop()
        with contextlib.suppress(Exception):
            await server.stop()
    return ReplayResult(code=code, stats=stats, ledger=url, timer_ticks=ticks)


class _Null:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _progress_printer(out: Any) -> Any:
    tty = bool(getattr(out, "isatty", lambda: False)())
    last = [0.0]

    def show(st: ReplayStats) -> None:
        now = time.monotonic()
        if now - last[0] < (0.5 if tty else 10.0):
            return
        last[0] = now
        span_s = max(st.last_ms - st.first_ms, 0) / 1000.0
        rate = st.lines / st.wall_s if st.wall_s else 0.0
        x = span_s / st.wall_s if st.wall_s else 0.0
        text = (
            f"replay {st.lines} lines ({st.books} books, {st.marks} marks, {st.gaps} gaps), "
            f"{span_s:,.0f} s of market in {st.wall_s:,.1f} s = {x:,.0f}x, {rate:,.0f} lines/s"
        )
        out.write(("\r" + text + "\x1b[K") if tty else text + "\n")
        out.flush()

    return show


def replay_command(cfg: Config, args: argparse.Namespace) -> int:
    """``python run.py --replay DIR [--speed N|max] [--db PATH]``."""
    from executor.run.logs import setup_logging

    folder = Path(args.replay)
    speed = parse_speed(getattr(args, "speed", None))
    if cfg.profile != "sim":
        raise ConfigError("--replay runs on the embedded exchange; use profile sim")
    setup = setup_logging(cfg)
    try:
        result = asyncio.run(
            run_replay(
                cfg, folder, speed=speed, db=getattr(args, "db", None), progress=_progress_printer(sys.stderr)
            )
        )
    finally:
        setup.close()
    st = result.stats
    span_s = max(st.last_ms - st.first_ms, 0) / 1000.0
    x = span_s / st.wall_s if st.wall_s else 0.0
    print(
        f"\nreplayed {st.lines} lines ({st.books} books, {st.marks} marks, {st.trades} trades, "
        f"{st.gaps} gaps) "
        f"= {span_s:,.0f} s of market in {st.wall_s:,.1f} s ({x:,.0f}x, "
        f"{st.lines / st.wall_s if st.wall_s else 0:,.0f} lines/s)"
    )
    path = result.ledger.split("///", 1)[-1]
    print(f"ledger {path}\nread it with: python run.py audit --db {result.ledger}")
    return result.code


async def serve_replay(cfg: Config, folder: Path, speed: float | None) -> int:
    """``python run.py sim --replay DIR``: the exchange alone, playing the recording once a
    market-data client is connected (at ``--speed``, default 1; max plays without waiting for
    anyone, so it is only useful to check a recording). Serves until Ctrl-C."""
    import signal

    from executor.sim.server import SimServer
    from executor.sim.standalone import banner

    sim, source = build_exchange(cfg, folder, speed)
    ports = {
        n: getattr(cfg.sim.ports, n)
        for n in ("spot_rest", "spot_stream", "spot_ws_api", "futures_rest", "futures_stream")
    }
    server = SimServer(sim, host=cfg.sim.host, ports=ports)
    try:
        urls = await server.start()
    except OSError as exc:
        print(f"sim: cannot listen on {cfg.sim.host}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(banner(sim, urls), flush=True)
    print(
        f"replaying {folder} at {'max' if speed is None else f'{speed:g}x'} once a market stream connects",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    source.on_progress = _progress_printer(sys.stderr)

    async def play() -> None:
        while sim.faults.connections.count("market") == 0:
            await asyncio.sleep(0.1)
        for _ in range(10):  # a moment for the client's other streams, with updates to see
            source.republish()
            await asyncio.sleep(0.1)
        st = await source.run()
        print(
            f"\nreplay finished: {st.lines} lines in {st.wall_s:,.1f} s; serving the last state", flush=True
        )

    task = asyncio.create_task(play())
    try:
        await stop.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await server.stop()
    return EXIT_OK
