"""The ledger's tables as SQLAlchemy 2 declarative models.

These models describe the schema; they never create it. The schema is created and changed
only by the Alembic migrations in ``migrations/versions`` (a test checks that the migrated
database and these models agree exactly). Conventions: money columns are ``DecimalText``,
every time is an INTEGER ``*_ms`` in UTC epoch milliseconds, raw exchange payloads are kept
verbatim as TEXT, and constraint names come from ``NAMING`` so migrations can name them.

Why a separate ``cancels`` table rather than folding cancels into ``order_events``: a
cancel is its own request with its own client id (Binance's ``newClientOrderId`` on
DELETE) and its own unknown outcome (a 5xx on a cancel). The CANCELED executionReport
carries the cancel's id in ``c`` and the original only in ``C``, so the reconciler needs an
indexed "cancel id -> original order" lookup, and the audit wants "when did we ask to
cancel, and what came of it". The resulting order status change is still an order_event.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Re-exported (``as``): the store and its callers import them from here.
from executor.core.orders import FINAL_STATUSES as FINAL_STATUSES
from executor.core.orders import STATUS_RANK as STATUS_RANK
from executor.core.orders import OrderStatus
from executor.persistence.types import DecimalText, JsonText

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


# Order statuses and their ranks are defined once, in the core state machine
# (``executor.core.orders``: its module docstring says what each stored name means).
PENDING_SEND = OrderStatus.PENDING_SEND.value
SENT = OrderStatus.SENT.value
UNKNOWN = OrderStatus.UNKNOWN.value
NOT_FOUND = OrderStatus.NOT_FOUND.value
NOT_PLACED = OrderStatus.NOT_PLACED.value

FILL_SOURCES = ("stream", "order_response", "gap_fill")


class Run(Base):
    """One bot start. ``ended`` is NULL while running; a later start marks it 'abandoned'."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    version: Mapped[str] = mapped_column(sa.String(40))
    profile: Mapped[str] = mapped_column(sa.String(16))
    config_hash: Mapped[str] = mapped_column(sa.String(64))
    started_ms: Mapped[int] = mapped_column(sa.BigInteger)
    stopped_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    ended: Mapped[str | None] = mapped_column(sa.String(16))  # clean | unclean | forced | error | abandoned
    end_reason: Mapped[str | None] = mapped_column(sa.Text)


class Order(Base):
    """Every order we placed (recorded before sending) or found on the exchange (external)."""

    __tablename__ = "orders"
    __table_args__ = (
        sa.UniqueConstraint("symbol", "exchange_order_id"),
        sa.Index(None, "run_id", "status"),
        sa.Index(None, "status"),
        sa.Index(None, "symbol", "created_ms"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    client_order_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    exchange_order_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id"))
    symbol: Mapped[str] = mapped_column(sa.String(32))
    side: Mapped[str] = mapped_column(sa.String(8))
    type: Mapped[str] = mapped_column(sa.String(32))
    time_in_force: Mapped[str | None] = mapped_column(sa.String(8))
    price: Mapped[Decimal | None] = mapped_column(DecimalText)
    quantity: Mapped[Decimal | None] = mapped_column(DecimalText)
    quote_order_qty: Mapped[Decimal | None] = mapped_column(DecimalText)
    status: Mapped[str] = mapped_column(sa.String(20))
    status_source: Mapped[str] = mapped_column(sa.String(20))  # who set the current status
    executed_qty: Mapped[Decimal] = mapped_column(DecimalText)
    cum_quote_qty: Mapped[Decimal] = mapped_column(DecimalText)
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)
    sent_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    acked_ms: Mapped[int | None] = mapped_column(sa.BigInteger)  # first exchange status seen
    updated_ms: Mapped[int] = mapped_column(sa.BigInteger)
    exchange_update_ms: Mapped[int | None] = mapped_column(sa.BigInteger)  # latest E/T/updateTime
    decision_bid: Mapped[Decimal | None] = mapped_column(DecimalText)
    decision_ask: Mapped[Decimal | None] = mapped_column(DecimalText)
    decision_mark: Mapped[Decimal | None] = mapped_column(DecimalText)
    decision_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    external: Mapped[bool] = mapped_column(sa.Boolean)
    resolved_from_unknown: Mapped[bool] = mapped_column(sa.Boolean)
    reject_reason: Mapped[str | None] = mapped_column(sa.Text)  # r / eR / error message


class OrderEvent(Base):
    """Every observed change of an order: stream executionReports and REST observations.

    Every observation is stored once. Stream executionReports are unique by
    (symbol, exchange_order_id, execution_id); their ``dedupe_key`` is
    ``exec:<symbol>:<orderId>:<executionId>``, derived from that triple, so it needs no
    index of its own. Rows without an execution id (REST observations: order response,
    order query, gap fill; futures events) are unique by ``dedupe_key`` through a partial
    unique index (SQLite treats NULLs as distinct, so the triple cannot cover them). A REST
    observation's key is the observed state itself:
    ``obs:<symbol>:<orderId or c:clientId>:<status>:<executedQty>:<updateTime>``. Polling an
    unchanged order adds nothing; any real change (status, quantity, time) is a new row.
    """

    __tablename__ = "order_events"
    __table_args__ = (
        sa.UniqueConstraint("symbol", "exchange_order_id", "execution_id"),
        sa.Index(None, "order_id"),
        sa.Index(
            None,
            "dedupe_key",
            unique=True,
            sqlite_where=sa.text("execution_id IS NULL"),
            postgresql_where=sa.text("execution_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(sa.String(200))
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("orders.id"))
    symbol: Mapped[str] = mapped_column(sa.String(32))
    exchange_order_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    client_order_id: Mapped[str | None] = mapped_column(sa.String(64))  # the order's own id
    event_client_id: Mapped[str | None] = mapped_column(sa.String(64))  # `c` (a cancel id on CANCELED)
    execution_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    execution_type: Mapped[str | None] = mapped_column(sa.String(24))
    status: Mapped[str] = mapped_column(sa.String(20))
    executed_qty: Mapped[Decimal | None] = mapped_column(DecimalText)
    cum_quote_qty: Mapped[Decimal | None] = mapped_column(DecimalText)
    trade_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    source: Mapped[str] = mapped_column(sa.String(20))  # stream | order_response | rest_query | gap_fill
    event_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    received_ms: Mapped[int] = mapped_column(sa.BigInteger)
    payload: Mapped[str] = mapped_column(sa.Text)


class Cancel(Base):
    """A cancel request: its own client id, the order it targets, and what came of it."""

    __tablename__ = "cancels"
    __table_args__ = (sa.Index(None, "order_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    cancel_client_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    orig_client_order_id: Mapped[str] = mapped_column(sa.String(64))
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("orders.id"))
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id"))
    symbol: Mapped[str] = mapped_column(sa.String(32))
    requested_ms: Mapped[int] = mapped_column(sa.BigInteger)
    outcome: Mapped[str] = mapped_column(sa.String(16))  # PENDING | CANCELED | REJECTED | UNKNOWN | ...
    outcome_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    detail: Mapped[str | None] = mapped_column(sa.Text)


class Fill(Base):
    """One trade of ours, stored once per (symbol, trade_id) whichever source saw it first."""

    __tablename__ = "fills"
    __table_args__ = (
        sa.UniqueConstraint("symbol", "trade_id"),
        sa.Index(None, "symbol", "trade_ms"),
        # By order, and each spot order's first fill from the index alone (the audit's latencies).
        sa.Index(None, "order_id", "received_ms", "symbol"),
        # The audit's per-symbol fill sums walk this index in group order (migration 0008);
        # on PostgreSQL it carries trade_ms too, so ``audit verify`` reads each symbol's fills
        # from it alone (migration 0009).
        sa.Index(
            "ix_fills_audit_sums", "symbol", "side", "is_maker", "commission_asset", "qty", "quote_qty",
            "commission", postgresql_include=["trade_ms"],
        ),
        sa.CheckConstraint("source IN ('stream', 'order_response', 'gap_fill')", name="source"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    symbol: Mapped[str] = mapped_column(sa.String(32))
    trade_id: Mapped[int] = mapped_column(sa.BigInteger)
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("orders.id"))
    client_order_id: Mapped[str | None] = mapped_column(sa.String(64))
    exchange_order_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    side: Mapped[str | None] = mapped_column(sa.String(8))
    price: Mapped[Decimal] = mapped_column(DecimalText)
    qty: Mapped[Decimal] = mapped_column(DecimalText)
    quote_qty: Mapped[Decimal] = mapped_column(DecimalText)
    commission: Mapped[Decimal] = mapped_column(DecimalText)
    commission_asset: Mapped[str | None] = mapped_column(sa.String(16))
    is_maker: Mapped[bool | None] = mapped_column(sa.Boolean)
    trade_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    source: Mapped[str] = mapped_column(sa.String(16))
    received_ms: Mapped[int] = mapped_column(sa.BigInteger)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id"))


class Balance(Base):
    """Latest known balance per asset, and which event set it."""

    __tablename__ = "balances"

    asset: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    free: Mapped[Decimal] = mapped_column(DecimalText)
    locked: Mapped[Decimal] = mapped_column(DecimalText)
    source: Mapped[str] = mapped_column(sa.String(32))  # outboundAccountPosition | rest_snapshot | ...
    event_ref: Mapped[str | None] = mapped_column(sa.String(100))
    event_ms: Mapped[int | None] = mapped_column(sa.BigInteger)  # exchange time of the setting event
    updated_ms: Mapped[int] = mapped_column(sa.BigInteger)  # when we wrote it


class BalanceEvent(Base):
    """Every balance observation: outboundAccountPosition and REST snapshot rows (free and
    locked per asset) and balanceUpdate (a delta)."""

    __tablename__ = "balance_events"
    __table_args__ = (
        # PostgreSQL: with what ``audit verify`` reads of an asset's events, so it reads them
        # from the index alone (migration 0009).
        sa.Index(None, "asset", "event_ms", postgresql_include=["kind", "free", "locked", "delta", "id"]),
        sa.Index(None, "kind", "event_ms"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    kind: Mapped[str] = mapped_column(
        sa.String(32)
    )  # outboundAccountPosition | balanceUpdate | rest_snapshot
    asset: Mapped[str] = mapped_column(sa.String(16))
    free: Mapped[Decimal | None] = mapped_column(DecimalText)
    locked: Mapped[Decimal | None] = mapped_column(DecimalText)
    delta: Mapped[Decimal | None] = mapped_column(DecimalText)
    source: Mapped[str] = mapped_column(sa.String(32))
    event_ref: Mapped[str | None] = mapped_column(sa.String(100))
    event_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    received_ms: Mapped[int] = mapped_column(sa.BigInteger)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id"))
    payload: Mapped[str | None] = mapped_column(sa.Text)


class FuturesAccountUpdate(Base):
    """USD-M ACCOUNT_UPDATE: balances and positions as sent, plus the raw event."""

    __tablename__ = "futures_account_updates"
    __table_args__ = (sa.Index(None, "event_ms"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    event_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    transaction_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    reason: Mapped[str | None] = mapped_column(sa.String(32))
    balances: Mapped[Any] = mapped_column(JsonText)
    positions: Mapped[Any] = mapped_column(JsonText)
    received_ms: Mapped[int] = mapped_column(sa.BigInteger)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id"))
    payload: Mapped[str] = mapped_column(sa.Text)


class ReconciliationRun(Base):
    """One reconciliation / gap fill: why, what it found and fixed, and how long it took."""

    __tablename__ = "reconciliation_runs"
    __table_args__ = (sa.Index(None, "started_ms"), sa.Index(None, "run_id"))

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id"))
    reason: Mapped[str] = mapped_column(sa.String(64))  # start | stream_gap | periodic | snapshot | ...
    started_ms: Mapped[int] = mapped_column(sa.BigInteger)
    finished_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    duration_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    outcome: Mapped[str] = mapped_column(sa.String(16))  # running | ok | error
    found: Mapped[int] = mapped_column(sa.Integer)
    fixed: Mapped[int] = mapped_column(sa.Integer)
    counts: Mapped[Any] = mapped_column(JsonText)
    discrepancies: Mapped[Any] = mapped_column(JsonText)
    error: Mapped[str | None] = mapped_column(sa.Text)


class RiskRefusal(Base):
    """An intent the risk checks refused, with the rule and the reason."""

    __tablename__ = "risk_refusals"
    __table_args__ = (sa.Index(None, "run_id", "at_ms"), sa.Index(None, "at_ms"))

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id"))
    at_ms: Mapped[int] = mapped_column(sa.BigInteger)
    symbol: Mapped[str] = mapped_column(sa.String(32))
    intent: Mapped[str] = mapped_column(sa.Text)  # e.g. "place BUY LIMIT 0.001 @ 60000"
    side: Mapped[str | None] = mapped_column(sa.String(8))
    price: Mapped[Decimal | None] = mapped_column(DecimalText)
    quantity: Mapped[Decimal | None] = mapped_column(DecimalText)
    rule: Mapped[str | None] = mapped_column(sa.String(40))
    reason: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[Any] = mapped_column(JsonText, nullable=True)


class AuditCheckpoint(Base):
    """The audit's folded state of the ledger up to ``cut_ms`` (``executor.audit.checkpoints``):
    one row per kind ("report", "verify"), replaced as the ledger grows, so an audit folds only
    the rows after the cut. A cache: deleting it changes no result, only the time taken."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16), unique=True)
    version: Mapped[int] = mapped_column(sa.Integer)  # format of ``state``; another is ignored
    cut_ms: Mapped[int] = mapped_column(sa.BigInteger)  # rows at or before this time are folded
    max_fill_id: Mapped[int] = mapped_column(sa.Integer)  # ids seen when it was written
    max_order_id: Mapped[int] = mapped_column(sa.Integer)
    max_balance_event_id: Mapped[int] = mapped_column(sa.Integer)
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)
    state: Mapped[bytes] = mapped_column(sa.LargeBinary)  # zlib-compressed JSON


class LedgerMeta(Base):
    """What this ledger is, written once when it is created (``executor.persistence.identity``):
    ``client_prefix`` (this ledger's order namespace), ``venue_profile``, ``venue_rest``,
    ``venue_account`` (the account's identity, e.g. ``uid``, where the venue gives one),
    ``created_ms``. Opening a ledger for another venue is refused."""

    __tablename__ = "ledger_meta"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)
    set_ms: Mapped[int] = mapped_column(sa.BigInteger)


class LedgerLease(Base):
    """The one process allowed to trade on this ledger (one row per bot name): who holds it
    and its last heartbeat. A second bot is refused while the holder lives; a lease whose
    holder is gone (pid dead on this host, or heartbeat older than its TTL) is taken over."""

    __tablename__ = "ledger_leases"

    bot: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id"))
    pid: Mapped[int] = mapped_column(sa.Integer)
    host: Mapped[str] = mapped_column(sa.String(255))
    token: Mapped[str] = mapped_column(sa.String(64))  # random per holder: a heartbeat checks it
    acquired_ms: Mapped[int] = mapped_column(sa.BigInteger)
    heartbeat_ms: Mapped[int] = mapped_column(sa.BigInteger)
    ttl_ms: Mapped[int] = mapped_column(sa.BigInteger)


class OperatorAction(Base):
    """An operator's action on a running bot (pause, resume, cancel-all, kill), with when,
    from where (``web``, ``terminal``, ``signal``, ``kill_file``) and what came of it."""

    __tablename__ = "operator_actions"
    __table_args__ = (sa.Index(None, "at_ms"), sa.Index(None, "run_id"))

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id"))
    at_ms: Mapped[int] = mapped_column(sa.BigInteger)
    action: Mapped[str] = mapped_column(sa.String(32))
    source: Mapped[str] = mapped_column(sa.String(32))
    detail: Mapped[str | None] = mapped_column(sa.Text)


class FuturesIncome(Base):
    """One USD-M income row (``GET /fapi/v1/income``): funding fee, commission, realized PnL,
    transfer... as the exchange booked it; ``tran_id`` is Binance's id for it."""

    __tablename__ = "futures_income"
    __table_args__ = (sa.Index(None, "time_ms"), sa.Index(None, "income_type", "time_ms"))

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    tran_id: Mapped[int] = mapped_column(sa.BigInteger, unique=True)
    symbol: Mapped[str] = mapped_column(sa.String(32))        # ledger symbol (UM:BTCUSDT), "" for none
    income_type: Mapped[str] = mapped_column(sa.String(32))
    amount: Mapped[Decimal] = mapped_column(DecimalText)
    asset: Mapped[str] = mapped_column(sa.String(16))
    time_ms: Mapped[int] = mapped_column(sa.BigInteger)
    trade_id: Mapped[str | None] = mapped_column(sa.String(32))
    info: Mapped[str | None] = mapped_column(sa.String(64))
    received_ms: Mapped[int] = mapped_column(sa.BigInteger)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id"))


class IdBlock(Base):
    """A block of client-id sequence numbers of one run, reserved by a commit that is
    fsynced before any of its ids is used (``Store.reserve_id_block``).

    Why: with ``synchronous=FULL`` an order intent then commits without its own fsync (a
    process crash keeps it; only an OS crash or power cut can lose it), and this row is what
    survives such a loss: every id the bot may have sent lies in a reserved block. The next
    start after a run that did not end ``clean`` asks the exchange about each reserved id
    the ledger does not hold and adopts what it finds (``reconcile.id_blocks``).

    ``state``: ``open`` while its run may use it; ``released`` at a clean end (its ids from
    ``used_to + 1`` were never handed out; nothing is asked); ``resolved`` once the next
    start has asked the exchange (``adopted`` orders found). A released or resolved block's
    ids are never handed out again: a run's next block starts after its last one, and a new
    run has a new run tag. No foreign key to ``runs``: ``db archive`` moves old runs out
    while their (tiny) block rows stay behind.
    """

    __tablename__ = "id_blocks"
    __table_args__ = (sa.UniqueConstraint("run_tag", "kind", "first_seq"), sa.Index(None, "state"))

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(sa.Integer)
    run_tag: Mapped[str] = mapped_column(sa.String(14))
    kind: Mapped[str] = mapped_column(sa.String(1))        # "o": order ids
    first_seq: Mapped[int] = mapped_column(sa.BigInteger)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger)
    reserved_ms: Mapped[int] = mapped_column(sa.BigInteger)
    state: Mapped[str] = mapped_column(sa.String(16))      # open | released | resolved
    closed_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    used_to: Mapped[int | None] = mapped_column(sa.BigInteger)  # highest seq handed out (released)
    adopted: Mapped[int | None] = mapped_column(sa.Integer)     # orders found on the exchange (resolved)
