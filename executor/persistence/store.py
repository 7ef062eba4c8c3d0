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
which is its own atomic transaction and costs one thread hop (~0.3 ms p50 measured).
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
import contextlib
import functools
import hashlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from decimal import Decimal, localcontext
from itertools import chain
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.util import await_

from executor.persistence.db import create_engine
from executor.persistence.models import (
    FILL_SOURCES,
    FINAL_STATUSES,
    NOT_PLACED,
    PENDING_SEND,
    SENT,
    STATUS_RANK,
    UNKNOWN,
    Balance,
    BalanceEvent,
    Cancel,
    Fill,
    FuturesAccountUpdate,
    Order,
    OrderEvent,
    ReconciliationRun,
    RiskRefusal,
    Run,
)
from executor.persistence.records import OrderRecord
from executor.persistence.types import decimal_to_text, json_dumps, now_ms, payload_text, to_decimal

T = TypeVar("T")

orders_t = Order.__table__
events_t = OrderEvent.__table__
fills_t = Fill.__table__
cancels_t = Cancel.__table__
balances_t = Balance.__table__
bal_events_t = BalanceEvent.__table__
futures_t = FuturesAccountUpdate.__table__
recon_t = ReconciliationRun.__table__
refusals_t = RiskRefusal.__table__
runs_t = Run.__table__

SIDES = ("BUY", "SELL")
# IN (open statuses) rather than NOT IN (finals): the former seeks ix_orders_status.
_OPEN_STATUSES = sorted(s for s in STATUS_RANK if s not in FINAL_STATUSES)
_CHUNK = 500  # rows per IN (...) lookup; far below SQLite's variable limit
_ZERO = Decimal(0)


class StoreError(Exception):
    """A write the ledger refuses (bad input or a broken invariant), phrased for a human."""


class DuplicateClientOrderId(StoreError):
    """An order intent reused a client order id: sending it would risk a double order."""


# ---------------------------------------------------------------- records returned by reads


@dataclass(frozen=True, slots=True)
class FillRecord:
    id: int
    symbol: str
    trade_id: int
    order_id: int | None
    client_order_id: str | None
    exchange_order_id: int | None
    side: str | None
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str | None
    is_maker: bool | None
    trade_ms: int | None
    source: str
    received_ms: int
    run_id: int | None


@dataclass(frozen=True, slots=True)
class BalanceRecord:
    asset: str
    free: Decimal
    locked: Decimal
    source: str
    event_ref: str | None
    event_ms: int | None
    updated_ms: int

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class StatusChange:
    """What ``update_order_status`` did. ``applied`` is False for a duplicate or an older
    observation; ``stale`` says the update was behind what was stored; ``conflict`` names a
    contradiction (kept out of the order row, left for the reconciler to report)."""

    client_order_id: str
    found: bool
    applied: bool = False
    previous_status: str | None = None
    status: str | None = None
    executed_qty: Decimal | None = None
    cum_quote_qty: Decimal | None = None
    stale: bool = False
    resolved_from_unknown: bool = False
    conflict: str | None = None


# ---------------------------------------------------------------- inputs (also usable in batches)
#
# Treat inputs as immutable. The per-event ones (order events, fills, status updates, external
# orders) are deliberately not ``frozen``: a frozen dataclass __init__ sets every field
# through object.__setattr__, ~5-10 us per item, which was a tenth of the reconciler's
# budget per executionReport.


@dataclass(frozen=True, slots=True)
class BalanceRow:
    asset: str
    free: Decimal
    locked: Decimal


@dataclass(slots=True)
class OrderEventIn:
    symbol: str
    status: str
    source: str
    payload: Any
    exchange_order_id: int | None = None
    client_order_id: str | None = None
    event_client_id: str | None = None
    execution_id: int | None = None
    execution_type: str | None = None
    executed_qty: Decimal | None = None
    cum_quote_qty: Decimal | None = None
    trade_id: int | None = None
    event_ms: int | None = None
    received_ms: int | None = None
    dedupe_key: str | None = None


@dataclass(slots=True)
class FillIn:
    symbol: str
    trade_id: int
    price: Decimal
    qty: Decimal
    source: str
    quote_qty: Decimal | None = None
    commission: Decimal = _ZERO
    commission_asset: str | None = None
    is_maker: bool | None = None
    trade_ms: int | None = None
    side: str | None = None
    client_order_id: str | None = None
    exchange_order_id: int | None = None
    received_ms: int | None = None


@dataclass(slots=True)
class StatusUpdateIn:
    client_order_id: str | None
    status: str
    source: str
    symbol: str | None = None
    exchange_order_id: int | None = None
    executed_qty: Decimal | None = None
    cum_quote_qty: Decimal | None = None
    event_ms: int | None = None
    reject_reason: str | None = None


@dataclass(slots=True)
class ExternalOrderIn:
    """An order we did not place, found on the exchange (stream or REST)."""

    symbol: str
    exchange_order_id: int
    client_order_id: str
    side: str
    type: str
    status: str
    source: str
    time_in_force: str | None = None
    price: Decimal | None = None
    quantity: Decimal | None = None
    quote_order_qty: Decimal | None = None
    executed_qty: Decimal = _ZERO
    cum_quote_qty: Decimal = _ZERO
    created_ms: int | None = None
    event_ms: int | None = None


@dataclass(frozen=True, slots=True)
class BalancesIn:
    rows: tuple[BalanceRow, ...]
    source: str
    event_ref: str | None = None
    event_ms: int | None = None
    kind: str | None = None
    payload: Any = None
    force: bool = False


@dataclass(frozen=True, slots=True)
class BalanceEventIn:
    kind: str
    asset: str
    source: str
    free: Decimal | None = None
    locked: Decimal | None = None
    delta: Decimal | None = None
    event_ms: int | None = None
    event_ref: str | None = None
    payload: Any = None
    dedupe_key: str | None = None


@dataclass(frozen=True, slots=True)
class FuturesUpdateIn:
    payload: Any
    event_ms: int | None = None
    transaction_ms: int | None = None
    reason: str | None = None
    balances: Any = None
    positions: Any = None


BatchItem = (
    OrderEventIn | FillIn | StatusUpdateIn | ExternalOrderIn | BalancesIn | BalanceEventIn | FuturesUpdateIn
)


@dataclass
class BatchResult:
    """What one committed batch changed."""

    events_added: int = 0
    events_duplicate: int = 0
    new_event_keys: list[str] = field(default_factory=list)
    fills_added: list[tuple[str, int]] = field(default_factory=list)
    fills_duplicate: int = 0
    status_changes: list[StatusChange] = field(default_factory=list)
    external_orders_added: list[str] = field(default_factory=list)
    balances_changed: list[str] = field(default_factory=list)
    balance_events_added: int = 0
    futures_updates_added: int = 0


# ---------------------------------------------------------------- pure helpers


def _dec(value: Any) -> Decimal | None:
    return None if value is None else to_decimal(value)


def _key_dec(value: Decimal | None) -> str:
    """Value-based text for dedupe keys: 1.0 and 1.00000000 are the same observation."""
    if value is None:
        return "-"
    norm = value.normalize()
    return format(norm, "f") if norm.as_tuple().exponent <= 0 else str(norm)  # type: ignore[operator]


def order_event_key(ev: OrderEventIn) -> str:
    """The dedupe key of an order observation (see ``models.OrderEvent``)."""
    if ev.dedupe_key:
        return ev.dedupe_key
    if ev.execution_id is not None:
        if ev.exchange_order_id is None:
            raise StoreError(f"{ev.symbol}: an event with an execution id needs the exchange order id")
        return f"exec:{ev.symbol}:{ev.exchange_order_id}:{ev.execution_id}"
    if ev.exchange_order_id is not None:
        ref = str(ev.exchange_order_id)
    elif ev.client_order_id:
        ref = "c:" + ev.client_order_id
    else:
        raise StoreError(f"{ev.symbol}: an order event needs an exchange order id or a client order id")
    when = ev.event_ms if ev.event_ms is not None else "-"
    return f"obs:{ev.symbol}:{ref}:{ev.status}:{_key_dec(_dec(ev.executed_qty))}:{when}"


def _check_status(status: str) -> None:
    if status not in STATUS_RANK:
        raise StoreError(f"unknown order status {status!r} (known: {', '.join(STATUS_RANK)})")


@dataclass
class _OrderState:
    id: int
    client_order_id: str
    symbol: str
    side: str
    exchange_order_id: int | None
    status: str
    status_source: str
    executed_qty: Decimal
    cum_quote_qty: Decimal
    acked_ms: int | None
    exchange_update_ms: int | None
    resolved_from_unknown: bool
    reject_reason: str | None
    updated_ms: int
    dirty: bool = False


def merge_status(cur: _OrderState, upd: StatusUpdateIn, at_ms: int) -> StatusChange:
    """Apply ``upd`` to ``cur`` in place, never moving backwards; return what happened.

    Rules: the cumulative executed quantity is the maximum ever seen, and the quote
    quantity follows it; the status rank (``models.STATUS_RANK``) never decreases; a final
    status is kept, except NOT_PLACED (our own inference) which the exchange may overrule;
    a differing exchange order id is a conflict and is not written.
    """
    _check_status(upd.status)
    prev_status = cur.status
    conflict = None
    stale = False
    changed = False

    if upd.exchange_order_id is not None:
        if cur.exchange_order_id is None:
            cur.exchange_order_id = upd.exchange_order_id
            changed = True
        elif cur.exchange_order_id != upd.exchange_order_id:
            conflict = (
                f"exchange order id {upd.exchange_order_id} from {upd.source} differs from "
                f"stored {cur.exchange_order_id}"
            )
            return StatusChange(
                cur.client_order_id,
                True,
                False,
                prev_status,
                cur.status,
                cur.executed_qty,
                cur.cum_quote_qty,
                False,
                False,
                conflict,
            )

    new_qty = _dec(upd.executed_qty)
    new_quote = _dec(upd.cum_quote_qty)
    if new_qty is not None:
        if new_qty > cur.executed_qty:
            cur.executed_qty = new_qty
            if new_quote is not None:
                cur.cum_quote_qty = new_quote
            changed = True
        elif new_qty < cur.executed_qty:
            stale = True
        elif new_quote is not None and new_quote > cur.cum_quote_qty:
            cur.cum_quote_qty = new_quote
            changed = True

    old_rank = STATUS_RANK[cur.status]
    new_rank = STATUS_RANK[upd.status]
    exchange_status = new_rank >= STATUS_RANK["PENDING_NEW"] and upd.status != NOT_PLACED
    if upd.status != cur.status:
        overrule_not_placed = cur.status == NOT_PLACED and exchange_status
        if cur.status in FINAL_STATUSES and not overrule_not_placed:
            if upd.status in FINAL_STATUSES:
                conflict = f"final status {cur.status} kept; {upd.source} reported {upd.status}"
            else:
                stale = True
        elif new_rank >= old_rank or overrule_not_placed:
            cur.status = upd.status
            changed = True
        else:
            stale = True

    resolved = False
    if prev_status == UNKNOWN and cur.status != UNKNOWN:
        cur.resolved_from_unknown = True
        resolved = True
    if exchange_status and cur.acked_ms is None:
        cur.acked_ms = at_ms
        changed = True
    if upd.event_ms is not None and (cur.exchange_update_ms is None or upd.event_ms > cur.exchange_update_ms):
        cur.exchange_update_ms = upd.event_ms
        changed = True
    if upd.reject_reason and upd.reject_reason != cur.reject_reason and cur.status == upd.status:
        cur.reject_reason = upd.reject_reason
        changed = True
    if changed:
        cur.status_source = upd.source
        cur.updated_ms = at_ms
        cur.dirty = True
    return StatusChange(
        cur.client_order_id,
        True,
        changed,
        prev_status,
        cur.status,
        cur.executed_qty,
        cur.cum_quote_qty,
        stale and not changed,
        resolved,
        conflict,
    )


def _record(cls: type[T], row: Any) -> T:
    m = row._mapping
    names = cls._fields if hasattr(cls, "_fields") else [f.name for f in fields(cls)]
    return cls(**{name: m[name] for name in names})  # type: ignore[arg-type]


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_STATE_COLS = [f.name for f in fields(_OrderState) if f.name != "dirty"]
_STATE_SQL = ", ".join(_STATE_COLS)
_UPDATE_ORDER_SQL = (
    "UPDATE orders SET status = ?, status_source = ?, executed_qty = ?, cum_quote_qty = ?, "
    "exchange_order_id = ?, acked_ms = ?, updated_ms = ?, exchange_update_ms = ?, "
    "resolved_from_unknown = ?, reject_reason = ? WHERE id = ?"
)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _state_from_row(row: Sequence[Any]) -> _OrderState:
    st = _OrderState(**dict(zip(_STATE_COLS, row, strict=True)))
    st.executed_qty = Decimal(st.executed_qty)
    st.cum_quote_qty = Decimal(st.cum_quote_qty)
    st.resolved_from_unknown = bool(st.resolved_from_unknown)
    return st


def _txt(value: Any) -> str | None:
    return None if value is None else _money_text(value)


def _money_text(value: Any) -> str:
    """``decimal_to_text(value)``, with the batch writer's common case inline: a finite
    Decimal whose ``str`` is already positional (what exchange values are)."""
    if type(value) is Decimal and value.is_finite():
        text = str(value)
        if "E" not in text:
            return text
    return decimal_to_text(value)


def _raw(value: Any) -> Any:
    """A value as the driver stores it (the hot batch path skips SQLAlchemy's bind layer)."""
    if isinstance(value, Decimal):
        return decimal_to_text(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _insert_many(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    """executemany of plain INSERT ... ON CONFLICT DO NOTHING; returns rows inserted.

    Rows hold driver values already (``_txt`` for money, ints for booleans): this path
    skips SQLAlchemy's type layer for speed, so it must not see JSON or Decimal columns
    unconverted. Every row must have the same keys in the same order."""
    cols = list(rows[0])
    sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({_marks(len(cols))}) ON CONFLICT DO NOTHING"
    res = conn.exec_driver_sql(sql, [tuple(r.values()) for r in rows])
    return res.rowcount if res.rowcount is not None and res.rowcount >= 0 else len(rows)


# Rows per multi-row INSERT. One ``INSERT ... VALUES (...), (...), ...`` statement costs
# SQLite and the driver about half of what executemany does per row (measured on this
# schema: ~9 vs ~16 us per fill row); 256 rows x 16 columns stays far below SQLite's
# variable limit.
_ROWS_PER_INSERT = 256


@functools.lru_cache(maxsize=64)
def _multi_insert_sql(table: str, cols: tuple[str, ...], n_rows: int) -> str:
    one = f"({_marks(len(cols))})"
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES {', '.join([one] * n_rows)} ON CONFLICT DO NOTHING"
    )


def _insert_returning(
    fetch: Callable[[str, Sequence[Any]], Iterable[Sequence[Any]]],
    table: str,
    cols: tuple[str, ...],
    rows: list[tuple[Any, ...]],
    returning: str,
) -> list[Sequence[Any]]:
    """INSERT ... ON CONFLICT DO NOTHING of driver-value tuples (see ``_insert_many`` for what
    driver values means), ``_ROWS_PER_INSERT`` rows per statement, returning the
    ``returning`` columns of the rows actually inserted (RETURNING leaves out the rows that
    DO NOTHING skipped), so no lookup of what is already stored is needed first."""
    added: list[Sequence[Any]] = []
    for part in _chunks(rows, _ROWS_PER_INSERT):
        sql = _multi_insert_sql(table, cols, len(part)) + " RETURNING " + returning
        added.extend(fetch(sql, tuple(chain.from_iterable(part))))
    return added


# Column order of the tuples ``_Flush._order_events`` and ``_Flush._fills`` build.
_EVENT_COLS = (
    "dedupe_key",
    "order_id",
    "symbol",
    "exchange_order_id",
    "client_order_id",
    "event_client_id",
    "execution_id",
    "execution_type",
    "status",
    "executed_qty",
    "cum_quote_qty",
    "trade_id",
    "source",
    "event_ms",
    "received_ms",
    "payload",
)
_FILL_COLS = (
    "symbol",
    "trade_id",
    "order_id",
    "client_order_id",
    "exchange_order_id",
    "side",
    "price",
    "qty",
    "quote_qty",
    "commission",
    "commission_asset",
    "is_maker",
    "trade_ms",
    "source",
    "received_ms",
    "run_id",
)


# ---------------------------------------------------------------- the batch (unit of work)


class Batch:
    """Queued writes committed together by ``Store.batch()``; see the module docstring.

    Methods mirror the store's single-write methods and only queue; ``result`` is filled
    when the batch commits."""

    def __init__(self) -> None:
        self.items: list[BatchItem] = []
        self.result = BatchResult()

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: BatchItem) -> None:
        self.items.append(item)

    def add_order_event(self, symbol: str, status: str, source: str, payload: Any, **kw: Any) -> None:
        self.items.append(OrderEventIn(symbol, status, source, payload, **kw))

    def add_fill(self, symbol: str, trade_id: int, price: Any, qty: Any, source: str, **kw: Any) -> None:
        self.items.append(FillIn(symbol, trade_id, price, qty, source, **kw))

    def update_order_status(
        self, client_order_id: str | None, status: str, *, source: str, **kw: Any
    ) -> None:
        self.items.append(StatusUpdateIn(client_order_id, status, source, **kw))

    def record_external_order(self, **kw: Any) -> None:
        self.items.append(ExternalOrderIn(**kw))

    def set_balances(
        self,
        rows: Iterable[BalanceRow | tuple[str, Any, Any]],
        source: str,
        event_ref: str | None = None,
        **kw: Any,
    ) -> None:
        self.items.append(BalancesIn(_balance_rows(rows), source, event_ref, **kw))

    def add_balance_event(self, kind: str, asset: str, source: str, **kw: Any) -> None:
        self.items.append(BalanceEventIn(kind, asset, source, **kw))

    def add_futures_update(self, payload: Any, **kw: Any) -> None:
        self.items.append(FuturesUpdateIn(payload, **kw))


def _balance_rows(rows: Iterable[BalanceRow | tuple[str, Any, Any]]) -> tuple[BalanceRow, ...]:
    out = []
    for r in rows:
        if isinstance(r, BalanceRow):
            out.append(BalanceRow(r.asset, to_decimal(r.free), to_decimal(r.locked)))
        else:
            asset, free, locked = r
            out.append(BalanceRow(asset, to_decimal(free), to_decimal(locked)))
    return tuple(out)


class _Flush:
    """Writes one batch inside an open write transaction (sync, run via ``run_sync``)."""

    def __init__(self, conn: Connection, items: list[BatchItem], now: int, run_id: int | None) -> None:
        self.conn = conn
        self.items = items
        self.now = now
        self.run_id = run_id
        self.result = BatchResult()
        self.by_client: dict[str, _OrderState] = {}
        self.by_exchange: dict[tuple[str, int], _OrderState] = {}
        driver = conn.connection.driver_connection
        # The aiosqlite connection under SQLAlchemy's adapter, for the batch's bulk
        # statements: its execute_fetchall is one hop to SQLite's thread, where the adapter's
        # cursor makes three or four (open, execute, fetch, close). Each hop waits for a thread
        # switch, which on a busy machine costs more than the statement.
        self._aio = driver if hasattr(driver, "execute_fetchall") else None

    def _fetch(self, sql: str, params: Sequence[Any]) -> Iterable[Sequence[Any]]:
        """Rows of one statement, on this batch's transaction (same connection either way)."""
        if self._aio is not None:
            return await_(self._aio.execute_fetchall(sql, params))  # type: ignore[no-any-return]
        return self.conn.exec_driver_sql(sql, tuple(params))

    # -- orders

    def _load_orders(self, client_ids: Iterable[str]) -> None:
        need = sorted({c for c in client_ids if c not in self.by_client})
        for part in _chunks(need):
            sql = f"SELECT {_STATE_SQL} FROM orders WHERE client_order_id IN ({_marks(len(part))})"
            for row in self._fetch(sql, tuple(part)):
                self._remember(_state_from_row(row))

    def _load_orders_by_exchange_id(self, exchange_ids: Iterable[tuple[str, int]]) -> None:
        by_symbol: dict[str, list[int]] = {}
        for symbol, xid in sorted(set(exchange_ids)):
            if (symbol, xid) not in self.by_exchange:
                by_symbol.setdefault(symbol, []).append(xid)
        for symbol, ids in by_symbol.items():
            for part in _chunks(ids):
                # Grouped per symbol so SQLite seeks the (symbol, exchange_order_id) index;
                # a row-value IN (VALUES ...) would scan the whole table.
                sql = (
                    f"SELECT {_STATE_SQL} FROM orders WHERE symbol = ? "
                    f"AND exchange_order_id IN ({_marks(len(part))})"
                )
                for row in self._fetch(sql, (symbol, *part)):
                    st = _state_from_row(row)
                    if st.client_order_id not in self.by_client:
                        self._remember(st)

    def _remember(self, st: _OrderState) -> None:
        self.by_client[st.client_order_id] = st
        if st.exchange_order_id is not None:
            self.by_exchange[(st.symbol, st.exchange_order_id)] = st

    def _find(
        self, client_id: str | None, symbol: str | None, exchange_id: int | None, *, strict: bool = True
    ) -> _OrderState | None:
        """The order an item refers to: by client id, else by (symbol, exchange id).

        ``strict`` refuses a client-id match whose exchange id differs from the item's (another
        program reusing one of our ids), so events and fills never attach to the wrong order;
        status updates look up non-strictly so ``merge_status`` can report the conflict."""
        st = self.by_client.get(client_id) if client_id else None
        if st is not None and (
            not strict or exchange_id is None or st.exchange_order_id in (None, exchange_id)
        ):
            return st
        if symbol is not None and exchange_id is not None:
            return self.by_exchange.get((symbol, exchange_id))
        return None

    def _externals(self, items: list[ExternalOrderIn]) -> None:
        for ext in items:
            if (ext.symbol, ext.exchange_order_id) in self.by_exchange:
                continue
            ours = self.by_client.get(ext.client_order_id)
            if ours is not None and ours.exchange_order_id in (None, ext.exchange_order_id):
                # Our own order whose acknowledgement we missed: never shadow it with an external.
                continue
            _check_status(ext.status)
            if ext.side not in SIDES:
                raise StoreError(f"external order {ext.client_order_id}: side must be BUY or SELL")
            client_id = ext.client_order_id
            taken = self.conn.execute(
                sa.select(orders_t.c.id).where(orders_t.c.client_order_id == client_id)
            ).first()
            if taken is not None:
                # Another program reused a client id we already hold; keep both orders apart.
                client_id = f"{client_id}#x{ext.exchange_order_id}"
            at = ext.event_ms if ext.event_ms is not None else self.now
            values = dict(
                client_order_id=client_id,
                exchange_order_id=ext.exchange_order_id,
                run_id=self.run_id,
                symbol=ext.symbol,
                side=ext.side,
                type=ext.type,
                time_in_force=ext.time_in_force,
                price=_dec(ext.price),
                quantity=_dec(ext.quantity),
                quote_order_qty=_dec(ext.quote_order_qty),
                status=ext.status,
                status_source=ext.source,
                executed_qty=to_decimal(ext.executed_qty),
                cum_quote_qty=to_decimal(ext.cum_quote_qty),
                created_ms=ext.created_ms if ext.created_ms is not None else at,
                acked_ms=at,
                updated_ms=self.now,
                exchange_update_ms=ext.event_ms,
                external=True,
                resolved_from_unknown=False,
            )
            new_id = self.conn.execute(
                sa.insert(orders_t).values(**values).returning(orders_t.c.id)
            ).scalar_one()
            st = _OrderState(
                id=new_id,
                client_order_id=client_id,
                symbol=ext.symbol,
                side=ext.side,
                exchange_order_id=ext.exchange_order_id,
                status=ext.status,
                status_source=ext.source,
                executed_qty=values["executed_qty"],
                cum_quote_qty=values["cum_quote_qty"],
                acked_ms=at,
                exchange_update_ms=ext.event_ms,
                resolved_from_unknown=False,
                reject_reason=None,
                updated_ms=self.now,
            )
            self._remember(st)
            # Events and fills stored before the order was known now point at it.
            for table in ("order_events", "fills"):
                self.conn.exec_driver_sql(
                    f"UPDATE {table} SET order_id = ? WHERE order_id IS NULL AND symbol = ? "
                    "AND exchange_order_id = ?",
                    (new_id, ext.symbol, ext.exchange_order_id),
                )
            # Lookups by the id the exchange reported must find the renamed row too.
            self.by_client.setdefault(ext.client_order_id, st)
            self.result.external_orders_added.append(client_id)

    # -- events and fills

    def _order_events(self, items: list[OrderEventIn]) -> None:
        # No lookup of stored keys first: the INSERT's ON CONFLICT DO NOTHING is the
        # dedupe (by (symbol, exchange_order_id, execution_id) for stream events, by the
        # partial unique index on dedupe_key for the rest), and RETURNING names the rows it
        # added. Only duplicates within this batch are skipped here.
        rows = []
        seen: set[str] = set()
        find, now, result = self._find, self.now, self.result
        for ev in items:
            key = ev.dedupe_key
            if not key:
                xid, eid = ev.exchange_order_id, ev.execution_id
                key = (
                    f"exec:{ev.symbol}:{xid}:{eid}"
                    if eid is not None and xid is not None
                    else order_event_key(ev)
                )
            if key in seen:
                result.events_duplicate += 1
                continue
            seen.add(key)
            status = ev.status
            if status not in STATUS_RANK:
                _check_status(status)
            st = find(ev.client_order_id, ev.symbol, ev.exchange_order_id)
            qty, quote, payload = ev.executed_qty, ev.cum_quote_qty, ev.payload
            rows.append(
                (
                    key,
                    st.id if st else None,
                    ev.symbol,
                    ev.exchange_order_id,
                    ev.client_order_id or (st.client_order_id if st else None),
                    ev.event_client_id,
                    ev.execution_id,
                    ev.execution_type,
                    status,
                    None if qty is None else _money_text(qty),
                    None if quote is None else _money_text(quote),
                    ev.trade_id,
                    ev.source,
                    ev.event_ms,
                    ev.received_ms if ev.received_ms is not None else now,
                    # payload_text's common case (a decoded frame) without its type checks.
                    json_dumps(payload) if type(payload) is dict else payload_text(payload),
                )
            )
        if rows:
            stored = _insert_returning(self._fetch, "order_events", _EVENT_COLS, rows, "dedupe_key")
            added = {r[0] for r in stored}
            result.events_added += len(added)
            result.events_duplicate += len(rows) - len(added)
            result.new_event_keys.extend(r[0] for r in rows if r[0] in added)

    def _fills(self, items: list[FillIn]) -> None:
        # Like _order_events: ON CONFLICT DO NOTHING on (symbol, trade_id) is the dedupe and
        # RETURNING names what was added; only duplicates within the batch are skipped here.
        rows = []
        keys: list[tuple[str, int]] = []
        seen: set[tuple[str, int]] = set()
        find, now, run_id, result = self._find, self.now, self.run_id, self.result
        for f in items:
            trade_id = int(f.trade_id)
            key = (f.symbol, trade_id)
            if key in seen:
                result.fills_duplicate += 1
                continue
            seen.add(key)
            if f.source not in FILL_SOURCES:
                raise StoreError(f"fill source must be one of {', '.join(FILL_SOURCES)}, got {f.source!r}")
            if trade_id < 0:
                raise StoreError(
                    f"{f.symbol}: trade id {f.trade_id} is not a trade (t = -1 events are not fills)"
                )
            price, qty = f.price, f.qty
            if type(price) is not Decimal or type(qty) is not Decimal:
                price, qty = to_decimal(price), to_decimal(qty)
            if f.quote_qty is not None:
                quote = f.quote_qty
            else:
                with localcontext() as ctx:
                    ctx.prec = 200  # exact for any realistic price x qty
                    quote = price * qty
            st = find(f.client_order_id, f.symbol, f.exchange_order_id)
            side = f.side or (st.side if st else None)
            if side is not None and side not in SIDES:
                raise StoreError(f"{f.symbol} trade {f.trade_id}: side must be BUY or SELL, got {side!r}")
            rows.append(
                (
                    f.symbol,
                    trade_id,
                    st.id if st else None,
                    f.client_order_id or (st.client_order_id if st else None),
                    f.exchange_order_id
                    if f.exchange_order_id is not None
                    else (st.exchange_order_id if st else None),
                    side,
                    _money_text(price),
                    _money_text(qty),
                    _money_text(quote),
                    _money_text(f.commission),
                    f.commission_asset,
                    None if f.is_maker is None else int(f.is_maker),
                    f.trade_ms,
                    f.source,
                    f.received_ms if f.received_ms is not None else now,
                    run_id,
                )
            )
            keys.append(key)
        if rows:
            stored = _insert_returning(self._fetch, "fills", _FILL_COLS, rows, "symbol, trade_id")
            if len(stored) == len(keys):
                result.fills_added.extend(keys)
            else:
                new_keys = {(r[0], r[1]) for r in stored}
                result.fills_added.extend(k for k in keys if k in new_keys)
                result.fills_duplicate += len(keys) - len(new_keys)

    def _statuses(self, items: list[StatusUpdateIn]) -> None:
        for upd in items:
            st = self._find(upd.client_order_id, upd.symbol, upd.exchange_order_id, strict=False)
            if st is None:
                self.result.status_changes.append(StatusChange(upd.client_order_id or "", found=False))
                continue
            self.result.status_changes.append(merge_status(st, upd, self.now))

    def _write_orders(self) -> None:
        dirty = {id(st): st for st in self.by_client.values() if st.dirty}.values()
        rows = [
            (
                st.status,
                st.status_source,
                decimal_to_text(st.executed_qty),
                decimal_to_text(st.cum_quote_qty),
                st.exchange_order_id,
                st.acked_ms,
                st.updated_ms,
                st.exchange_update_ms,
                int(st.resolved_from_unknown),
                st.reject_reason,
                st.id,
            )
            for st in dirty
        ]
        if rows:
            self.conn.exec_driver_sql(_UPDATE_ORDER_SQL, rows)

    # -- balances

    def _balances(self, items: list[BalancesIn]) -> None:
        assets = sorted({r.asset for b in items for r in b.rows})
        current: dict[str, int | None] = {}
        for part in _chunks(assets):
            for row in self.conn.execute(
                sa.select(balances_t.c.asset, balances_t.c.event_ms).where(balances_t.c.asset.in_(part))
            ):
                current[row.asset] = row.event_ms
        events: list[BalanceEventIn] = []
        upserts: dict[str, dict[str, Any]] = {}
        for b in items:
            kind = b.kind or b.source
            for r in b.rows:
                events.append(
                    BalanceEventIn(
                        kind,
                        r.asset,
                        b.source,
                        free=r.free,
                        locked=r.locked,
                        event_ms=b.event_ms,
                        event_ref=b.event_ref,
                        payload=b.payload,
                    )
                )
                have = current.get(r.asset, "absent")
                newer = have == "absent" or have is None or b.event_ms is None or b.event_ms >= have  # type: ignore[operator]
                if b.force or newer:
                    upserts[r.asset] = dict(
                        asset=r.asset,
                        free=r.free,
                        locked=r.locked,
                        source=b.source,
                        event_ref=b.event_ref,
                        event_ms=b.event_ms,
                        updated_ms=self.now,
                    )
                    current[r.asset] = b.event_ms
        self._balance_events(events)
        if upserts:
            rows = list(upserts.values())
            ins = sqlite_insert(balances_t)
            stmt = ins.on_conflict_do_update(
                index_elements=["asset"],
                set_={
                    c: ins.excluded[c]
                    for c in ("free", "locked", "source", "event_ref", "event_ms", "updated_ms")
                },
            )
            self.conn.execute(stmt, rows)
            self.result.balances_changed.extend(r["asset"] for r in rows)

    def _balance_events(self, items: list[BalanceEventIn]) -> None:
        def key(e: BalanceEventIn) -> str | None:
            if e.dedupe_key:
                return e.dedupe_key
            if e.event_ref:
                return f"{e.kind}:{e.event_ref}:{e.asset}"
            if e.event_ms is not None:
                return (
                    f"{e.kind}:{e.asset}:{e.event_ms}:{_key_dec(_dec(e.delta))}:"
                    f"{_key_dec(_dec(e.free))}:{_key_dec(_dec(e.locked))}"
                )
            return None

        keyed = [(key(e), e) for e in items]
        wanted = sorted({k for k, _ in keyed if k is not None})
        existing: set[str] = set()
        for part in _chunks(wanted):
            existing.update(
                self.conn.execute(
                    sa.select(bal_events_t.c.dedupe_key).where(bal_events_t.c.dedupe_key.in_(part))
                ).scalars()
            )
        rows = []
        payload_cache: dict[int, str | None] = {}
        for k, e in keyed:
            if k is not None:
                if k in existing:
                    continue
                existing.add(k)
            if id(e.payload) not in payload_cache:
                payload_cache[id(e.payload)] = None if e.payload is None else payload_text(e.payload)
            rows.append(
                dict(
                    dedupe_key=k,
                    kind=e.kind,
                    asset=e.asset,
                    free=_dec(e.free),
                    locked=_dec(e.locked),
                    delta=_dec(e.delta),
                    source=e.source,
                    event_ref=e.event_ref,
                    event_ms=e.event_ms,
                    received_ms=self.now,
                    run_id=self.run_id,
                    payload=payload_cache[id(e.payload)],
                )
            )
        if rows:
            self.conn.execute(sqlite_insert(bal_events_t).on_conflict_do_nothing(), rows)
            self.result.balance_events_added += len(rows)

    def _futures(self, items: list[FuturesUpdateIn]) -> None:
        for u in items:
            text = payload_text(u.payload)
            key = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
            res = self.conn.execute(
                sqlite_insert(futures_t)
                .on_conflict_do_nothing()
                .values(
                    dedupe_key=key,
                    event_ms=u.event_ms,
                    transaction_ms=u.transaction_ms,
                    reason=u.reason,
                    balances=u.balances if u.balances is not None else [],
                    positions=u.positions if u.positions is not None else [],
                    received_ms=self.now,
                    run_id=self.run_id,
                    payload=text,
                )
            )
            if res.rowcount:
                self.result.futures_updates_added += 1

    # -- driver

    def run(self) -> BatchResult:
        by_type: dict[type, list[Any]] = {}
        for item in self.items:
            by_type.setdefault(type(item), []).append(item)
        events: list[OrderEventIn] = by_type.get(OrderEventIn, [])
        fills: list[FillIn] = by_type.get(FillIn, [])
        statuses: list[StatusUpdateIn] = by_type.get(StatusUpdateIn, [])
        externals: list[ExternalOrderIn] = by_type.get(ExternalOrderIn, [])
        # Every order reference once (a batch holds many events of few orders).
        refs = {
            (x.client_order_id, x.symbol, x.exchange_order_id)
            for x in (*events, *fills, *statuses, *externals)
        }
        client_ids = {cid for cid, _, _ in refs if cid}
        if client_ids:
            self._load_orders(client_ids)
        # By exchange id whatever the client ids did not resolve to that same exchange id.
        exchange_ids = set()
        for cid, symbol, xid in refs:
            if symbol is None or xid is None:
                continue
            known = self.by_client.get(cid) if cid else None
            if known is None or known.exchange_order_id != xid:
                exchange_ids.add((symbol, xid))
        if exchange_ids:
            self._load_orders_by_exchange_id(exchange_ids)
        # Externals first so this batch's events, fills and statuses link to them.
        self._externals(externals)
        self._order_events(events)
        self._fills(fills)
        self._statuses(statuses)
        self._write_orders()
        self._balances(by_type.get(BalancesIn, []))
        self._balance_events(by_type.get(BalanceEventIn, []))
        self._futures(by_type.get(FuturesUpdateIn, []))
        return self.result


# ---------------------------------------------------------------- the store


class _WriteLock:
    """The store's in-process write lock, with a fast lane for the order path.

    Waiters are served first come, first served, except that ``urgent`` ones (the
    record-before-send statements: one short autocommit each) go ahead of every waiting
    batch. A batch that already holds the lock is never interrupted, so every write stays
    its own whole transaction; an urgent write waits for at most the one transaction in
    progress (the reconciler caps its batches with ``batch_max``) instead of the whole
    queue behind it. Release hands the lock straight to the next waiter, so a late
    arrival cannot slip in between.
    """

    __slots__ = ("_held", "_normal", "_urgent")

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    async def acquire(self, urgent: bool = False) -> None:
        if not self._held and not self._urgent and (urgent or not self._normal):
            self._held = True
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._normal
        queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(fut)
            raise

    def release(self) -> None:
        if not self._held:
            raise RuntimeError("store write lock released while not held")
        for queue in (self._urgent, self._normal):
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)  # ownership passes over; the lock stays held
                    return
        self._held = False

    @asynccontextmanager
    async def hold(self, urgent: bool = False) -> AsyncIterator[None]:
        await self.acquire(urgent)
        try:
            yield
        finally:
            self.release()


class Store:
    """The ledger. Create with ``await Store.open(url)`` (which also upgrades the schema)."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], int] = now_ms) -> None:
        self.engine = engine
        self.clock = clock
        self.run_id: int | None = None
        self._write_lock = _WriteLock()
        self._wconn: AsyncConnection | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Callable[[], int] = now_ms,
        synchronous: str | None = None,
        upgrade: bool = True,
    ) -> Store:
        """Open the ledger at ``url``; by default first migrate it to the newest schema
        (raising ``migrate.SchemaTooNewError`` for a database from a newer version)."""
        if upgrade:
            from executor.persistence.migrate import ensure_schema

            await ensure_schema(url)
        return cls(create_engine(url, synchronous=synchronous), clock=clock)

    async def close(self) -> None:
        async with self._write_lock.hold():
            if self._wconn is not None:
                await self._wconn.close()
                self._wconn = None
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
        return self._wconn

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._write_lock.hold():
            conn = await self._writer()
            async with conn.begin():
                return await conn.run_sync(fn, *args)

    async def _autocommit(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One statement as its own transaction, executed and fetched in one thread hop.

        Only the order path uses this, and it jumps the queue of waiting batches (see
        ``_WriteLock``): the order is on hold until its record is committed."""
        async with self._write_lock.hold(urgent=True):
            conn = await self._writer()
            if conn.in_transaction():  # never expected; keep the invariant rather than corrupt it
                raise StoreError("write connection unexpectedly inside a transaction")
            raw = await conn.get_raw_connection()
            aio = raw.driver_connection
            assert aio is not None
            return [tuple(r) for r in await aio.execute_fetchall(sql, tuple(_raw(p) for p in params))]

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
        return await self._write(lambda conn: _Flush(conn, batch, now, run_id).run())

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
    ) -> None:
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

        await self._write(fn)

    async def get_run(self, run_id: int) -> dict[str, Any] | None:
        def fn(conn: Connection) -> dict[str, Any] | None:
            row = conn.execute(sa.select(runs_t).where(runs_t.c.id == run_id)).first()
            return dict(row._mapping) if row else None

        return await self._read(fn)

    # -- orders

    async def record_order_intent(
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
    ) -> OrderRecord:
        """Record an order BEFORE it is sent (status PENDING_SEND).

        Raises ``DuplicateClientOrderId`` if the id is already in the ledger: the caller
        must never send it then."""
        if side not in SIDES:
            raise StoreError(f"order {client_order_id}: side must be BUY or SELL, got {side!r}")
        if not client_order_id:
            raise StoreError("an order needs a client order id")
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

        cols = list(values)
        sql = (
            f"INSERT INTO orders ({', '.join(cols)}) VALUES ({_marks(len(cols))}) "
            "ON CONFLICT (client_order_id) DO NOTHING RETURNING id"
        )
        rows = await self._autocommit(sql, [values[c] for c in cols])
        new_id = rows[0][0] if rows else None
        if new_id is None:
            raise DuplicateClientOrderId(
                f"client order id {client_order_id!r} is already in the ledger; "
                "not recording (and it must not be sent) again"
            )
        return OrderRecord(id=new_id, **values)  # type: ignore[arg-type]

    async def mark_order_sent(self, client_order_id: str, *, at_ms: int | None = None) -> bool:
        """PENDING_SEND -> SENT with the send time; False if the order had moved on already."""
        at = at_ms if at_ms is not None else self.clock()

        done = await self._autocommit(
            "UPDATE orders SET status = ?, status_source = 'local', sent_ms = ?, updated_ms = ? "
            "WHERE client_order_id = ? AND status = ? RETURNING id",
            [SENT, at, at, client_order_id, PENDING_SEND],
        )
        if done:
            return True

        def fn(conn: Connection) -> bool:
            found = conn.execute(
                sa.select(orders_t.c.id, orders_t.c.sent_ms).where(
                    orders_t.c.client_order_id == client_order_id
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
            return [_record(FillRecord, r) for r in conn.execute(q)]

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
            return [dict(r._mapping) for r in conn.execute(q)]

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
            return [_record(FillRecord, r) for r in conn.execute(q)]

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
                _record(FillRecord, r) for r in conn.execute(q.order_by(fills_t.c.trade_ms, fills_t.c.id))
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
                sqlite_insert(cancels_t)
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

    async def reconciliation_runs(self, *, run_id: int | None = None) -> list[dict[str, Any]]:
        def fn(conn: Connection) -> list[dict[str, Any]]:
            q = sa.select(recon_t)
            if run_id is not None:
                q = q.where(recon_t.c.run_id == run_id)
            return [dict(r._mapping) for r in conn.execute(q.order_by(recon_t.c.id))]

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
