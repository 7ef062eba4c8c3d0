"""The ledger repository: the only way the bot writes to, and reads from, the database.

Every write is idempotent, so the reconciler can apply the same event twice (a duplicated
stream frame, a gap fill overlapping the stream) without changing the result:

* order events are unique by (symbol, exchange order id, execution id), or by
  ``dedupe_key`` when they have no execution id (see ``models.OrderEvent``);
* fills are unique by (symbol, trade_id), whichever source (stream, order response, gap
  fill) brings them first;
* an order's status and cumulative quantities only move forward (``merge_status``): a
  late NEW after PARTIALLY_FILLED, or an older cumulative quantity, is recorded as an event
  but does not change the order;
* balances only move to a newer exchange time unless a REST snapshot forces them.

Each method is its own short transaction: ``BEGIN IMMEDIATE`` (the write lock is taken
before the first read, so read-modify-write merges are atomic), or for the order path's
single statements (``record_order_intent``, ``mark_order_sent``) one autocommit statement,
which is its own atomic transaction. On SQLite those run on the event loop's own thread
(an inline connection, ``db.create_engine(inline=True)``): a WAL append at NORMAL, 35 µs
warm and ~0.35 ms in a bot between orders, against 1.0–1.4 ms from queueing to the result
through aiosqlite's thread while the loop prepares the held request (the worker gets the GIL
only once the loop idles; bench/RESULTS.md, "#11 / #15 the order path's commit ...").
That connection never checkpoints and never blocks on a lock: if the ledger is busy (another
process, the lease's heartbeat thread), the loop runs on and the statement is tried again
every few milliseconds (``_inline_autocommit``).

Order intents are group-committed: ``record_order_intent`` queues the row at once (it
returns a future, so a decision's intents are queued in the same loop iteration) and one
writer task commits every intent queued by then in one multi-row ``INSERT`` (one
autocommit, so one fsync under ``synchronous=FULL``) before resolving each caller's future.
The two legs of a hedged decision are therefore durable together, after one sync instead of
two in a row; each caller still learns its own outcome (``DuplicateClientOrderId`` for a
taken id) and nothing is resolved before the commit has returned.

Durability of an intent under ``synchronous=FULL`` (SQLite): the intents (and the SENT mark)
commit on a connection set to ``synchronous=NORMAL`` (the inline one above; without the
SQLite shortcut, a second threaded write connection at NORMAL), so they wait for the WAL
append but not for an fsync. A process crash or SIGKILL keeps them (the OS has the pages);
only an OS crash or power cut can drop the last few. What such a loss cannot drop is the
order's client id: every order id comes from a block of this run reserved by
``reserve_id_block``, a commit of the FULL writer, so fsynced (in WAL mode that also makes
every earlier commit durable) before any id of it is used. A run
that did not end ``clean`` leaves its blocks ``open``, and the next start asks the exchange
about each reserved id the ledger does not hold (``reconcile.id_blocks``): found means
adopted, never sent again. A clean end is itself a fsynced commit, so it proves every intent
before it durable; ``finish_run(ended="clean")`` releases the run's blocks in the same
transaction. With ``synchronous=NORMAL`` configured the generic path uses the writer itself.
PostgreSQL keeps ``synchronous_commit=on`` for every commit: there ``off`` would let a
*server* crash lose commits while the bot runs on and later ends clean, which the block
resolution (after unclean ends only) would not catch.
``async with store.batch() as b:`` (or ``apply_batch(items)``) queues many writes and
commits them in one transaction with one executemany per table (group commit): the path
for high event rates, measured at 10-14k executionReports/s (event + fill + order update
each) on this machine. Inside the process writes are serialised by a lock on one
long-lived connection, so SQLite's busy handler only ever waits for other processes.

Order lookup: items name their order by our client id and/or (symbol, exchange order id).
For a CANCELED executionReport pass the original id (``C``) as ``client_order_id`` and the
cancel's id (``c``) as ``event_client_id``.

Money is ``Decimal`` in and out (ints and decimal strings are accepted, floats refused).
Times are UTC epoch ms; when not given, the store's ``clock`` supplies them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from executor.core.orders import Side
from executor.persistence.batch import _ROWS_PER_INSERT as _ROWS_PER_INSERT  # re-exported for tests
from executor.persistence.batch import (
    Batch,
    _balance_rows,
    _Flush,
    balances_t,
    cancels_t,
    events_t,
    fills_t,
    orders_t,
    recon_t,
    refusals_t,
    runs_t,
)
from executor.persistence.db import (
    DEFAULT_BUSY_TIMEOUT_MS,
    create_engine,
    is_retryable,
    is_sqlite_busy,
    lock_rows,
)
from executor.persistence.models import (
    FINAL_STATUSES,
    PENDING_SEND,
    SENT,
    STATUS_RANK,
    IdBlock,
    OperatorAction,
)
from executor.persistence.records import OrderRecord, PositionRow
from executor.persistence.sql import (
    StatementBuilder,
    autocommit_rows,
    dialect_insert,
    driver_autocommit_rows,
    p,
    row_mapping,
    sqlite_driver,
)
from executor.persistence.status_merge import _OrderState as _OrderState  # re-exported for tests
from executor.persistence.status_merge import merge_status
from executor.persistence.store_records import (
    _ZERO,
    SIDES,
    BalanceEventIn,
    BalanceRecord,
    BalanceRow,
    BalancesIn,
    BatchItem,
    BatchResult,
    DuplicateClientOrderId,
    ExternalOrderIn,
    FillIn,
    FillRecord,
    FuturesUpdateIn,
    OrderEventIn,
    StatusChange,
    StatusUpdateIn,
    StoreError,
    _dec,
    order_event_key,
)
from executor.persistence.types import json_dumps, now_ms
from executor.persistence.write_lock import _WriteLock

T = TypeVar("T")

operator_t = OperatorAction.__table__
blocks_t = IdBlock.__table__

# id_blocks.state values (see models.IdBlock).
BLOCK_OPEN, BLOCK_RELEASED, BLOCK_RESOLVED = "open", "released", "resolved"

# IN (open statuses) rather than NOT IN (finals): the former seeks ix_orders_status.
_OPEN_STATUSES = sorted(str(s.value) for s in STATUS_RANK if s not in FINAL_STATUSES)  # type: ignore[attr-defined]


def _record(cls: type[T], row: Any) -> T:
    m = row_mapping(row)
    names = cls._fields if hasattr(cls, "_fields") else [f.name for f in fields(cls)]
    return cls(**{name: m[name] for name in names})  # type: ignore[arg-type]


_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}


def _fill(row: Any) -> FillRecord:
    """A fills row with its side as a ``Side`` (the audit's ``FillRow``)."""
    f = _record(FillRecord, row)
    return f._replace(side=_SIDES.get(f.side))  # type: ignore[arg-type]


def _insert_intents(cols: tuple[str, ...], n_rows: int) -> StatementBuilder:
    """INSERT of ``n_rows`` order intents (row r's column j is ``p(r * len(cols) + j)``),
    nothing on a taken client id, returning (id, client_order_id) of the rows inserted."""

    def build(dialect: str) -> Any:
        width = len(cols)
        return (
            dialect_insert(dialect, orders_t)
            .values([{c: p(r * width + j, orders_t.c[c].type) for j, c in enumerate(cols)}
                     for r in range(n_rows)])
            .on_conflict_do_nothing(index_elements=["client_order_id"])
            .returning(orders_t.c.id, orders_t.c.client_order_id)
        )

    return build


# The order path's inline statement, while another connection holds the write lock: tried
# again after these waits (doubling), see ``Store._inline_autocommit``.
_BUSY_RETRY_FIRST_S = 0.0005
_BUSY_RETRY_MAX_S = 0.004

# Intents committed together at most (one statement): far below SQLite's and PostgreSQL's
# parameter limits at 27 columns.
_INTENTS_PER_COMMIT = 64


def _mark_sent(_dialect: str) -> Any:
    """PENDING_SEND -> SENT: p0 SENT, p1 sent_ms, p2 updated_ms, p3 client id, p4 PENDING_SEND,
    p5 the status source ("local")."""
    return (
        sa.update(orders_t)
        .where(orders_t.c.client_order_id == p(3), orders_t.c.status == p(4))
        .values(status=p(0), status_source=p(5), sent_ms=p(1), updated_ms=p(2))
        .returning(orders_t.c.id)
    )


# ---------------------------------------------------------------- the store


def _in_transaction(conn: Connection, fn: Callable[..., T], *args: Any) -> T:
    """``fn(conn, *args)`` in one transaction on the sync side of ``Store._write``'s connection."""
    with conn.begin():
        return fn(conn, *args)


class Store:
    """The ledger. Create with ``await Store.open(url)`` (which also upgrades the schema)."""

    # A write transaction that PostgreSQL aborted as a deadlock or serialization failure
    # (two writers on the same rows) is run again this many times in all.
    WRITE_ATTEMPTS = 5

    def __init__(
        self, engine: AsyncEngine, *, clock: Callable[[], int] = now_ms, fast: bool = True
    ) -> None:
        self.engine = engine
        self.clock = clock
        # The SQLite shortcut of ``executor.persistence.sql`` (ignored on PostgreSQL); tests
        # turn it off to run the generic path on SQLite too.
        self.fast = fast
        self.run_id: int | None = None
        self._write_lock = _WriteLock()
        self._wconn: AsyncConnection | None = None
        # SQLite under synchronous=FULL: the order path's commits go through a second
        # connection at synchronous=NORMAL (see the module docstring); None: the writer.
        self._oconn: AsyncConnection | None = None
        # SQLite with the shortcut: the order path's statements run first on a connection of
        # an inline engine, on the loop's own thread (module docstring); opened when first used.
        self._iengine: AsyncEngine | None = None
        self._iconn: AsyncConnection | None = None
        self._iaio: Any = None  # its aiosqlite connection, kept (reaching it is a greenlet hop)
        self.inline_busy = 0  # order-path statements tried again: another connection held the lock
        self._sync_mode: str | None = None  # the writer's configured synchronous mode (SQLite)
        # Order intents waiting for the group commit, and the task committing them.
        self._intents: list[tuple[dict[str, Any], asyncio.Future[OrderRecord]]] = []
        self._intent_writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Callable[[], int] = now_ms,
        synchronous: str | None = None,
        upgrade: bool = True,
        fast: bool = True,
        inline: bool = False,
    ) -> Store:
        """Open the ledger at ``url``; by default first migrate it to the newest schema
        (raising ``migrate.SchemaTooNewError`` for a database from a newer version).
        ``inline``: SQLite without aiosqlite's thread (``db.create_engine``; max-speed replays)."""
        if upgrade:
            from executor.persistence.migrate import ensure_schema

            await ensure_schema(url)
        return cls(create_engine(url, synchronous=synchronous, inline=inline), clock=clock, fast=fast)

    async def close(self) -> None:
        async with self._write_lock.hold():
            for conn in (self._iconn, self._oconn, self._wconn):
                if conn is not None:
                    await conn.close()
            self._wconn = self._oconn = self._iconn = self._iaio = None
        if self._iengine is not None:
            await self._iengine.dispose()
            self._iengine = None
        await self.engine.dispose()

    # -- transaction plumbing
    #
    # Writes share one long-lived connection (guarded by the write lock): no pool checkout
    # and reset per write. Every statement through SQLAlchemy's aiosqlite adapter costs a
    # few thread hops (cursor, execute, fetch, close), so the latency-critical single
    # statements of the order path go straight to the aiosqlite connection in autocommit
    # mode (``_autocommit``): one hop, and a single statement is its own atomic, durable
    # transaction.

    async def _writer(self) -> AsyncConnection:
        if self._wconn is None or self._wconn.closed:
            conn = await self.engine.connect()
            await conn.execution_options(sqlite_write=True)
            self._wconn = conn
            if conn.dialect.name == "sqlite":
                rows = await _pragma(conn, "PRAGMA synchronous")
                self._sync_mode = {1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(int(rows[0][0]), "NORMAL")
        return self._wconn

    async def _order_writer(self) -> AsyncConnection:
        """The connection of the order path's autocommits (under the write lock): the writer,
        or on SQLite configured FULL a second one at synchronous=NORMAL (module docstring)."""
        conn = await self._writer()
        if self._sync_mode not in ("FULL", "EXTRA"):
            return conn
        if self._oconn is None or self._oconn.closed:
            oconn = await self.engine.connect()
            await oconn.execution_options(sqlite_write=True)
            await _pragma(oconn, "PRAGMA synchronous=NORMAL")
            self._oconn = oconn
        return self._oconn

    async def _inline_order_conn(self) -> Any:
        """The order path's connection on the loop's thread (SQLite with the shortcut only):
        synchronous=NORMAL, no checkpoints (the writer's thread runs them), no busy wait.
        Its aiosqlite connection, which the statements run on (``driver_autocommit_rows``)."""
        iconn = self._iconn
        if self._iaio is not None and iconn is not None and not iconn.closed:
            return self._iaio
        if not self.fast or self.engine.dialect.name != "sqlite":
            return None
        if self._iconn is None or self._iconn.closed:
            if self._iengine is None:
                self._iengine = create_engine(self.engine.url, synchronous="NORMAL", inline=True,
                                              busy_timeout_ms=0)
            conn = await self._iengine.connect()
            await _pragma(conn, "PRAGMA wal_autocheckpoint=0")
            self._iconn = conn
        self._iaio = await sqlite_driver(self._iconn)
        return self._iaio

    async def _inline_autocommit(self, aio: Any, key: tuple[Any, ...], build: StatementBuilder,
                                 params: Sequence[Any]) -> list[Sequence[Any]]:
        """``autocommit_rows`` on the inline connection. If another connection holds the write
        lock (an audit checkpoint or a ``run.py db`` command in another process, the lease's
        heartbeat thread), nothing was written: the loop runs on and the statement is tried
        again every few milliseconds, for as long as the threaded connections' busy timeout
        (SQLite's own busy handler would block the loop, and sleeps in growing steps of up to
        100 ms however soon the lock is free)."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        delay = _BUSY_RETRY_FIRST_S
        while True:
            try:
                return await driver_autocommit_rows(aio, key, build, params)
            except Exception as exc:
                if not is_sqlite_busy(exc):
                    raise
                self.inline_busy += 1
                now = loop.time()
                if deadline is None:
                    deadline = now + DEFAULT_BUSY_TIMEOUT_MS / 1000
                elif now >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BUSY_RETRY_MAX_S)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._write_lock.hold():
            conn = await self._writer()
            for attempt in range(1, self.WRITE_ATTEMPTS + 1):
                try:
                    # Begin, run and commit in one run_sync: one greenlet hand-off per
                    # transaction instead of three (begin, body, commit each took one); the
                    # same BEGIN (IMMEDIATE), statements and COMMIT, rolled back on an error.
                    return await conn.run_sync(_in_transaction, fn, *args)
                except sa.exc.DBAPIError as exc:
                    # Only PostgreSQL raises these (SQLite's writer holds the database lock).
                    if attempt == self.WRITE_ATTEMPTS or not is_retryable(exc):
                        raise
            raise AssertionError("unreachable")

    async def _autocommit(
        self, key: tuple[Any, ...], build: StatementBuilder, params: Sequence[Any]
    ) -> list[Sequence[Any]]:
        """One statement as its own transaction (on SQLite with the shortcut on the loop's
        thread, see the module docstring; otherwise one hop to the writer's thread).

        Only the order path uses this, and it jumps the queue of waiting batches (see
        ``_WriteLock``): the order is on hold until its record is committed."""
        # acquire/release rather than ``hold()``: no context-manager generator on the tick path.
        lock = self._write_lock
        await lock.acquire(urgent=True)
        try:
            inline = await self._inline_order_conn()
            if inline is not None:
                return await self._inline_autocommit(inline, key, build, params)
            conn = await self._order_writer()
            if conn.in_transaction():  # never expected; keep the invariant rather than corrupt it
                raise StoreError("write connection unexpectedly inside a transaction")
            return await autocommit_rows(conn, key, build, params, fast=self.fast)
        finally:
            lock.release()

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        async with self.engine.connect() as conn:
            return await conn.run_sync(fn, *args)

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[Batch]:
        """Queue writes, commit them in one transaction on exit (nothing on an exception)."""
        b = Batch()
        yield b
        if b.items:
            b.result = await self.apply_batch(b.items)

    async def apply_batch(self, items: Iterable[BatchItem]) -> BatchResult:
        """Apply many writes in one transaction (group commit); idempotent like each write."""
        batch = list(items)
        now, run_id = self.clock(), self.run_id
        return await self._write(lambda conn: _Flush(conn, batch, now, run_id, fast=self.fast).run())

    # -- runs

    async def start_run(
        self, version: str, profile: str, config_hash: str, *, at_ms: int | None = None
    ) -> int:
        """Record a bot start; runs left open by a crash are marked 'abandoned'."""
        at = at_ms if at_ms is not None else self.clock()

        def fn(conn: Connection) -> int:
            conn.execute(
                sa.update(runs_t)
                .where(runs_t.c.ended.is_(None))
                .values(ended="abandoned", end_reason="the process stopped without finishing this run")
            )
            return conn.execute(
                sa.insert(runs_t)
                .values(
                    version=version,
                    profile=profile,
                    config_hash=config_hash,
                    started_ms=at,
                )
                .returning(runs_t.c.id)
            ).scalar_one()

        self.run_id = await self._write(fn)
        return self.run_id

    async def finish_run(
        self,
        run_id: int | None = None,
        *,
        ended: str = "clean",
        reason: str | None = None,
        at_ms: int | None = None,
        used_to: int | None = None,
    ) -> None:
        """Close the run row. ``clean`` also releases the run's open id blocks (``used_to``:
        the highest order seq the run handed out, kept on them for the record)."""
        rid = run_id if run_id is not None else self.run_id
        if rid is None:
            raise StoreError("finish_run: no run was started")
        at = at_ms if at_ms is not None else self.clock()

        def fn(conn: Connection) -> None:
            conn.execute(
                sa.update(runs_t)
                .where(runs_t.c.id == rid)
                .values(stopped_ms=at, ended=ended, end_reason=reason)
            )
            if ended == "clean":
                # Every intent of this run committed before this (fsynced) commit: the ids
                # of its blocks that were not used never left. Nothing to ask the exchange.
                conn.execute(
                    sa.update(blocks_t)
                    .where(blocks_t.c.run_id == rid, blocks_t.c.state == BLOCK_OPEN)
                    .values(state=BLOCK_RELEASED, closed_ms=at,
                            used_to=sa.case((blocks_t.c.last_seq < used_to, blocks_t.c.last_seq),
                                            else_=used_to) if used_to is not None else None)
                )

        # Fsynced under FULL: a clean end then vouches for every commit before it.
        await self._write(fn)

    # -- reserved client-id blocks (models.IdBlock)

    async def reserve_id_block(self, run_tag: str, first: int, size: int, *, kind: str = "o",
                               at_ms: int | None = None) -> tuple[int, int]:
        """Reserve order seqs ``first..first+size-1`` of ``run_tag`` for this run by a
        commit of the writer (fsynced under ``synchronous=FULL``, like every commit but the
        order path's; under NORMAL nothing is, as before); returns (first, last). No id of
        it may be used before this returns. ``first`` must lie after every block the run
        tag has (else ``StoreError``)."""
        if size < 1 or first < 1:
            raise StoreError(f"id block: first {first} and size {size} must be positive")
        at = at_ms if at_ms is not None else self.clock()
        last = first + size - 1
        run_id = self.run_id

        def fn(conn: Connection) -> tuple[int, int]:
            top = conn.execute(
                sa.select(sa.func.max(blocks_t.c.last_seq))
                .where(blocks_t.c.run_tag == run_tag, blocks_t.c.kind == kind)
            ).scalar()
            if top is not None and first <= int(top):
                raise StoreError(f"id block {run_tag} {first}..{last} overlaps a reserved one (to {top})")
            conn.execute(sa.insert(blocks_t).values(
                run_id=run_id, run_tag=run_tag, kind=kind, first_seq=first, last_seq=last,
                reserved_ms=at, state=BLOCK_OPEN, closed_ms=None, used_to=None, adopted=None))
            return first, last

        return await self._write(fn)

    async def id_blocks(self, *, state: str | None = None, run_id: int | None = None) -> list[dict[str, Any]]:
        """Block rows (optionally of one state / run), oldest first."""

        def fn(conn: Connection) -> list[dict[str, Any]]:
            q = sa.select(blocks_t).order_by(blocks_t.c.id)
            if state is not None:
                q = q.where(blocks_t.c.state == state)
            if run_id is not None:
                q = q.where(blocks_t.c.run_id == run_id)
            return [dict(m) for m in conn.execute(q).mappings()]

        return await self._read(fn)

    async def recorded_client_ids(self, client_ids: Sequence[str]) -> set[str]:
        """Which of ``client_ids`` the ledger holds an order row for."""
        wanted = list(dict.fromkeys(client_ids))

        def fn(conn: Connection) -> set[str]:
            out: set[str] = set()
            for i in range(0, len(wanted), 500):
                q = sa.select(orders_t.c.client_order_id).where(
                    orders_t.c.client_order_id.in_(wanted[i:i + 500]))
                out.update(r[0] for r in conn.execute(q))
            return out

        return await self._read(fn)

    async def close_id_blocks(self, block_ids: Sequence[int], *, state: str = BLOCK_RESOLVED,
                              adopted: int | None = None, at_ms: int | None = None) -> None:
        """Mark blocks resolved (the exchange was asked) or released; fsynced."""
        at = at_ms if at_ms is not None else self.clock()
        ids = list(block_ids)

        def fn(conn: Connection) -> None:
            conn.execute(sa.update(blocks_t).where(blocks_t.c.id.in_(ids))
                         .values(state=state, closed_ms=at, adopted=adopted))

        if ids:
            await self._write(fn)

    async def get_run(self, run_id: int) -> dict[str, Any] | None:
        def fn(conn: Connection) -> dict[str, Any] | None:
            row = conn.execute(sa.select(runs_t).where(runs_t.c.id == run_id)).first()
            return dict(row_mapping(row)) if row else None

        return await self._read(fn)

    # -- orders

    def record_order_intent(
        self,
        client_order_id: str,
        symbol: str,
        side: str,
        type: str,
        *,
        quantity: Any = None,
        price: Any = None,
        quote_order_qty: Any = None,
        time_in_force: str | None = None,
        decision_bid: Any = None,
        decision_ask: Any = None,
        decision_mark: Any = None,
        decision_ms: int | None = None,
        reason: str | None = None,
        created_ms: int | None = None,
    ) -> asyncio.Future[OrderRecord]:
        """Record an order BEFORE it is sent (status PENDING_SEND); await the result.

        Queued at once and committed with the other intents queued in the same loop
        iteration (see the module docstring); the future resolves only once the commit has
        returned (durable under ``synchronous=FULL``). It raises ``DuplicateClientOrderId``
        if the id is already in the ledger: the caller must never send it then."""
        fut: asyncio.Future[OrderRecord] = asyncio.get_running_loop().create_future()
        if side not in SIDES:
            fut.set_exception(StoreError(f"order {client_order_id}: side must be BUY or SELL, got {side!r}"))
            return fut
        if not client_order_id:
            fut.set_exception(StoreError("an order needs a client order id"))
            return fut
        at = created_ms if created_ms is not None else self.clock()
        values = dict(
            client_order_id=client_order_id,
            exchange_order_id=None,
            run_id=self.run_id,
            symbol=symbol,
            side=side,
            type=type,
            time_in_force=time_in_force,
            price=_dec(price),
            quantity=_dec(quantity),
            quote_order_qty=_dec(quote_order_qty),
            status=PENDING_SEND,
            status_source="local",
            executed_qty=_ZERO,
            cum_quote_qty=_ZERO,
            created_ms=at,
            sent_ms=None,
            acked_ms=None,
            updated_ms=at,
            exchange_update_ms=None,
            decision_bid=_dec(decision_bid),
            decision_ask=_dec(decision_ask),
            decision_mark=_dec(decision_mark),
            decision_ms=decision_ms,
            reason=reason,
            external=False,
            resolved_from_unknown=False,
            reject_reason=None,
        )
        self._intents.append((values, fut))
        if self._intent_writer is None:
            self._intent_writer = asyncio.get_running_loop().create_task(self._write_intents())
        return fut

    async def _write_intents(self) -> None:
        """Commit the queued intents, a group per autocommit, until none is left."""
        try:
            while self._intents:
                group = self._intents[:_INTENTS_PER_COMMIT]
                del self._intents[:_INTENTS_PER_COMMIT]
                await self._commit_intents(group)
        finally:
            self._intent_writer = None
            if self._intents:  # cancelled (store closing, loop ending): nobody may wait forever
                for _, fut in self._intents:
                    fut.cancel()
                self._intents.clear()

    async def _commit_intents(self, group: list[tuple[dict[str, Any], asyncio.Future[OrderRecord]]]) -> None:
        cols = tuple(group[0][0])
        params = [v[c] for v, _ in group for c in cols]
        try:
            n = len(group)
            rows = await self._autocommit(("intents", cols, n), _insert_intents(cols, n), params)
        except BaseException as exc:
            # Nothing of the group is known to be recorded: none of these orders may be sent.
            for _, fut in group:
                if not fut.done():
                    if isinstance(exc, asyncio.CancelledError):
                        fut.cancel()
                    else:
                        fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        new_ids = {cid: new_id for new_id, cid in rows}
        for values, fut in group:
            new_id = new_ids.pop(values["client_order_id"], None)  # a repeat within the group: taken
            if fut.done():
                continue  # its caller was cancelled; the row stays (recovery queries it)
            if new_id is None:
                fut.set_exception(DuplicateClientOrderId(
                    f"client order id {values['client_order_id']!r} is already in the ledger; "
                    "not recording (and it must not be sent) again"))
            else:
                fut.set_result(OrderRecord(id=new_id, **values))  # type: ignore[arg-type]

    async def mark_order_sent(self, client_order_id: str, *, at_ms: int | None = None) -> bool:
        """PENDING_SEND -> SENT with the send time; False if the order had moved on already."""
        at = at_ms if at_ms is not None else self.clock()

        params = [SENT, at, at, client_order_id, PENDING_SEND, "local"]
        done = await self._autocommit(("sent",), _mark_sent, params)
        if done:
            return True

        def fn(conn: Connection) -> bool:
            found = conn.execute(
                lock_rows(
                    sa.select(orders_t.c.id, orders_t.c.sent_ms).where(
                        orders_t.c.client_order_id == client_order_id
                    )
                )
            ).first()
            if found is None:
                raise StoreError(f"mark_order_sent: no order {client_order_id!r} in the ledger")
            if found.sent_ms is None:
                # The answer (or an UNKNOWN) was recorded first; still keep when it left.
                conn.execute(sa.update(orders_t).where(orders_t.c.id == found.id).values(sent_ms=at))
            return False

        return await self._write(fn)

    async def update_order_status(
        self,
        client_order_id: str | None,
        status: str,
        *,
        source: str,
        symbol: str | None = None,
        exchange_order_id: int | None = None,
        executed_qty: Any = None,
        cum_quote_qty: Any = None,
        event_ms: int | None = None,
        reject_reason: str | None = None,
    ) -> StatusChange:
        """Move an order forward (never back: see ``merge_status``). ``source`` says who saw
        it: stream, order_response, rest_query, gap_fill, local. The order is found by
        client id, or by (symbol, exchange_order_id)."""
        res = await self.apply_batch(
            [
                StatusUpdateIn(
                    client_order_id,
                    status,
                    source,
                    symbol=symbol,
                    exchange_order_id=exchange_order_id,
                    executed_qty=_dec(executed_qty),
                    cum_quote_qty=_dec(cum_quote_qty),
                    event_ms=event_ms,
                    reject_reason=reject_reason,
                )
            ]
        )
        return res.status_changes[0]

    async def record_external_order(self, **kw: Any) -> OrderRecord:
        """Record (once) an order we did not place; returns the stored row. See ``ExternalOrderIn``."""
        ext = ExternalOrderIn(**kw)
        await self.apply_batch([ext])
        rec = await self.get_order_by_exchange_id(ext.symbol, ext.exchange_order_id)
        assert rec is not None
        return rec

    async def get_order_by_client_id(self, client_order_id: str) -> OrderRecord | None:
        def fn(conn: Connection) -> OrderRecord | None:
            row = conn.execute(
                sa.select(orders_t).where(orders_t.c.client_order_id == client_order_id)
            ).first()
            return _record(OrderRecord, row) if row else None

        return await self._read(fn)

    async def get_order_by_exchange_id(self, symbol: str, exchange_order_id: int) -> OrderRecord | None:
        def fn(conn: Connection) -> OrderRecord | None:
            row = conn.execute(
                sa.select(orders_t).where(
                    orders_t.c.symbol == symbol, orders_t.c.exchange_order_id == exchange_order_id
                )
            ).first()
            return _record(OrderRecord, row) if row else None

        return await self._read(fn)

    async def orders_not_final(
        self, symbol: str | None = None, *, include_external: bool = True
    ) -> list[OrderRecord]:
        """Orders whose outcome is still open (PENDING_SEND, SENT, UNKNOWN, NEW, ...)."""

        def fn(conn: Connection) -> list[OrderRecord]:
            q = sa.select(orders_t).where(orders_t.c.status.in_(_OPEN_STATUSES))
            if symbol is not None:
                q = q.where(orders_t.c.symbol == symbol)
            if not include_external:
                q = q.where(orders_t.c.external.is_(False))
            return [_record(OrderRecord, r) for r in conn.execute(q.order_by(orders_t.c.id))]

        return await self._read(fn)

    async def list_orders(
        self, *, run_id: int | None = None, symbol: str | None = None, status: str | None = None
    ) -> list[OrderRecord]:
        def fn(conn: Connection) -> list[OrderRecord]:
            q = sa.select(orders_t)
            if run_id is not None:
                q = q.where(orders_t.c.run_id == run_id)
            if symbol is not None:
                q = q.where(orders_t.c.symbol == symbol)
            if status is not None:
                q = q.where(orders_t.c.status == status)
            return [_record(OrderRecord, r) for r in conn.execute(q.order_by(orders_t.c.id))]

        return await self._read(fn)

    async def summary(self, *, run_id: int | None = None) -> dict[str, Any]:
        """Counts for the status display: orders by status, fills, last fill time."""

        def fn(conn: Connection) -> dict[str, Any]:
            oq = sa.select(orders_t.c.status, sa.func.count()).group_by(orders_t.c.status)
            fq = sa.select(sa.func.count(), sa.func.max(fills_t.c.trade_ms))
            if run_id is not None:
                oq = oq.where(orders_t.c.run_id == run_id)
                fq = fq.where(fills_t.c.run_id == run_id)
            by_status = {status: n for status, n in conn.execute(oq)}
            fills, last_ms = conn.execute(fq).one()
            open_orders = sum(n for st_, n in by_status.items() if st_ not in FINAL_STATUSES)
            return {"orders": by_status, "open_orders": open_orders, "fills": fills, "last_fill_ms": last_ms}

        return await self._read(fn)

    async def recent_fills(self, limit: int = 10) -> list[FillRecord]:
        def fn(conn: Connection) -> list[FillRecord]:
            q = sa.select(fills_t).order_by(fills_t.c.id.desc()).limit(limit)
            return [_fill(r) for r in conn.execute(q)]

        return await self._read(fn)

    # -- order events and fills

    async def add_order_event(self, symbol: str, status: str, source: str, payload: Any, **kw: Any) -> bool:
        """Store one order observation; False if it was already stored (see ``OrderEventIn``)."""
        res = await self.apply_batch([OrderEventIn(symbol, status, source, payload, **kw)])
        return res.events_added == 1

    async def order_events(self, client_order_id: str) -> list[dict[str, Any]]:
        def fn(conn: Connection) -> list[dict[str, Any]]:
            q = (
                sa.select(events_t)
                .where(events_t.c.client_order_id == client_order_id)
                .order_by(events_t.c.id)
            )
            return [dict(m) for m in conn.execute(q).mappings()]

        return await self._read(fn)

    async def add_fill(
        self, symbol: str, trade_id: int, price: Any, qty: Any, source: str, **kw: Any
    ) -> bool:
        """Store a fill once per (symbol, trade_id); True if it was new. See ``FillIn``."""
        res = await self.apply_batch([FillIn(symbol, trade_id, price, qty, source, **kw)])
        return bool(res.fills_added)

    async def last_trade_id(self, symbol: str, *, received_before_ms: int | None = None) -> int | None:
        """The highest stored trade id of ``symbol``; gap fill pages myTrades from it.

        With ``received_before_ms`` (when the stream gap began) fills that arrived after the
        gap are ignored, so a fill seen after a reconnect cannot hide an older one missed
        during the gap."""

        def fn(conn: Connection) -> int | None:
            q = sa.select(sa.func.max(fills_t.c.trade_id)).where(fills_t.c.symbol == symbol)
            if received_before_ms is not None:
                q = q.where(fills_t.c.received_ms < received_before_ms)
            return conn.execute(q).scalar()

        return await self._read(fn)

    async def fills_for_order(self, client_order_id: str) -> list[FillRecord]:
        def fn(conn: Connection) -> list[FillRecord]:
            oid = conn.execute(
                sa.select(orders_t.c.id).where(orders_t.c.client_order_id == client_order_id)
            ).scalar()
            # Linked fills by the order's row; unlinked ones (order unknown when stored) by id.
            cond = sa.and_(fills_t.c.order_id.is_(None), fills_t.c.client_order_id == client_order_id)
            if oid is not None:
                cond = sa.or_(cond, fills_t.c.order_id == oid)
            q = sa.select(fills_t).where(cond).order_by(fills_t.c.trade_id)
            return [_fill(r) for r in conn.execute(q)]

        return await self._read(fn)

    async def own_fills(self, *, after_id: int | None = None, symbol_prefix: str | None = None,
                        exchange_closes: Sequence[str] = ()) -> list[PositionRow]:
        """Every fill of the bot's own orders (orders the ledger does not mark external),
        for ``executor.core.positions``; with ``after_id`` only rows stored after that fills
        row id. A fill stored before its order row was linked is matched by its client id.
        ``symbol_prefix`` keeps one venue's symbols (``UM:``); ``exchange_closes`` are client
        id prefixes of the exchange's own closing orders (liquidation, ADL) whose fills move
        the bot's perpetual position too (``core.positions``), although they are external."""

        def fn(conn: Connection) -> list[PositionRow]:
            cols = (fills_t.c.symbol, fills_t.c.trade_id, fills_t.c.side, fills_t.c.qty,
                    fills_t.c.commission, fills_t.c.commission_asset, fills_t.c.id,
                    orders_t.c.client_order_id, fills_t.c.price)
            newer = fills_t.c.id > after_id if after_id is not None else sa.true()
            if symbol_prefix is not None:
                newer = sa.and_(newer, fills_t.c.symbol.startswith(symbol_prefix, autoescape=True))
            counted = orders_t.c.external.is_(False)
            if exchange_closes:
                counted = sa.or_(counted, *(orders_t.c.client_order_id.startswith(p, autoescape=True)
                                            for p in exchange_closes))
            linked = (sa.select(*cols).join(orders_t, orders_t.c.id == fills_t.c.order_id)
                      .where(counted, newer))
            unlinked = (sa.select(*cols)
                        .join(orders_t, orders_t.c.client_order_id == fills_t.c.client_order_id)
                        .where(fills_t.c.order_id.is_(None), counted, newer))
            return [PositionRow(r[0], r[1], _SIDES.get(r[2]), r[3], r[4], r[5], r[6], r[7], r[8])
                    for r in conn.execute(sa.union_all(linked, unlinked))]

        return await self._read(fn)

    async def fills(
        self, *, symbol: str | None = None, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[FillRecord]:
        def fn(conn: Connection) -> list[FillRecord]:
            q = sa.select(fills_t)
            if symbol is not None:
                q = q.where(fills_t.c.symbol == symbol)
            if since_ms is not None:
                q = q.where(fills_t.c.trade_ms >= since_ms)
            if until_ms is not None:
                q = q.where(fills_t.c.trade_ms < until_ms)
            return [
                _fill(r) for r in conn.execute(q.order_by(fills_t.c.trade_ms, fills_t.c.id))
            ]

        return await self._read(fn)

    # -- cancels

    async def record_cancel(
        self, cancel_client_id: str, orig_client_order_id: str, symbol: str, *, at_ms: int | None = None
    ) -> bool:
        """Record a cancel request before sending it; False if this cancel id exists."""
        at = at_ms if at_ms is not None else self.clock()

        def fn(conn: Connection) -> bool:
            oid = conn.execute(
                sa.select(orders_t.c.id).where(orders_t.c.client_order_id == orig_client_order_id)
            ).scalar()
            res = conn.execute(
                dialect_insert(conn.dialect, cancels_t)
                .on_conflict_do_nothing()
                .values(
                    cancel_client_id=cancel_client_id,
                    orig_client_order_id=orig_client_order_id,
                    order_id=oid,
                    run_id=self.run_id,
                    symbol=symbol,
                    requested_ms=at,
                    outcome="PENDING",
                )
            )
            return bool(res.rowcount)

        return await self._write(fn)

    async def resolve_cancel(
        self, cancel_client_id: str, outcome: str, *, detail: str | None = None, at_ms: int | None = None
    ) -> None:
        at = at_ms if at_ms is not None else self.clock()

        def fn(conn: Connection) -> None:
            conn.execute(
                sa.update(cancels_t)
                .where(cancels_t.c.cancel_client_id == cancel_client_id)
                .values(outcome=outcome, outcome_ms=at, detail=detail)
            )

        await self._write(fn)

    async def original_client_id(self, cancel_client_id: str) -> str | None:
        """The order a cancel id targeted (executionReport CANCELED carries the cancel id in c)."""

        def fn(conn: Connection) -> str | None:
            return conn.execute(
                sa.select(cancels_t.c.orig_client_order_id).where(
                    cancels_t.c.cancel_client_id == cancel_client_id
                )
            ).scalar()

        return await self._read(fn)

    # -- balances and account updates

    async def set_balances(
        self,
        rows: Iterable[BalanceRow | tuple[str, Any, Any]],
        source: str,
        event_ref: str | None = None,
        *,
        event_ms: int | None = None,
        kind: str | None = None,
        payload: Any = None,
        force: bool = False,
    ) -> list[str]:
        """Set the latest free/locked per asset and log each row as a balance event.

        A row older (by ``event_ms``) than the stored one is logged but does not overwrite
        it, unless ``force`` (a REST snapshot, where the exchange's value wins). ``event_ref``
        identifies the event (e.g. ``"E=...,u=..."``) and makes re-applying it a no-op.
        Returns the assets whose latest balance was written."""
        res = await self.apply_batch(
            [
                BalancesIn(
                    _balance_rows(rows),
                    source,
                    event_ref,
                    event_ms=event_ms,
                    kind=kind,
                    payload=payload,
                    force=force,
                )
            ]
        )
        return res.balances_changed

    async def add_balance_event(self, kind: str, asset: str, source: str, **kw: Any) -> bool:
        """Log a balance event (e.g. balanceUpdate with ``delta``); False for a duplicate."""
        res = await self.apply_batch([BalanceEventIn(kind, asset, source, **kw)])
        return res.balance_events_added == 1

    async def get_balances(self) -> dict[str, BalanceRecord]:
        def fn(conn: Connection) -> dict[str, BalanceRecord]:
            return {r.asset: _record(BalanceRecord, r) for r in conn.execute(sa.select(balances_t))}

        return await self._read(fn)

    async def add_futures_update(self, payload: Any, **kw: Any) -> bool:
        """Store one ACCOUNT_UPDATE (balances and positions as given); False for a duplicate."""
        res = await self.apply_batch([FuturesUpdateIn(payload, **kw)])
        return res.futures_updates_added == 1

    # -- reconciliation and risk

    async def start_reconciliation(self, reason: str, *, at_ms: int | None = None) -> int:
        at = at_ms if at_ms is not None else self.clock()

        def fn(conn: Connection) -> int:
            return conn.execute(
                sa.insert(recon_t)
                .values(
                    run_id=self.run_id,
                    reason=reason,
                    started_ms=at,
                    outcome="running",
                    found=0,
                    fixed=0,
                    counts={},
                    discrepancies=[],
                )
                .returning(recon_t.c.id)
            ).scalar_one()

        return await self._write(fn)

    async def finish_reconciliation(
        self,
        recon_id: int,
        *,
        found: int = 0,
        fixed: int = 0,
        counts: dict[str, Any] | None = None,
        discrepancies: list[Any] | None = None,
        error: str | None = None,
        at_ms: int | None = None,
    ) -> None:
        at = at_ms if at_ms is not None else self.clock()

        def fn(conn: Connection) -> None:
            started = conn.execute(sa.select(recon_t.c.started_ms).where(recon_t.c.id == recon_id)).scalar()
            if started is None:
                raise StoreError(f"finish_reconciliation: no reconciliation run {recon_id}")
            conn.execute(
                sa.update(recon_t)
                .where(recon_t.c.id == recon_id)
                .values(
                    finished_ms=at,
                    duration_ms=at - started,
                    outcome="error" if error else "ok",
                    found=found,
                    fixed=fixed,
                    counts=counts or {},
                    discrepancies=discrepancies or [],
                    error=error,
                )
            )

        await self._write(fn)

    async def last_complete_reconciliation_ms(self, reason_prefix: str = "", *,
                                              having_count: str | None = None,
                                              look_back: int = 500) -> int | None:
        """When the newest reconciliation run that ended without an error started
        (``started_ms``, the store's clock), among those whose reason starts with
        ``reason_prefix`` and, with ``having_count``, whose counts carry that key (looked for
        in the newest ``look_back`` such runs); None if there is none."""

        def fn(conn: Connection) -> int | None:
            where = (recon_t.c.reason.startswith(reason_prefix, autoescape=True), recon_t.c.outcome == "ok")
            if having_count is None:
                return conn.execute(sa.select(sa.func.max(recon_t.c.started_ms)).where(*where)).scalar()
            rows = conn.execute(sa.select(recon_t.c.started_ms, recon_t.c.counts).where(*where)
                                .order_by(recon_t.c.id.desc()).limit(look_back))
            return next((int(r.started_ms) for r in rows if having_count in (r.counts or {})), None)

        return await self._read(fn)

    async def reconciliation_runs(self, *, run_id: int | None = None) -> list[dict[str, Any]]:
        def fn(conn: Connection) -> list[dict[str, Any]]:
            q = sa.select(recon_t)
            if run_id is not None:
                q = q.where(recon_t.c.run_id == run_id)
            return [dict(m) for m in conn.execute(q.order_by(recon_t.c.id)).mappings()]

        return await self._read(fn)

    async def add_risk_refusal(
        self,
        symbol: str,
        intent: str,
        reason: str,
        *,
        rule: str | None = None,
        side: str | None = None,
        price: Any = None,
        quantity: Any = None,
        details: Any = None,
        at_ms: int | None = None,
    ) -> int:
        at = at_ms if at_ms is not None else self.clock()

        def fn(conn: Connection) -> int:
            return conn.execute(
                sa.insert(refusals_t)
                .values(
                    run_id=self.run_id,
                    at_ms=at,
                    symbol=symbol,
                    intent=intent,
                    side=side,
                    price=_dec(price),
                    quantity=_dec(quantity),
                    rule=rule,
                    reason=reason,
                    details=details,
                )
                .returning(refusals_t.c.id)
            ).scalar_one()

        return await self._write(fn)


    # -- operator actions and the live views (executor.oversight.watch, executor.web)

    async def add_operator_action(
        self, action: str, source: str, detail: str | None = None, *, at_ms: int | None = None
    ) -> int:
        """Record an operator's action (pause, resume, cancel-all, kill) on this run."""
        at = at_ms if at_ms is not None else self.clock()

        def fn(conn: Connection) -> int:
            return conn.execute(
                sa.insert(operator_t)
                .values(run_id=self.run_id, at_ms=at, action=action, source=source, detail=detail)
                .returning(operator_t.c.id)
            ).scalar_one()

        return await self._write(fn)

    async def operator_actions(self, *, run_id: int | None = None) -> list[dict[str, Any]]:
        def fn(conn: Connection) -> list[dict[str, Any]]:
            q = sa.select(operator_t)
            if run_id is not None:
                q = q.where(operator_t.c.run_id == run_id)
            return [dict(m) for m in conn.execute(q.order_by(operator_t.c.id)).mappings()]

        return await self._read(fn)

    async def fills_after(self, after_id: int = 0, *, limit: int = 5000) -> list[FillRecord]:
        """Fills stored after row id ``after_id``, in id order (a live reader pages with this)."""

        def fn(conn: Connection) -> list[FillRecord]:
            q = sa.select(fills_t).where(fills_t.c.id > after_id).order_by(fills_t.c.id).limit(limit)
            return [_fill(r) for r in conn.execute(q)]

        return await self._read(fn)

    async def fills_in_time_order(
        self, symbol: str, after: tuple[int, int] | None = None, *, limit: int = 5000
    ) -> list[FillRecord]:
        """One page of ``symbol``'s fills in (trade time, trade id) order, after the key
        ``after`` (keyset paging on the (symbol, trade_ms) index; fills without a trade time
        are left out: ``untimed_fills`` has them)."""

        def fn(conn: Connection) -> list[FillRecord]:
            c = fills_t.c
            q = sa.select(fills_t).where(c.symbol == symbol, c.trade_ms.is_not(None))
            if after is not None:
                t, trade = after
                q = q.where(sa.or_(c.trade_ms > t, sa.and_(c.trade_ms == t, c.trade_id > trade)))
            q = q.order_by(c.trade_ms, c.trade_id).limit(limit)
            return [_fill(r) for r in conn.execute(q)]

        return await self._read(fn)

    async def untimed_fills(self) -> list[FillRecord]:
        """Fills stored without an exchange trade time (rare: placed by when they arrived)."""

        def fn(conn: Connection) -> list[FillRecord]:
            q = sa.select(fills_t).where(fills_t.c.trade_ms.is_(None)).order_by(fills_t.c.id)
            return [_fill(r) for r in conn.execute(q)]

        return await self._read(fn)

    async def add_futures_income(self, rows: Iterable[dict[str, Any]]) -> int:
        """Store ``GET /fapi/v1/income`` rows (``symbol`` already the ledger symbol, ``amount``
        a Decimal); a row whose ``tran_id`` is stored already is skipped. Returns rows added."""
        from executor.persistence.models import FuturesIncome

        table = FuturesIncome.__table__
        now, run_id = self.clock(), self.run_id
        values = [{**r, "received_ms": now, "run_id": run_id} for r in rows]

        def fn(conn: Connection) -> int:
            added = 0
            for v in values:
                stmt = (dialect_insert(conn.dialect, table).values(**v)
                        .on_conflict_do_nothing(index_elements=["tran_id"]))
                added += conn.execute(stmt).rowcount or 0
            return added

        return await self._write(fn) if values else 0

    async def futures_income(self, *, income_type: str | None = None) -> list[dict[str, Any]]:
        """Stored futures income rows, oldest first (optionally one ``income_type``)."""
        from executor.persistence.models import FuturesIncome

        table = FuturesIncome.__table__

        def fn(conn: Connection) -> list[dict[str, Any]]:
            q = sa.select(table).order_by(table.c.time_ms, table.c.tran_id)
            if income_type is not None:
                q = q.where(table.c.income_type == income_type)
            return [dict(m) for m in conn.execute(q).mappings()]

        return await self._read(fn)

    async def last_futures_income_ms(self) -> int | None:
        from executor.persistence.models import FuturesIncome

        table = FuturesIncome.__table__

        def fn(conn: Connection) -> int | None:
            value = conn.execute(sa.select(sa.func.max(table.c.time_ms))).scalar_one()
            return None if value is None else int(value)

        return await self._read(fn)

    async def max_fill_id(self) -> int:
        def fn(conn: Connection) -> int:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(fills_t.c.id), 0))).scalar_one())

        return await self._read(fn)

    async def recent_orders(self, limit: int = 100, *, open_only: bool = False) -> list[OrderRecord]:
        """The newest orders first (``open_only``: those whose outcome is still open)."""

        def fn(conn: Connection) -> list[OrderRecord]:
            q = sa.select(orders_t)
            if open_only:
                q = q.where(orders_t.c.status.in_(_OPEN_STATUSES))
            q = q.order_by(orders_t.c.id.desc()).limit(limit)
            return [_record(OrderRecord, r) for r in conn.execute(q)]

        return await self._read(fn)

    async def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest runs first."""

        def fn(conn: Connection) -> list[dict[str, Any]]:
            q = sa.select(runs_t).order_by(runs_t.c.id.desc()).limit(limit)
            return [dict(m) for m in conn.execute(q).mappings()]

        return await self._read(fn)

    async def reconciliations_after(self, after_id: int = 0, *, limit: int = 100) -> list[dict[str, Any]]:
        """Finished reconciliation runs after row id ``after_id``, oldest first."""

        def fn(conn: Connection) -> list[dict[str, Any]]:
            q = (
                sa.select(recon_t)
                .where(recon_t.c.id > after_id, recon_t.c.outcome != "running")
                .order_by(recon_t.c.id)
                .limit(limit)
            )
            return [dict(m) for m in conn.execute(q).mappings()]

        return await self._read(fn)

    async def recent_reconciliations(self, limit: int = 50) -> list[dict[str, Any]]:
        def fn(conn: Connection) -> list[dict[str, Any]]:
            q = sa.select(recon_t).order_by(recon_t.c.id.desc()).limit(limit)
            return [dict(m) for m in conn.execute(q).mappings()]

        return await self._read(fn)


async def _pragma(conn: AsyncConnection, sql: str) -> list[Sequence[Any]]:
    """A PRAGMA on the SQLite driver connection under ``conn`` (outside any transaction:
    SQLAlchemy would begin one around it, and a safety level cannot change inside one)."""
    raw = await conn.get_raw_connection()
    aio = raw.driver_connection
    assert aio is not None
    return list(await aio.execute_fetchall(sql))  # type: ignore[attr-defined]


def config_hash(obj: Any) -> str:
    """A stable hash of a configuration (dataclasses/dicts), for ``runs.config_hash``."""
    from dataclasses import asdict, is_dataclass

    data = asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else obj
    return hashlib.sha256(json_dumps(data).encode()).hexdigest()


__all__ = [
    "BalanceRecord",
    "BalanceRow",
    "Batch",
    "BatchResult",
    "DuplicateClientOrderId",
    "ExternalOrderIn",
    "FillIn",
    "FillRecord",
    "OrderEventIn",
    "OrderRecord",
    "StatusChange",
    "StatusUpdateIn",
    "Store",
    "StoreError",
    "config_hash",
    "merge_status",
    "order_event_key",
]
