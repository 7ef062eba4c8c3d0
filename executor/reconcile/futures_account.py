"""The USDⓈ-M futures account's reconciliation: the REST account against what the futures
user stream reported.

``FuturesAccountReconciler.note_event`` sees every futures user event on its way to the
spot/futures reconciler and keeps, per asset and per symbol, the latest wallet balance and
position amount *with the exchange time of the event that set it*. ``gap_fill`` (after every
futures (re)connect, from the periodic jobs and at shutdown) reads ``GET /fapi/v2/account``,
compares, stores the snapshot as a ``REST_SNAPSHOT`` futures account update, records a
reconciliation run with the differences, and adopts the exchange's values.

The event-time guard is the same rule as spot balances (``reconcile.balances``): a value the
stream set from an event *newer* than the snapshot's own ``updateTime`` for that asset or
position is kept, not overwritten and not reported. The snapshot was simply taken a moment
before that event. Money is parsed with the strict parser (a float or a malformed string in
the account is an error, never a silently rounded value).

``compare_futures_account`` is pure; the class does the REST read and the ledger writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from executor.core.events import FuturesAccountUpdate
from executor.core.money import ZERO, parse_decimal

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


def _time(row: Mapping[str, Any]) -> int:
    raw = row.get("updateTime", 0)
    return int(raw) if isinstance(raw, int | str) and str(raw).lstrip("-").isdigit() else 0


def compare_futures_account(account: Mapping[str, Any], wallet: Mapping[str, Observed],
                            positions: Mapping[str, Observed]) -> FuturesComparison:
    """Merge a REST account into what the stream reported: the newer value wins per asset and
    per symbol (ties go to the exchange's snapshot); a stream value older than the snapshot
    that differs from it is a discrepancy."""
    out = FuturesComparison()
    rest_wallet = {str(a["asset"]): Observed(parse_decimal(a["walletBalance"], "walletBalance"), _time(a))
                   for a in account.get("assets", [])}
    rest_pos = {str(p["symbol"]): Observed(parse_decimal(p["positionAmt"], "positionAmt"), _time(p))
                for p in account.get("positions", [])}
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

    def __init__(self, store: Any, gateway: FuturesGateway, client: Any = None) -> None:
        self.store = store
        self.gateway = gateway
        self.client = client  # None: the gateway's own client (one key for spot and futures)
        self.wallet: dict[str, Observed] = {}
        self.positions: dict[str, Observed] = {}
        self.snapshots = 0
        self.discrepancies = 0
        self._lock = asyncio.Lock()

    def note_event(self, event: Any) -> None:
        if isinstance(event, FuturesAccountUpdate):
            at = event.event_time
            for b in event.balances:
                if at >= self.wallet.get(b.asset, Observed(ZERO, -1)).event_ms:
                    self.wallet[b.asset] = Observed(b.wallet_balance, at)
            for p in event.positions:
                if at >= self.positions.get(p.symbol, Observed(ZERO, -1)).event_ms:
                    self.positions[p.symbol] = Observed(p.amount, at)

    async def gap_fill(self, reason: str) -> dict[str, Any]:
        async with self._lock:
            label = reason if reason.startswith("futures_") else f"futures_{reason}"
            recon_id = await self.store.start_reconciliation(label[:64])
            found: list[dict[str, Any]] = []
            error: str | None = None
            try:
                account = await self.gateway.futures_account(self.client)
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

    async def _store_snapshot(self, account: Mapping[str, Any], reason: str) -> None:
        now_ms = int(time.time() * 1000)
        assets = list(account.get("assets", []))
        positions = list(account.get("positions", []))
        balances = [{"asset": str(a["asset"]),
                     "wallet_balance": parse_decimal(a["walletBalance"], "walletBalance"),
                     "cross_wallet_balance": None, "balance_change": None}
                    for a in sorted(assets, key=lambda a: str(a["asset"]))]
        rows = [{"symbol": str(p["symbol"]), "amount": parse_decimal(p["positionAmt"], "positionAmt"),
                 "entry_price": parse_decimal(p.get("entryPrice", "0"), "entryPrice"),
                 "unrealized_pnl": parse_decimal(p.get("unrealizedProfit", "0"), "unrealizedProfit")}
                for p in positions]
        open_positions = [p for p in positions if parse_decimal(p.get("positionAmt", "0"), "positionAmt")]
        payload = {"source": "GET /fapi/v2/account", "reason": reason, "fetchedMs": now_ms, "assets": assets,
                   "positions": open_positions}
        await self.store.add_futures_update(payload, event_ms=now_ms, reason="REST_SNAPSHOT",
                                            balances=balances, positions=rows)
