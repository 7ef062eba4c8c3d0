"""``python run.py sim``: the embedded exchange as a standalone process.

Builds a ``SimExchange`` + ``SimServer`` from the config's ``[sim]`` table, prints every
URL and the default account's local test credentials, and serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TextIO

from executor.config import Config
from executor.sim.exchange import SimExchange
from executor.sim.server import HOSTS, SimServer, SimUrls


def banner(sim: SimExchange, urls: SimUrls) -> str:
    hmac_key = sim.accounts.key_of("default", "HMAC")
    ed_key = sim.accounts.key_of("default", "Ed25519")
    pem = "\n".join("    " + line for line in ed_key.private_key_pem.strip().splitlines())
    source = f"replay of {sim.settings.market_file}" if sim.settings.market_file else "synthetic random walk"
    lines = [
        f"binance-executor embedded exchange — seed {sim.seed}, time scale {sim.clock.time_scale:g}x, "
        f"market: {source}",
        f"  spot REST        {urls.spot_rest}",
        f"  spot streams     {urls.spot_stream}",
        f"  spot WS API      {urls.spot_ws_api}",
        f"  futures REST     {urls.futures_rest}",
        f"  futures streams  {urls.futures_stream}  (routes /market, /public and /private)",
        f"  admin            {urls.admin}/state",
        f"  symbols          {', '.join(sim.specs)}",
        "Test credentials of account 'default' (local to this sim, not Binance keys):",
        f"  API key (HMAC)     {hmac_key.key}",
        f"  HMAC secret        {hmac_key.secret}",
        f"  API key (Ed25519)  {ed_key.key}",
        "  Ed25519 private key (PEM):",
        pem,
        f"Try: curl {urls.spot_rest}/v3/time",
        "Ctrl-C stops it.",
    ]
    return "\n".join(lines)


async def serve(cfg: Config, out: TextIO | None = None) -> int:
    """Run the exchange until SIGINT/SIGTERM; returns the process exit code."""
    out = out or sys.stdout
    sim = SimExchange.from_config(cfg.sim, symbols=cfg.symbols.spot)
    ports = {name: getattr(cfg.sim.ports, name) for name in HOSTS}
    server = SimServer(sim, host=cfg.sim.host, ports=ports)
    try:
        urls = await server.start()
    except OSError as exc:
        print(f"sim: cannot listen on {cfg.sim.host}: {exc} (choose other --port / [sim.ports], or 0)",
              file=sys.stderr)
        return 2  # README "Exit codes": a configuration problem
    print(banner(sim, urls), file=out, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await server.stop()
    print("sim: stopped", file=out, flush=True)
    return 0
