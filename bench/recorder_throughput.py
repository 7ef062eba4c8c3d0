"""Recorder throughput and memory: ``executor.replay.recorder.Recorder`` writing gzip chunks
from a local WebSocket server that sends combined-stream bookTicker and markPrice frames as
fast as the recorder takes them. Target: ≥ 20,000 frames/s with flat memory.

Run from the repository root::

    .venv/bin/python bench/recorder_throughput.py [--seconds 120] [--symbols 4]

The frame server runs in a child process (so its CPU is not the recorder's); it sends
pre-built ``{"stream","data"}`` frames (bookTicker payloads with a rising ``u`` and varying
prices, like Binance's) on ``/stream`` and markPriceUpdate frames on ``/market/stream``,
each connection in a tight loop with TCP back-pressure as the only brake. The recorder is
the real one (``plans`` → two supervised connections → ``RecordingWriter``), recording to
a temporary folder. Every second the bench samples the recorder process's RSS (psutil);
it reports frames/s over the run, RSS after the first 10 s and at the end, and the
compressed size per frame.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing as mp
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port: int, symbols: list[str]) -> None:
    """The frame server (child process)."""
    from aiohttp import web

    rng = random.Random(1)
    books = []
    for i in range(4096):
        sym = symbols[i % len(symbols)]
        bid = 60000 + rng.randrange(-500, 500) / 100
        bq, aq = rng.uniform(0.1, 3), rng.uniform(0.1, 3)
        books.append(
            f'{{"stream":"{sym.lower()}@bookTicker","data":{{"u":{4_000_000_000 + i},"s":"{sym}",'
            f'"b":"{bid:.2f}","B":"{bq:.5f}","a":"{bid + 0.01:.2f}","A":"{aq:.5f}"}}}}'
        )
    marks = [
        f'{{"stream":"{s.lower()}@markPrice@1s","data":{{"e":"markPriceUpdate","E":{1796601600000 + i},'
        f'"s":"{s}","p":"60010.12000000","i":"60000.10000000","P":"60000.10000000","r":"0.00010000",'
        f'"T":1796630400000}}}}'
        for i, s in enumerate(symbols * 64)
    ]

    async def blast(request: web.Request, frames: list[str]) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        n = 0
        try:
            while True:
                await ws.send_str(frames[n % len(frames)])
                n += 1
        except (ConnectionError, RuntimeError):
            pass
        return ws

    async def spot(request: web.Request) -> web.WebSocketResponse:
        return await blast(request, books)

    async def market(request: web.Request) -> web.WebSocketResponse:
        return await blast(request, marks)

    app = web.Application()
    app.router.add_get("/stream", spot)
    app.router.add_get("/market/stream", market)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


async def main() -> None:
    import psutil

    from executor.replay.format import RecordingWriter, read_lines
    from executor.replay.recorder import Recorder, plans

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--symbols", type=int, default=4)
    ap.add_argument("--keep", type=Path, help="keep the recording here")
    args = ap.parse_args()
    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT"][: args.symbols]
    port = _free_port()
    child = mp.get_context("spawn").Process(target=serve, args=(port, symbols), daemon=True)
    child.start()
    base = f"ws://127.0.0.1:{port}/"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bx-rec-bench-")) / "rec"
    writer = RecordingWriter(folder, source=base, symbols=symbols, kinds=["spot_book", "mark"])
    recorder = Recorder(writer, [p for p in plans(base, base, symbols, ["spot_book", "mark"])])
    proc = psutil.Process(os.getpid())
    samples: list[tuple[float, int, int]] = []
    start = time.monotonic()
    cpu0 = time.process_time()

    def progress() -> None:
        samples.append((time.monotonic() - start, writer.lines, proc.memory_info().rss))

    load = os.getloadavg()
    await recorder.run(args.seconds, progress)
    wall = time.monotonic() - start
    cpu = time.process_time() - cpu0
    child.terminate()
    child.join(5)
    lines = writer.lines
    size = writer.bytes_on_disk()
    after_warm = [s for s in samples if s[0] >= 10.0] or samples
    rss = [s[2] for s in after_warm]
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(samples) if b[0] > a[0]]
    t = time.monotonic()
    readable = sum(1 for _ in read_lines(folder))
    print(
        f"recorded {lines:,} frames in {wall:.1f} s: {lines / wall:,.0f} frames/s "
        f"(per-second min {min(rates):,.0f}, max {max(rates):,.0f}); recorder CPU {cpu:.1f} s "
        f"({cpu / lines * 1e6:.1f} µs/frame); {len(writer.chunks)} chunk(s), {size / 1e6:.1f} MB gzip = "
        f"{size / lines:.1f} B/frame (raw {writer.bytes_raw / lines:.0f} B/frame); "
        f"RSS after 10 s {min(rss) / 1e6:.1f} MB, max {max(rss) / 1e6:.1f} MB, end {rss[-1] / 1e6:.1f} MB; "
        f"read back {readable:,} lines in {time.monotonic() - t:.1f} s; load average before {load[0]:.2f}, "
        f"after {os.getloadavg()[0]:.2f}"
    )
    if args.keep is None:
        shutil.rmtree(folder.parent, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
