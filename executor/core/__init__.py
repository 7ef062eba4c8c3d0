"""The pure domain core: no I/O, no sockets, no asyncio, no database.

Modules, each owning one idea:

* ``money``   — strict Decimal parsing of wire values, exponent-free formatting;
* ``filters`` — ``SymbolRules`` from exchangeInfo: rounding and "Filter failure" checks;
* ``ids``     — our client order ids and cancel ids, and recognising them;
* ``orders``  — ``Side``, ``OrderStatus`` and the monotonic order state machine;
* ``reports`` — venue-neutral order, fill, balance and position reports (what the
  exchange adapters hand the reconciler; Binance's own shapes stay in ``executor/exchange``);
* ``ledger``  — balance deltas of fills, per-asset totals, fill-gap detection;
* ``pnl``     — realized PnL by FIFO and by average cost, slippage in bps;
* ``intents`` — what strategies return, and the validated ``OrderRequest``.

Import from the submodules (``from executor.core.reports import FillReport``); this
package re-exports nothing so that each dependency stays visible at the import site.
"""
