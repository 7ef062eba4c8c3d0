"""Start-up resolution of client-id blocks an earlier run left open (``models.IdBlock``).

Why: under ``synchronous=FULL`` an order intent commits without its own fsync, so an OS
crash or power cut can lose the record of an order that was sent (``persistence.store``).
Every id such an order can carry lies in a block reserved by an fsynced commit. A block is
still ``open`` at the next start only if its run did not end ``clean`` (a clean end
releases its blocks, and is itself fsynced after every intent). For those blocks, before
this run trades:

1. the candidate ids: every seq of the block (``used_to`` is unknown after a crash) whose
   id the ledger holds no order row for;
2. the exchange is asked once per venue and symbol where it can list orders
   (``VenueOrders.list_since``: spot and USD-M ``allOrders`` from the earliest block's
   reservation time, less ``CLOCK_MARGIN_MS`` for the exchange's clock), else per candidate
   id and symbol (``VenueOrders.get``, for a venue that cannot list: up to a block's 64 ids
   per symbol);
3. each order found with a candidate id is adopted (the reconciler's adoption path: a row
   for it with the exchange's status, ``resolved_from_unknown`` semantics as any adopted
   order), and its fills fetched (spot: the targeted gap fill of the order; futures: the
   futures gap fill that follows at start reads userTrades from the last stored trade);
4. the blocks are marked ``resolved`` (fsynced), with how many orders were adopted; the
   candidate ids not found stay unused for ever (a new run has a new run tag, and a run's
   next block starts after its last).

Never does anything here send an order: an id found is adopted, an id not found is released.
A failure to ask leaves the blocks open (the next start asks again) and is raised: the bot
does not trade on a ledger that may be missing orders.

Raw exchange rows go through the venue adapter's translator (``VenueOrders.translate``),
like everything in this room.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from executor.core.ids import ClientId, IdKind
from executor.core.reports import OrderStatusReport
from executor.reconcile.gapfill import fill_missing_for_orders

__all__ = ["CLOCK_MARGIN_MS", "BlockResolution", "VenueOrders", "candidate_ids", "resolve_open_blocks"]

log = logging.getLogger(__name__)

# The exchange's order times may run behind our reservation time by the clock offset.
CLOCK_MARGIN_MS = 300_000


@dataclass(frozen=True)
class VenueOrders:
    """How to ask one venue about our orders (the wiring supplies the gateway's calls)."""

    name: str
    symbols: tuple[str, ...]  # as the venue's calls take them
    translate: Callable[[Any], OrderStatusReport]
    get: Callable[[str, str], Awaitable[Any | None]]  # (symbol, client id) -> row or None
    list_since: Callable[[str, int], Awaitable[list[Any]]] | None = None  # (symbol, since ms) -> rows
    fetch_fills: bool = True  # fetch the fills of an adopted order now (spot); else a later gap fill


@dataclass
class BlockResolution:
    blocks: int = 0
    candidates: int = 0
    adopted: list[str] = field(default_factory=list)
    queries: int = 0


def candidate_ids(prefix: str, blocks: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every order id of ``blocks`` -> its block row."""
    out: dict[str, dict[str, Any]] = {}
    for b in blocks:
        kind = IdKind(b["kind"])
        for seq in range(int(b["first_seq"]), int(b["last_seq"]) + 1):
            out[str(ClientId(prefix, b["run_tag"], kind, seq))] = b
    return out


async def resolve_open_blocks(store: Any, reconciler: Any, venues: Iterable[VenueOrders], *,
                              prefix: str, current_run_id: int | None) -> BlockResolution:
    """Resolve every open block of an earlier run (see the module docstring)."""
    result = BlockResolution()
    blocks = [b for b in await store.id_blocks(state="open") if b["run_id"] != current_run_id]
    if not blocks:
        return result
    result.blocks = len(blocks)
    ids = candidate_ids(prefix, blocks)
    recorded = await store.recorded_client_ids(list(ids))
    missing = {cid for cid in ids if cid not in recorded}
    result.candidates = len(missing)
    log.warning("%d client-id block(s) of earlier runs were left open (the run did not end clean): "
                "asking the exchange about %d reserved id(s) the ledger does not hold",
                len(blocks), len(missing))
    adopted: dict[str, int] = {}
    if missing:
        since = min(int(b["reserved_ms"]) for b in blocks) - CLOCK_MARGIN_MS
        for venue in venues:
            found = await _ask(venue, missing, since, result)
            if not found:
                continue
            await reconciler.apply_order_snapshots(found, source="gap_fill")
            for rep in found:
                log.warning("order %s (%s %s) is on the exchange but its record was lost: adopted, "
                            "not sent again", rep.client_order_id, venue.name, rep.symbol)
                result.adopted.append(rep.client_order_id)
                missing.discard(rep.client_order_id)
                bid = ids[rep.client_order_id]["id"]
                adopted[bid] = adopted.get(bid, 0) + 1
            if venue.fetch_fills:
                suspects = {(rep.symbol, rep.order_id): (rep.client_order_id, rep.executed_qty)
                            for rep in found if rep.executed_qty > Decimal(0)}
                if suspects:
                    await fill_missing_for_orders(reconciler, suspects, reason="id blocks")
    for b in blocks:
        await store.close_id_blocks([b["id"]], adopted=adopted.get(b["id"], 0))
    log.info("id blocks resolved: %d block(s), %d id(s) unrecorded, %d order(s) adopted, %d query(ies)",
             result.blocks, result.candidates, len(result.adopted), result.queries)
    return result


async def _ask(venue: VenueOrders, missing: set[str], since_ms: int,
               result: BlockResolution) -> list[OrderStatusReport]:
    found: dict[str, OrderStatusReport] = {}
    for symbol in venue.symbols:
        if venue.list_since is not None:
            rows = await venue.list_since(symbol, since_ms)
            result.queries += 1
            for row in rows:
                rep = venue.translate(row)
                if rep.client_order_id in missing:
                    found[rep.client_order_id] = rep
            continue
        for cid in sorted(missing):
            if cid in found:
                continue
            row = await venue.get(symbol, cid)
            result.queries += 1
            if row is not None:
                found[cid] = venue.translate(row)
    return list(found.values())
