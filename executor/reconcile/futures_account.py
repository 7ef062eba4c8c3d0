"""The USDⓈ-M futures account's reconciliation: the REST account against what the futures
user stream reported.

``FuturesAccountReconciler.note_report`` sees every futures ``AccountReport`` on its way to
the spot/futures reconciler and keeps, per asset and per symbol, the latest wallet balance and
position amount *with the exchange time of the event that set it*. ``gap_fill`` (after every
futures (re)connect, from the periodic jobs and at shutdown) reads the REST account (the
adapter's ``translate`` makes it a ``FuturesAccountSnapshot``), compares, stores the
snapshot as a ``REST_SNAPSHOT`` futures account update, records a reconciliation run with
the differences, and adopts the exchange's values.

The event-time guard is the same rule as spot balances (``reconcile.balances``): a value the
stream set from an event *newer* than the snapshot's own update time for that asset or
position is kept, not overwritten and not reported. The snapshot was simply taken a moment
before that event. The adapter parses money with the strict parser (a float or a malformed
string in the account is an error, never a silently rounded value).

``compare_futures_account`` is pure; the class does the REST read and the ledger writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from executor.core.money import ZERO
from executor.core.reports import AccountReport, FuturesAccountSnapshot

__all__ = ["FuturesAccountReconciler", "FuturesComparison", "Observed", "compare_futures_account"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observed:
    """A value and the exchange time (ms) of the event that set it."""

    value: Decimal
    event_ms: int


@dataclass
class FuturesComparison:
    wallet: dict[str, Observed] = field(default_factory=dict)  # what to keep after the snapshot
    positions: dict[str, Observed] = field(default_factory=dict)
    discrepancies: list[dict[str, Any]] = field(default_factory=list)
    kept_newer: int = 0  # values the stream set after the snapshot: kept


def compare_futures_account(account: FuturesAccountSnapshot, wallet: Mapping[str, Observed],
                            positions: Mapping[str, Observed]) -> FuturesComparison:
    """Merge a REST account into what the stream reported: the newer value wins per asset and
    per symbol (ties go to the exchange's snapshot); a stream value older than the snapshot
    that differs from it is a discrepancy."""
    out = FuturesComparison()
    rest_wallet = {w.asset: Observed(w.wallet_balance, w.update_ms) for w in account.wallets}
    rest_pos = {p.symbol: Observed(p.amount, p.update_ms) for p in account.positions}
    for kind, mine, theirs, dest, key in (("futures_wallet", wallet, rest_wallet, out.wallet, "asset"),
                                          ("futures_position", positions, rest_pos, out.positions, "symbol")):
        dest.update(theirs)
        for name, seen in mine.items():
            snap = theirs.get(name, Observed(ZERO, 0))
            if seen.event_ms > snap.event_ms:
                dest[name] = seen
                out.kept_newer += 1
            elif seen.value != snap.value:
                out.discrepancies.append({"kind": kind, key: name, "stream": str(seen.value),
                                          "exchange": str(snap.value)})
    return out


class FuturesGateway(Protocol):
    async def futures_account(self, client: Any | None = None) -> dict[str, Any]: ...


class FuturesAccountReconciler:
    """The futures side's gap fill (see the module docstring)."""

    def __init__(self, store: Any, gateway: FuturesGateway, client: Any = None, *,
                 translate: Callable[[Any], FuturesAccountSnapshot]) -> None:
        self.store = store
        self.gateway = gateway
        self.translate = translate  # the adapter's: the REST account -> FuturesAccountSnapshot
        self.client = client  # None: the gateway's own client (one key for spot and futures)
        self.wallet: dict[str, Observed] = {}
        self.positions: dict[str, Observed] = {}
        self.snapshots = 0
        self.discrepancies = 0
        self._lock = asyncio.Lock()

    def note_report(self, report: Any) -> None:
        """Keep what an ``AccountReport`` says (any other report is not about the account)."""
        if isinstance(report, AccountReport):
            at = report.event_ms
            for b in report.balances:
                if at >= self.wallet.get(b.asset, Observed(ZERO, -1)).event_ms:
                    self.wallet[b.asset] = Observed(b.wallet_balance, at)
            for p in report.positions:
                if at >= self.positions.get(p.symbol, Observed(ZERO, -1)).event_ms:
                    self.positions[p.symbol] = Observed(p.amount, at)

    async def gap_fill(self, reason: str) -> dict[str, Any]:
        async with self._lock:
            label = reason if reason.startswith("futures_") else f"futures_{reason}"
            recon_id = await self.store.start_reconciliation(label[:64])
            found: list[dict[str, Any]] = []
            error: str | None = None
            try:
                account = self.translate(await self.gateway.futures_account(self.client))
                result = compare_futures_account(account, self.wallet, self.positions)
                found = result.discrepancies
                for d in found:
                    log.warning("futures discrepancy, exchange value wins: %s", d)
                await self._store_snapshot(account, reason)
                self.wallet, self.positions = result.wallet, result.positions
                self.snapshots += 1
                self.discrepancies += len(found)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("futures reconciliation (%s) failed: %s", reason, error)
                raise
            finally:
                await self.store.finish_reconciliation(
                    recon_id, found=len(found), fixed=len(found),
                    counts={"futures_assets": len(self.wallet), "futures_positions": len(self.positions)},
                    discrepancies=found, error=error)
            return {"discrepancies": len(found)}

    async def _store_snapshot(self, account: FuturesAccountSnapshot, reason: str) -> None:
        now_ms = int(time.time() * 1000)
        balances = [{"asset": w.asset, "wallet_balance": w.wallet_balance, "cross_wallet_balance": None,
                     "balance_change": None} for w in sorted(account.wallets, key=lambda w: w.asset)]
        rows = [{"symbol": p.symbol, "amount": p.amount, "entry_price": p.entry_price,
                 "unrealized_pnl": p.unrealized_pnl} for p in account.positions]
        payload = {"source": account.source, "reason": reason, "fetchedMs": now_ms,
                   "assets": list(account.raw_assets), "positions": list(account.raw_open_positions)}
        await self.store.add_futures_update(payload, event_ms=now_ms, reason="REST_SNAPSHOT",
                                            balances=balances, positions=rows)
