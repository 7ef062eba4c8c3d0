"""Balance snapshots: the exchange's REST account compared with the ledger's balances.

Balances are kept from stream events (``BalanceReport``s). A REST snapshot checks
them: every asset whose free or locked differs is a discrepancy, logged as a warning,
and the exchange's value is written (it wins). An asset the ledger last set from an event
*newer* than the snapshot (``event_ms`` > the snapshot's ``update_ms``) is skipped, not
reported: the stream is simply ahead of a snapshot taken a moment earlier.

``compare_snapshot`` is pure; ``take_snapshot`` does the REST read and the ledger write.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from executor.core.money import ZERO
from executor.core.reports import AccountSnapshot, AssetBalance
from executor.persistence.store import BalanceRecord, BalanceRow, Store

__all__ = [
    "BalanceDiscrepancy",
    "SnapshotComparison",
    "SnapshotResult",
    "compare_snapshot",
    "take_snapshot",
]

log = logging.getLogger(__name__)

SNAPSHOT_SOURCE = "rest_snapshot"


class AccountReader(Protocol):
    async def account(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class BalanceDiscrepancy:
    asset: str
    stored_free: Decimal | None  # None: the ledger had no row for the asset
    stored_locked: Decimal | None
    exchange_free: Decimal
    exchange_locked: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "balance", "asset": self.asset,
                "stored_free": self.stored_free, "stored_locked": self.stored_locked,
                "exchange_free": self.exchange_free, "exchange_locked": self.exchange_locked}

    def __str__(self) -> str:
        return (f"{self.asset}: ledger free={self.stored_free} locked={self.stored_locked}, "
                f"exchange free={self.exchange_free} locked={self.exchange_locked}")


@dataclass(frozen=True)
class SnapshotComparison:
    discrepancies: tuple[BalanceDiscrepancy, ...]
    to_write: tuple[BalanceRow, ...]  # the exchange's value for every asset not skipped
    skipped: tuple[str, ...]  # assets the stream has set more recently than the snapshot


def compare_snapshot(stored: Mapping[str, BalanceRecord], snapshot: Iterable[AssetBalance],
                     snapshot_ms: int | None) -> SnapshotComparison:
    """Compare the ledger's balances with a REST snapshot taken at ``snapshot_ms``.

    An asset absent from the snapshot is 0/0 on the exchange (Binance may omit zero
    balances); an asset absent from the ledger is not a discrepancy when it is 0/0. A
    ledger with no balances at all is being opened: nothing is a discrepancy then.
    """
    opening = not stored
    exchange = {b.asset: b for b in snapshot}
    discrepancies: list[BalanceDiscrepancy] = []
    to_write: list[BalanceRow] = []
    skipped: list[str] = []
    for asset in sorted(set(exchange) | set(stored)):
        ex = exchange.get(asset) or AssetBalance(asset, ZERO, ZERO)
        have = stored.get(asset)
        if (have is not None and have.event_ms is not None and snapshot_ms is not None
                and have.event_ms > snapshot_ms):
            skipped.append(asset)
            continue
        if have is None:
            if ex.free == ZERO and ex.locked == ZERO:
                continue
            if not opening:
                discrepancies.append(BalanceDiscrepancy(asset, None, None, ex.free, ex.locked))
        elif have.free != ex.free or have.locked != ex.locked:
            discrepancies.append(BalanceDiscrepancy(asset, have.free, have.locked, ex.free, ex.locked))
        to_write.append(BalanceRow(asset, ex.free, ex.locked))
    return SnapshotComparison(tuple(discrepancies), tuple(to_write), tuple(skipped))


@dataclass
class SnapshotResult:
    snapshot_ms: int | None
    discrepancies: list[BalanceDiscrepancy] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)  # assets whose stored value was wrong
    skipped: list[str] = field(default_factory=list)


async def take_snapshot(store: Store, gateway: AccountReader, *, read: Callable[[Any], AccountSnapshot],
                        before_compare: Callable[[int | None], Awaitable[None]] | None = None,
                        settle: Callable[[int | None], Awaitable[None]] | None = None) -> SnapshotResult:
    """Read the REST account (``read``, the adapter's translation, makes it an
    ``AccountSnapshot``), compare with the ledger, write the exchange's values.

    ``before_compare(snapshot_ms)`` runs between the REST read and the comparison (the
    reconciler applies the events that reached it and happened at or before the
    snapshot's time, so they are not mistaken for discrepancies). If there are
    discrepancies and ``settle`` is given, ``settle(snapshot_ms)`` runs once (events still
    in flight get applied) and the ledger is compared again: only what is still different
    is reported. Events newer than the snapshot are the caller's to keep back until this
    returns (``gapfill``): applied before the write, they would make the comparison skip
    their assets and put their rows before the snapshot's.
    """
    account = read(await gateway.account())
    balances, snapshot_ms = account.balances, account.update_ms
    if before_compare is not None:
        await before_compare(snapshot_ms)
    stored = await store.get_balances()
    cmp = compare_snapshot(stored, balances, snapshot_ms)
    if cmp.discrepancies and settle is not None:
        await settle(snapshot_ms)
        cmp = compare_snapshot(await store.get_balances(), balances, snapshot_ms)
    for d in cmp.discrepancies:
        log.warning("balance discrepancy, exchange value wins: %s", d)
    if cmp.to_write:
        # Not forced: stamped with the snapshot's time, the exchange's value replaces every
        # row set by an older event, while an event newer than the snapshot, applied
        # between the comparison and this write, is not overwritten by the older snapshot.
        ref = account.ref
        await store.set_balances(cmp.to_write, SNAPSHOT_SOURCE, ref, event_ms=snapshot_ms,
                                 kind=SNAPSHOT_SOURCE)
    return SnapshotResult(snapshot_ms, list(cmp.discrepancies), [d.asset for d in cmp.discrepancies],
                          list(cmp.skipped))
