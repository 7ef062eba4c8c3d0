"""Market-stream throughput: bare reader vs python-binance vs our full pipeline.

Run by hand:  .venv/bin/python bench/stream_throughput.py [--frames N] [--repeats R]

A loopback websockets server in a child process (so it does not share the reader's CPU)
blasts pre-generated, pre-encoded combined bookTicker frames as fast as the socket takes
them. Each reader connects, reads exactly N frames, and is timed from its first frame to
its last. Measured, in one run:

  (a) bare     websockets + orjson: recv, loads, touch the payload
  (b) pybinance python-binance 1.0.37 BinanceSocketManager.multiplex_socket (default queue)
  (c) pipeline  executor.exchange.market_stream -> MarketState -> strategy decision callback

Targets (issue 4): (c) >= 0.7 x (a) and (c) >= 4 x (b). Best of R runs is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from executor.exchange.market_stream import book_ticker_stream
from executor.exchange.stream_limits import ConnectionAttemptLimiter
from executor.market import Changes, MarketState, SymbolState
from executor.venue.endpoints import Endpoints, apply_to_socket_manager

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "TRXUSDT"]


# ---------------------------------------------------------------------------------------
# Loopback server (child process)
# ---------------------------------------------------------------------------------------

def _frames(n: int) -> list[bytes]:
    out = []
    for u in range(1, n + 1):
        sym = SYMBOLS[u % len(SYMBOLS)]
        bid = 1000 + (u % 500) / 100
        data = {"u": u, "s": sym, "b": f"{bid:.8f}", "B": f"{(u % 97) / 10 + 0.1:.8f}",
                "a": f"{bid + 0.01:.8f}", "A": f"{(u % 89) / 10 + 0.1:.8f}"}
        out.append(orjson.dumps({"stream": f"{sym.lower()}@bookTicker", "data": data}))
    return out


def _ws_text_frame(payload: bytes) -> bytes:
    """An unmasked server-to-client text frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def _server_main(n: int, conn: Any) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    # Pre-encode everything: the server must be much faster than any reader measured.
    blob = b"".join(_ws_text_frame(f) for f in _frames(n))

    async def handler(ws: ServerConnection) -> None:
        transport = ws.transport
        view = memoryview(blob)
        step = 1 << 18
        try:
            for i in range(0, len(blob), step):
                if transport.is_closing():
                    return  # the reader has its frames and left
                transport.write(view[i:i + step])
                # Respect flow control so the child does not buffer the whole blob per client.
                while transport.get_write_buffer_size() > 2 * step:
                    await asyncio.sleep(0.0005)
        except (RuntimeError, ConnectionError):
            return
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=None) as server:
            conn.send(next(iter(server.sockets)).getsockname()[1])
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop

    asyncio.run(main())


# ---------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------

async def bare_reader(url: str, n: int) -> float:
    from websockets.asyncio.client import connect

    loads = orjson.loads
    async with connect(url, compression=None, max_size=2**20) as ws:
        raw = await ws.recv(decode=False)
        start = time.perf_counter()
        loads(raw)["data"]
        for _ in range(n - 1):
            raw = await ws.recv(decode=False)
            loads(raw)["data"]
        return n / (time.perf_counter() - start)


async def python_binance_reader(base: str, n: int) -> tuple[float, str]:
    from binance import AsyncClient, BinanceSocketManager

    client = AsyncClient()  # no REST call is made; the socket manager only needs its settings
    try:
        bsm = BinanceSocketManager(client)
        apply_to_socket_manager(bsm, _endpoints(base))
        sock = bsm.multiplex_socket([f"{s.lower()}@bookTicker" for s in SYMBOLS])
        got = 0
        async with sock as stream:
            msg = await stream.recv()
            start = time.perf_counter()
            got = 1
            while got < n:
                msg = await stream.recv()
                if msg.get("e") == "error":  # python-binance reports its own death this way
                    elapsed = time.perf_counter() - start
                    return got / elapsed, f"died after {got} frames: {msg.get('type')}"
                got += 1
            return n / (time.perf_counter() - start), "ok"
    finally:
        await client.close_connection()


# ---- Strategy hook --------------------------------------------------------------------
# Stand-in for the real strategy's decision step. To measure the real one, replace
# DECISION_HOOK with a callable that takes (state, changes) and runs the strategy's
# on_book_ticker for each changed symbol, e.g. a thin adapter around
# executor.strategy's loaded strategy object. It must do no I/O.

FAIR = Decimal("1002.50")
BUY_BELOW = FAIR * (1 - Decimal("0.0005"))


def trivial_decision(state: MarketState, changes: Changes) -> int:
    """Compare the touch (as Decimal) with a fixed fair value, as a basis strategy would."""
    intents = 0
    for symbol in changes.books:
        s: SymbolState = state[symbol]
        ask, bid = s.ask, s.bid
        if (ask is not None and ask < BUY_BELOW) or (bid is not None and bid > FAIR):
            intents += 1
    return intents


DECISION_HOOK: Callable[[MarketState, Changes], int] = trivial_decision
# ---------------------------------------------------------------------------------------


async def pipeline_reader(base: str, n: int) -> tuple[float, str]:
    state = MarketState(SYMBOLS)
    decisions = 0
    intents = 0

    async def strategy_loop() -> None:
        nonlocal decisions, intents
        while True:
            changes = await state.wait_changes()
            decisions += len(changes.books)
            intents += DECISION_HOOK(state, changes)

    stream = book_ticker_stream(_endpoints(base), SYMBOLS, state, limiter=ConnectionAttemptLimiter(),
                                stale_after_s=30)
    conn = stream.connections[0]
    loop_task = asyncio.create_task(strategy_loop())
    await stream.start()
    try:
        while conn.health.frames < 1:
            await asyncio.sleep(0.0005)
        start = time.perf_counter()
        first = conn.health.frames
        # Poll cheaply: the reader and the strategy loop do the work, this only watches.
        while conn.health.frames < n:
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - start
        rate = (conn.health.frames - first) / elapsed
        h = conn.health
        note = (f"decisions {decisions}, conflated {h.conflated}, parse errors {h.parse_errors}, "
                f"intents {intents}")
        return rate, note
    finally:
        loop_task.cancel()
        await stream.close()


def _endpoints(base: str) -> Endpoints:
    return Endpoints(name="bench", spot_rest="http://127.0.0.1:1/api", spot_stream=base,
                     spot_ws_api="ws://127.0.0.1:1/ws-api/v3", futures_rest="http://127.0.0.1:1/fapi",
                     futures_stream=base)


async def run(frames: int, repeats: int) -> None:
    parent, child = mp.Pipe()
    # The server sends a little more than any reader takes, so readers never starve at the end.
    server = mp.get_context("spawn").Process(target=_server_main, args=(frames + 1000, child), daemon=True)
    server.start()
    port = parent.recv()
    base = f"ws://127.0.0.1:{port}/"
    url = base + "stream?streams=" + "/".join(f"{s.lower()}@bookTicker" for s in SYMBOLS)
    results: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    notes: dict[str, str] = {}
    try:
        for _ in range(repeats):
            # (a) and (c) run back to back so a paired ratio sees the same machine load.
            results["a"].append(await bare_reader(url, frames))
            rate, notes["c"] = await pipeline_reader(base, frames)
            results["c"].append(rate)
            rate, notes["b"] = await python_binance_reader(base, frames)
            results["b"].append(rate)
    finally:
        parent.send("stop")
        server.join(5)
        if server.is_alive():
            server.terminate()

    best = {k: max(v) for k, v in results.items()}
    med = {k: statistics.median(v) for k, v in results.items()}
    load = os.getloadavg()
    print(f"\nstream_throughput: {frames} combined bookTicker frames per run, {repeats} runs, "
          f"{len(SYMBOLS)} symbols, loopback, python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f}")
    print(f"{'reader':<44} {'best frames/s':>14} {'median':>10}")
    labels = {"a": "(a) bare websockets + orjson",
              "b": "(b) python-binance multiplex_socket",
              "c": "(c) market_stream -> MarketState -> decision"}
    for k, label in labels.items():
        print(f"{label:<44} {best[k]:>14,.0f} {med[k]:>10,.0f}")
    print(f"\n(b) last run: {notes['b']}")
    print(f"(c) last run: {notes['c']}")
    ratio_a = best["c"] / best["a"]
    ratio_b = best["c"] / best["b"]
    paired_a = statistics.median(c / a for a, c in zip(results["a"], results["c"], strict=True))
    paired_b = statistics.median(c / b for b, c in zip(results["b"], results["c"], strict=True))
    verdict_a = "met" if paired_a >= 0.7 else "NOT met"
    verdict_b = "met" if paired_b >= 4 else "NOT met"
    print(f"(c)/(a): median of per-run pairs {paired_a:.2f}, best/best {ratio_a:.2f}  "
          f"(target >= 0.70 on the pairs: {verdict_a})")
    print(f"(c)/(b): median of per-run pairs {paired_b:.2f}, best/best {ratio_b:.2f}  "
          f"(target >= 4.00 on the pairs: {verdict_b})")
    print("On a shared machine the per-run pairs are the fairer figure: (a) and (c) run back to back.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.frames, args.repeats))


if __name__ == "__main__":
    main()
