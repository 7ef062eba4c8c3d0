"""``python run.py record``: public market streams into a recording (``format.py``).

Three kinds of stream, each on its own supervised connection (combined-stream form):

* ``spot_book``: ``<symbol>@bookTicker`` on the spot stream host;
* ``fut_book``: USDⓈ-M ``<symbol>@bookTicker`` on the futures ``/public`` route;
* ``mark``: USDⓈ-M ``<symbol>@markPrice@1s`` on the futures ``/market`` route (mark, index,
  funding rate and next funding time).

No key is needed or sent. Every frame's payload is written with its receive time. A
connection that drops (or cannot connect) is retried with capped backoff, and when it is
back a ``gap`` line records the stream and the time span nothing was received. A stream the
venue does not serve at all (a venue without the futures ``/public`` route) is dropped after
its first refused handshake, with one log line. Memory stays flat: frames go
straight from the socket into the writer's bounded block buffer; a slow disk slows the
reader, and TCP pushes back on the sender.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from executor.config import Config, ConfigError
from executor.replay.format import RecordingError, RecordingWriter

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 15.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class StreamPlan:
    kind: str
    url: str
    optional: bool = False


@dataclass
class RecorderStats:
    frames: dict[str, int] = field(default_factory=dict)
    connects: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    dropped_streams: list[str] = field(default_factory=list)


def plans(spot_stream: str, futures_stream: str, symbols: list[str], kinds: list[str]) -> list[StreamPlan]:
    low = [s.lower() for s in symbols]
    out = []
    if "spot_book" in kinds:
        out.append(
            StreamPlan(
                "spot_book",
                spot_stream.rstrip("/") + "/stream?streams=" + "/".join(f"{s}@bookTicker" for s in low),
            )
        )
    if "fut_book" in kinds:
        out.append(
            StreamPlan(
                "fut_book",
                futures_stream.rstrip("/")
                + "/public/stream?streams="
                + "/".join(f"{s}@bookTicker" for s in low),
                optional=True,
            )
        )
    if "mark" in kinds:
        out.append(
            StreamPlan(
                "mark",
                futures_stream.rstrip("/")
                + "/market/stream?streams="
                + "/".join(f"{s}@markPrice@1s" for s in low),
            )
        )
    return out


class Recorder:
    """Runs the stream connections into one ``RecordingWriter`` until ``stop()``."""

    def __init__(
        self, writer: RecordingWriter, stream_plans: list[StreamPlan], *, clock: Callable[[], int] = _now_ms
    ) -> None:
        self.writer = writer
        self.plans = stream_plans
        self.clock = clock
        self.stats = RecorderStats()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(
        self, duration_s: float | None = None, progress: Callable[[], None] | None = None
    ) -> RecorderStats:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tasks = [
                asyncio.create_task(self._connection(session, p), name=f"record-{p.kind}") for p in self.plans
            ]
            flusher = asyncio.create_task(self._flusher(progress))
            try:
                if duration_s is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), duration_s)
                else:
                    await self._stop.wait()
            finally:
                for task in (*tasks, flusher):
                    task.cancel()
                for task in (*tasks, flusher):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                self.writer.close()
        return self.stats

    async def _flusher(self, progress: Callable[[], None] | None) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.writer.flush()
            if progress is not None:
                progress()

    async def _connection(self, session: aiohttp.ClientSession, plan: StreamPlan) -> None:
        kind = plan.kind
        writer = self.writer
        clock = self.clock
        loads = orjson.loads
        dumps = orjson.dumps
        stats = self.stats
        stats.frames.setdefault(kind, 0)
        lost_from: int | None = None
        reason = ""
        backoff = BACKOFF_START_S
        ever_connected = False
        while True:
            try:
                async with session.ws_connect(plan.url, autoping=True, max_msg_size=1 << 20) as ws:
                    ever_connected = True
                    stats.connects[kind] = stats.connects.get(kind, 0) + 1
                    if lost_from is not None:
                        writer.gap(kind, lost_from, clock(), reason)
                        stats.gaps += 1
                    lost_from = None
                    backoff = BACKOFF_START_S
                    frames = stats.frames
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                                break
                            continue
                        t = clock()
                        try:
                            obj = loads(msg.data)
                            d = obj["data"]
                            sym = d["s"]
                        except (ValueError, KeyError, TypeError):
                            continue  # subscription replies, serverShutdown and the like
                        writer.write(t, kind, sym, dumps(d))
                        frames[kind] += 1
                    lost_from = writer.last_t if writer.lines else clock()
                    reason = f"closed by the server ({ws.close_code})"
            except aiohttp.WSServerHandshakeError as exc:
                if plan.optional and not ever_connected and 400 <= exc.status < 500:
                    log.warning(
                        "%s: %s refused the stream (%s); not recording it",
                        kind,
                        plan.url.split("?")[0],
                        exc.status,
                    )
                    stats.dropped_streams.append(kind)
                    return
                reason = f"handshake refused ({exc.status})"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"[:200]
            if lost_from is None:
                lost_from = clock()
            log.warning("%s: stream lost (%s); reconnecting in %.1f s", kind, reason, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)


def _venue_streams(cfg: Config, args: argparse.Namespace) -> tuple[str, str, str]:
    url = getattr(args, "exchange", None)
    if url:
        from executor.run.app import fetch_sim_venue

        endpoints, _ = asyncio.run(fetch_sim_venue(url))
        return endpoints.spot_stream, endpoints.futures_stream, url
    from executor.venue.profiles import endpoints_for

    profile = getattr(args, "profile", None) or "live"
    if profile == "sim":
        raise ConfigError("record: the embedded exchange needs --exchange URL (start it with `run.py sim`)")
    ep = endpoints_for(profile)
    return ep.spot_stream, ep.futures_stream, ep.spot_stream


def record_command(cfg: Config, args: argparse.Namespace) -> int:
    """Entry point of ``run.py record``."""
    from executor.run.logs import setup_logging

    symbols = [
        s.strip().upper() for s in (args.symbols or ",".join(cfg.symbols.spot)).split(",") if s.strip()
    ]
    if not symbols or not all(s.isalnum() for s in symbols):
        raise ConfigError(f"--symbols: expected e.g. BTCUSDT,ETHUSDT, got {args.symbols!r}")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError("--duration: must be positive")
    spot, futures, source = _venue_streams(cfg, args)
    now = dt.datetime.now(dt.UTC)
    out = Path(args.out) if args.out else Path("data") / "recordings" / f"{now:%Y%m%dT%H%M%S}Z"
    kinds = ["spot_book", "fut_book", "mark"]
    setup = setup_logging(cfg)
    try:
        try:
            writer = RecordingWriter(out, source=source, symbols=symbols, kinds=kinds)
        except (RecordingError, OSError) as exc:
            print(f"record: {exc}", file=sys.stderr)
            return 2
        recorder = Recorder(writer, plans(spot, futures, symbols, kinds))
        progress = _progress(recorder, sys.stderr)
        print(
            f"recording {', '.join(symbols)} from {source} into {out} "
            f"({f'for {args.duration:g} s' if args.duration else 'until Ctrl-C'})",
            file=sys.stderr,
        )
        try:
            asyncio.run(recorder.run(args.duration, progress))
        except KeyboardInterrupt:
            writer.close()
        print(f"\nrecorded {writer.lines} lines ({writer.gaps} gaps) into {out}", file=sys.stderr)
        return 0
    finally:
        setup.close()


def _progress(recorder: Recorder, out: Any) -> Callable[[], None]:
    tty = bool(getattr(out, "isatty", lambda: False)())
    start = time.monotonic()
    state = {"last_print": 0.0, "last_lines": 0, "last_t": start}

    def show() -> None:
        now = time.monotonic()
        if not tty and now - state["last_print"] < 10.0:
            return
        w = recorder.writer
        rate = (w.lines - state["last_lines"]) / max(now - state["last_t"], 1e-9)
        state.update(last_print=now, last_lines=w.lines, last_t=now)
        per_kind = " ".join(f"{k} {n}" for k, n in sorted(recorder.stats.frames.items()))
        text = (
            f"record {now - start:,.0f} s: {w.lines} lines ({per_kind}), {rate:,.0f}/s, "
            f"{w.gaps} gaps, {w.bytes_on_disk() / 1e6:,.1f} MB compressed, "
            f"chunk {w.chunks[-1].file if w.chunks else '-'}"
        )
        out.write(("\r" + text + "\x1b[K") if tty else text + "\n")
        out.flush()

    return show
