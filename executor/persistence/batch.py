"""The batch (unit of work): ``Batch`` queues writes, ``_Flush`` writes one batch inside an
open write transaction, plus the Core statements they use (multi-row ``INSERT ... ON
CONFLICT DO NOTHING RETURNING`` in each dialect, the order update, locked lookups) and the
table handles. Statements run through ``executor.persistence.sql.Runner``.

How batches are committed (group commit, idempotent writes) is described in
``executor.persistence.store``'s module docstring; ``Store.batch()`` is the entry point."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from decimal import Decimal, localcontext
from itertools import chain
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import Executable

from executor.persistence.db import lock_rows
from executor.persistence.models import (
    FILL_SOURCES,
    STATUS_RANK,
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
from executor.persistence.records import FillRow
from executor.persistence.sql import Runner, StatementBuilder, dialect_insert, p, statement
from executor.persistence.status_merge import _OrderState, merge_status
from executor.persistence.store_records import (
    SIDES,
    BalanceEventIn,
    BalanceRow,
    BalancesIn,
    BatchItem,
    BatchResult,
    ExternalOrderIn,
    FillIn,
    FuturesUpdateIn,
    OrderEventIn,
    StatusChange,
    StatusUpdateIn,
    StoreError,
    _check_status,
    _dec,
    _key_dec,
    order_event_key,
)
from executor.persistence.types import DecimalText, decimal_to_text, json_dumps, payload_text, to_decimal

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

_CHUNK = 500  # rows per IN (...) lookup; far below SQLite's variable limit


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _in_lists(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    """``_chunks`` for the values of an ``IN (...)``, each part padded with its last value
    to a power of two (a repeated value changes nothing in an IN). A statement is compiled
    once per shape, inside the write transaction: one shape per batch size cost up to tens
    of milliseconds each time a new size came (bench/RESULTS.md, "#15 two legs, session 8");
    ten shapes serve every size."""
    for part in _chunks(items, size):
        n = len(part)
        yield [*part, *([part[-1]] * ((1 << (n - 1).bit_length()) - n))]


_STATE_COLS = [f.name for f in fields(_OrderState) if f.name != "dirty"]
# The order columns a status merge may change, in the order ``_write_orders`` passes them.
_ORDER_UPDATE_COLS = (
    "status",
    "status_source",
    "executed_qty",
    "cum_quote_qty",
    "exchange_order_id",
    "acked_ms",
    "updated_ms",
    "exchange_update_ms",
    "resolved_from_unknown",
    "reject_reason",
)


def _state_from_row(row: Sequence[Any]) -> _OrderState:
    st = _OrderState(**dict(zip(_STATE_COLS, row, strict=True)))
    st.executed_qty = Decimal(st.executed_qty)
    st.cum_quote_qty = Decimal(st.cum_quote_qty)
    st.resolved_from_unknown = bool(st.resolved_from_unknown)
    return st


def _money_text(value: Any) -> str:
    """``decimal_to_text(value)``, with the batch writer's common case inline: a finite
    Decimal whose ``str`` is already positional (what exchange values are)."""
    if type(value) is Decimal and value.is_finite():
        text = str(value)
        if "E" not in text:
            return text
    return decimal_to_text(value)


def _money_decimal(value: Any) -> Decimal:
    return value if type(value) is Decimal else to_decimal(value)


# ---------------------------------------------------------------- the statements (Core, cached)
#
# Each builder takes the dialect name and returns a Core statement whose parameters are
# ``p0..pN`` (``executor.persistence.sql``); the key names its shape.


def _state_select(n: int) -> StatementBuilder:
    """The merge state of orders by client id, ``n`` ids, rows locked for the merge."""

    def build(_dialect: str) -> Executable:
        cols = [orders_t.c[c] for c in _STATE_COLS]
        return lock_rows(sa.select(*cols).where(orders_t.c.client_order_id.in_([p(i) for i in range(n)])))

    return build


def _state_select_by_exchange_id(n: int) -> StatementBuilder:
    """The merge state of orders of one symbol by exchange id: ``p0`` the symbol, then ids.

    Grouped per symbol so SQLite seeks the (symbol, exchange_order_id) index; a row-value
    IN (VALUES ...) would scan the whole table."""

    def build(_dialect: str) -> Executable:
        cols = [orders_t.c[c] for c in _STATE_COLS]
        return lock_rows(
            sa.select(*cols).where(
                orders_t.c.symbol == p(0),
                orders_t.c.exchange_order_id.in_([p(i + 1) for i in range(n)]),
            )
        )

    return build


def _update_order(_dialect: str) -> Executable:
    values = {c: p(i) for i, c in enumerate(_ORDER_UPDATE_COLS)}
    return sa.update(orders_t).where(orders_t.c.id == p(len(_ORDER_UPDATE_COLS))).values(values)


def _insert_returning_builder(
    table: sa.Table, cols: tuple[str, ...], n_rows: int, returning: tuple[str, ...]
) -> StatementBuilder:
    """``n_rows`` rows of ``p`` parameters; 0: the plain statement, for executemany."""

    def build(dialect: str) -> Executable:
        ins = dialect_insert(dialect, table)
        if n_rows:
            width = len(cols)
            ins = ins.values(
                [{c: p(r * width + j, table.c[c].type) for j, c in enumerate(cols)} for r in range(n_rows)]
            )
        return ins.on_conflict_do_nothing().returning(*(table.c[c] for c in returning))

    return build


def _insert_unnest_builder(
    table: sa.Table, cols: tuple[str, ...], returning: tuple[str, ...]
) -> StatementBuilder:
    """PostgreSQL: INSERT of the rows given as one array per column (``p{i}`` the values of
    ``cols[i]``), nothing on a conflict, returning what was inserted."""

    def build(dialect: str) -> Executable:
        arrays = []
        for i, c in enumerate(cols):
            t = table.c[c].type
            # Unbounded element types: a cast to VARCHAR(n) would silently truncate, where the
            # column's own length check refuses a value that is too long.
            elem = sa.Numeric() if isinstance(t, DecimalText) else t
            if isinstance(t, sa.String):
                elem = sa.Text()
            arrays.append(sa.cast(p(i), postgresql.ARRAY(elem)))
        rows = sa.select(sa.literal_column("*")).select_from(sa.func.unnest(*arrays))
        return (
            dialect_insert(dialect, table)
            .from_select(list(cols), rows)
            .on_conflict_do_nothing()
            .returning(*(table.c[c] for c in returning))
        )

    return build


# The balance statements (``_Flush._balances``, ``_Flush._balance_events``): built once and
# run through the Runner like the order statements (building an upsert with its
# ``excluded`` columns on every batch cost more than running it).
_BALANCE_COLS = ("asset", "free", "locked", "source", "event_ref", "event_ms", "updated_ms")
_BALANCE_EVENT_COLS = (
    "dedupe_key",
    "kind",
    "asset",
    "free",
    "locked",
    "delta",
    "source",
    "event_ref",
    "event_ms",
    "received_ms",
    "run_id",
    "payload",
)


def _balance_state_select(n: int) -> StatementBuilder:
    """(asset, event_ms) of ``n`` assets, rows locked for the "only newer" check."""

    def build(_dialect: str) -> Executable:
        return lock_rows(
            sa.select(balances_t.c.asset, balances_t.c.event_ms).where(
                balances_t.c.asset.in_([p(i) for i in range(n)])
            )
        )

    return build


def _balance_upsert(dialect: str) -> Executable:
    ins = dialect_insert(dialect, balances_t).values(
        {c: p(i, balances_t.c[c].type) for i, c in enumerate(_BALANCE_COLS)}
    )
    return ins.on_conflict_do_update(
        index_elements=["asset"], set_={c: ins.excluded[c] for c in _BALANCE_COLS[1:]}
    )


def _balance_event_keys(n: int) -> StatementBuilder:
    def build(_dialect: str) -> Executable:
        return sa.select(bal_events_t.c.dedupe_key).where(
            bal_events_t.c.dedupe_key.in_([p(i) for i in range(n)])
        )

    return build


def _balance_event_insert(dialect: str) -> Executable:
    return (
        dialect_insert(dialect, bal_events_t)
        .values({c: p(i, bal_events_t.c[c].type) for i, c in enumerate(_BALANCE_EVENT_COLS)})
        .on_conflict_do_nothing()
    )


def _client_ids_taken(n: int) -> StatementBuilder:
    """Which of ``n`` client ids an order row holds already."""

    def build(_dialect: str) -> Executable:
        return sa.select(orders_t.c.client_order_id).where(
            orders_t.c.client_order_id.in_([p(i) for i in range(n)]))

    return build


# The columns of an external order's row (``_Flush._externals``), in its tuples' order.
_EXTERNAL_COLS = (
    "client_order_id", "exchange_order_id", "run_id", "symbol", "side", "type", "time_in_force",
    "price", "quantity", "quote_order_qty", "status", "status_source", "executed_qty",
    "cum_quote_qty", "created_ms", "acked_ms", "updated_ms", "exchange_update_ms", "external",
    "resolved_from_unknown",
)


def _link_orphans(table: sa.Table, n: int) -> StatementBuilder:
    """Rows stored before their order was known point at it (by symbol and exchange id,
    unique in ``orders``): p0 the symbol, p1..pn the exchange ids of the orders just added."""

    def build(_dialect: str) -> Executable:
        order_id = sa.select(orders_t.c.id).where(
            orders_t.c.symbol == table.c.symbol,
            orders_t.c.exchange_order_id == table.c.exchange_order_id,
        ).scalar_subquery()
        return (
            sa.update(table)
            .where(table.c.order_id.is_(None), table.c.symbol == p(0),
                   table.c.exchange_order_id.in_([p(i + 1, sa.BigInteger()) for i in range(n)]))
            .values(order_id=order_id)
        )

    return build


# Rows per multi-row INSERT. One ``INSERT ... VALUES (...), (...), ...`` statement costs
# SQLite and the driver about half of what executemany does per row (measured on this
# schema: ~9 vs ~16 us per fill row); 256 rows x 16 columns stays far below SQLite's
# variable limit and PostgreSQL's 32767 parameters.
_ROWS_PER_INSERT = 256


def _insert_returning(
    sql: Runner,
    table: sa.Table,
    cols: tuple[str, ...],
    rows: list[tuple[Any, ...]],
    returning: tuple[str, ...],
) -> list[Sequence[Any]]:
    """INSERT ... ON CONFLICT DO NOTHING of row tuples (driver values when ``sql.raw``),
    ``_ROWS_PER_INSERT`` rows per statement, returning the ``returning`` columns of the rows
    actually inserted (RETURNING leaves out the rows that DO NOTHING skipped), so no lookup
    of what is already stored is needed first."""
    if sql.shortcut and sql.dialect == "postgresql":
        # asyncpg: the rows as one array per column through INSERT ... SELECT * FROM
        # unnest(...): one statement text whatever the row count (prepared once), one round
        # trip, no per-row parameters to plan.
        key = ("unnest", table.name, cols, returning)
        columns = [list(c) for c in zip(*rows, strict=True)]
        return sql.rows(key, _insert_unnest_builder(table, cols, returning), columns)
    if not sql.shortcut:
        # Generic path: one single-row statement executed for all rows; SQLAlchemy's
        # "insertmanyvalues" sends them as multi-row INSERT ... RETURNING pages itself, and
        # the one statement compiles once (a 256-row VALUES of bound parameters would cost
        # more to compile than to run).
        key = ("insert1", table.name, cols, returning)
        stmt = statement(sql.dialect, key, _insert_returning_builder(table, cols, 0, returning))
        res = sql.conn.execute(stmt, [dict(zip(cols, r, strict=True)) for r in rows])
        return [tuple(r) for r in res]
    # SQLite shortcut: multi-row VALUES, its text written from the one-row statement
    # (``sql.sqlite_rows_sql``), not compiled per row count.
    added: list[Sequence[Any]] = []
    key = ("insert", table.name, cols, 1, returning)
    build = _insert_returning_builder(table, cols, 1, returning)
    for part in _chunks(rows, _ROWS_PER_INSERT):
        added.extend(sql.insert_rows(key, build, len(part), tuple(chain.from_iterable(part))))
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
_FILL_COLS = FillRow._fields[1:]  # every column of a fill row but its id


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

    def __init__(
        self, conn: Connection, items: list[BatchItem], now: int, run_id: int | None, *, fast: bool = True
    ) -> None:
        self.conn = conn
        self.sql = Runner(conn, fast=fast)
        # Values for the row tuples: driver values on the SQLite shortcut, Python otherwise.
        self.money: Callable[[Any], Any] = _money_text if self.sql.raw else _money_decimal
        self.flag: Callable[[bool], Any] = int if self.sql.raw else bool
        self.items = items
        self.now = now
        self.run_id = run_id
        self.result = BatchResult()
        self.by_client: dict[str, _OrderState] = {}
        self.by_exchange: dict[tuple[str, int], _OrderState] = {}

    # -- orders

    def _load_orders(self, client_ids: Iterable[str]) -> None:
        need = sorted({c for c in client_ids if c not in self.by_client})
        for part in _in_lists(need):
            n = len(part)
            for row in self.sql.rows(("state", n), _state_select(n), part):
                self._remember(_state_from_row(row))

    def _load_orders_by_exchange_id(self, exchange_ids: Iterable[tuple[str, int]]) -> None:
        by_symbol: dict[str, list[int]] = {}
        for symbol, xid in sorted(set(exchange_ids)):
            if (symbol, xid) not in self.by_exchange:
                by_symbol.setdefault(symbol, []).append(xid)
        for symbol, ids in by_symbol.items():
            for part in _in_lists(ids):
                n = len(part)
                for row in self.sql.rows(("state_x", n), _state_select_by_exchange_id(n), (symbol, *part)):
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
        # Set-based, like the other item kinds: one lookup of the taken client ids, one
        # multi-row INSERT, one orphan-linking UPDATE per table and symbol, whatever the number
        # of externals. Per external (a lookup, an INSERT, two UPDATEs, each a hop to the
        # writer's thread and back to the loop) a batch of a few hundred held the store's write
        # lock, and with it the order path's record-before-send, for 100-250 ms while the loop
        # was busy (bench/RESULTS.md, "#15 two legs, session 8"). Same rows as one by one:
        # an order already known by exchange id, or our own order under that client id, is
        # skipped; a client id already taken (stored, or by an earlier external of this batch)
        # becomes ``<id>#x<exchange id>``.
        new: list[ExternalOrderIn] = []
        keys: set[tuple[str, int]] = set()
        for ext in items:
            key = (ext.symbol, ext.exchange_order_id)
            if key in self.by_exchange or key in keys:
                continue
            ours = self.by_client.get(ext.client_order_id)
            if ours is not None and ours.exchange_order_id in (None, ext.exchange_order_id):
                # Our own order whose acknowledgement we missed: never shadow it with an external.
                continue
            _check_status(ext.status)
            if ext.side not in SIDES:
                raise StoreError(f"external order {ext.client_order_id}: side must be BUY or SELL")
            new.append(ext)
            keys.add(key)
        if not new:
            return
        taken: set[str] = set()
        wanted = sorted({ext.client_order_id for ext in new})
        for part in _in_lists(wanted):
            n = len(part)
            taken.update(r[0] for r in self.sql.rows(("cid_taken", n), _client_ids_taken(n), part))
        money, flag, now, run_id = self.money, self.flag, self.now, self.run_id
        rows: list[tuple[Any, ...]] = []
        for ext in new:
            client_id = ext.client_order_id
            if client_id in taken:
                # Another program reused a client id we already hold; keep both orders apart.
                client_id = f"{client_id}#x{ext.exchange_order_id}"
            taken.add(client_id)
            at = ext.event_ms if ext.event_ms is not None else now
            price, qty, quote = _dec(ext.price), _dec(ext.quantity), _dec(ext.quote_order_qty)
            rows.append((
                client_id, ext.exchange_order_id, run_id, ext.symbol, ext.side, ext.type,
                ext.time_in_force,
                None if price is None else money(price),
                None if qty is None else money(qty),
                None if quote is None else money(quote),
                ext.status, ext.source,
                money(to_decimal(ext.executed_qty)), money(to_decimal(ext.cum_quote_qty)),
                ext.created_ms if ext.created_ms is not None else at,
                at, now, ext.event_ms, flag(True), flag(False),
            ))
        stored = _insert_returning(self.sql, orders_t, _EXTERNAL_COLS, rows, ("id", "client_order_id"))
        ids = {cid: new_id for new_id, cid in stored}
        missing = [r[0] for r in rows if r[0] not in ids]
        if missing:
            # Taken between the lookup and the INSERT cannot happen under the write lock; a
            # conflict here is another unique key (symbol, exchange id) or a renamed id in use.
            raise StoreError(f"external orders not recorded, their keys are taken: {missing[:5]}")
        links: dict[str, list[int]] = {}
        for ext, row in zip(new, rows, strict=True):
            client_id = row[0]
            new_id = ids[client_id]
            st = _OrderState(
                id=new_id,
                client_order_id=client_id,
                symbol=ext.symbol,
                side=ext.side,
                exchange_order_id=ext.exchange_order_id,
                status=ext.status,
                status_source=ext.source,
                executed_qty=to_decimal(ext.executed_qty),
                cum_quote_qty=to_decimal(ext.cum_quote_qty),
                acked_ms=row[15],
                exchange_update_ms=ext.event_ms,
                resolved_from_unknown=False,
                reject_reason=None,
                updated_ms=now,
            )
            self._remember(st)
            # Lookups by the id the exchange reported must find the renamed row too.
            self.by_client.setdefault(ext.client_order_id, st)
            self.result.external_orders_added.append(client_id)
            links.setdefault(ext.symbol, []).append(ext.exchange_order_id)
        # Events and fills stored before the order was known now point at it.
        for symbol, xids in links.items():
            for part in _in_lists(xids):
                n = len(part)
                for table in (events_t, fills_t):
                    self.sql.rows(("link", table.name, n), _link_orphans(table, n), (symbol, *part))

    # -- events and fills

    def _order_events(self, items: list[OrderEventIn]) -> None:
        # No lookup of stored keys first: the INSERT's ON CONFLICT DO NOTHING is the
        # dedupe (by (symbol, exchange_order_id, execution_id) for stream events, by the
        # partial unique index on dedupe_key for the rest), and RETURNING names the rows it
        # added. Only duplicates within this batch are skipped here.
        rows = []
        seen: set[str] = set()
        find, now, result, money = self._find, self.now, self.result, self.money
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
                    None if qty is None else money(qty),
                    None if quote is None else money(quote),
                    ev.trade_id,
                    ev.source,
                    ev.event_ms,
                    ev.received_ms if ev.received_ms is not None else now,
                    # payload_text's common case (a decoded frame) without its type checks.
                    json_dumps(payload) if type(payload) is dict else payload_text(payload),
                )
            )
        if rows:
            stored = _insert_returning(self.sql, events_t, _EVENT_COLS, rows, ("dedupe_key",))
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
        find, now, run_id, result, money = self._find, self.now, self.run_id, self.result, self.money
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
                    money(price),
                    money(qty),
                    money(quote),
                    money(f.commission),
                    f.commission_asset,
                    None if f.is_maker is None else self.flag(f.is_maker),
                    f.trade_ms,
                    f.source,
                    f.received_ms if f.received_ms is not None else now,
                    run_id,
                )
            )
            keys.append(key)
        if rows:
            stored = _insert_returning(self.sql, fills_t, _FILL_COLS, rows, ("symbol", "trade_id"))
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
                self.money(st.executed_qty),
                self.money(st.cum_quote_qty),
                st.exchange_order_id,
                st.acked_ms,
                st.updated_ms,
                st.exchange_update_ms,
                self.flag(st.resolved_from_unknown),
                st.reject_reason,
                st.id,
            )
            for st in dirty
        ]
        self.sql.many("update_order", _update_order, rows)

    # -- balances

    def _balances(self, items: list[BalancesIn]) -> None:
        assets = sorted({r.asset for b in items for r in b.rows})
        current: dict[str, int | None] = {}
        for part in _in_lists(assets):
            n = len(part)
            for asset, event_ms in self.sql.rows(("balance_state", n), _balance_state_select(n), part):
                current[asset] = event_ms
        events: list[BalanceEventIn] = []
        upserts: dict[str, tuple[Any, ...]] = {}
        money = self.money
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
                    # In _BALANCE_COLS order.
                    upserts[r.asset] = (
                        r.asset, money(r.free), money(r.locked), b.source, b.event_ref, b.event_ms, self.now,
                    )
                    current[r.asset] = b.event_ms
        self._balance_events(events)
        if upserts:
            rows = list(upserts.values())
            self.sql.many("balance_upsert", _balance_upsert, rows)
            self.result.balances_changed.extend(r[0] for r in rows)

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
        for part in _in_lists(wanted):
            n = len(part)
            found = self.sql.rows(("balance_event_keys", n), _balance_event_keys(n), part)
            existing.update(r[0] for r in found)
        rows: list[tuple[Any, ...]] = []
        payload_cache: dict[int, str | None] = {}
        money = self.money

        def dec(value: Any) -> Any:
            d = _dec(value)
            return None if d is None else money(d)

        for k, e in keyed:
            if k is not None:
                if k in existing:
                    continue
                existing.add(k)
            if id(e.payload) not in payload_cache:
                payload_cache[id(e.payload)] = None if e.payload is None else payload_text(e.payload)
            # In _BALANCE_EVENT_COLS order.
            rows.append(
                (
                    k, e.kind, e.asset, dec(e.free), dec(e.locked), dec(e.delta), e.source, e.event_ref,
                    e.event_ms, self.now, self.run_id, payload_cache[id(e.payload)],
                )
            )
        if rows:
            self.sql.many("balance_event_insert", _balance_event_insert, rows)
            self.result.balance_events_added += len(rows)

    def _futures(self, items: list[FuturesUpdateIn]) -> None:
        for u in items:
            text = payload_text(u.payload)
            key = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
            res = self.conn.execute(
                dialect_insert(self.conn.dialect, futures_t)
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
