"""A trading bot on the embedded exchange with its web server on a free port, and an HTTP
client for it (``WebBot``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from executor.run.app import Bot
from executor.sim.accounts import DEFAULT_ID
from tests.conftest import SimHandle
from tests.scenarios.harness import SYMBOLS, BotRun, scenario_config

TOKEN = "test-token-0123456789abcdef"


def web_config(tmp_path: Path, web: dict[str, Any] | None = None, **extra: Any) -> Any:
    # A short quote TTL: the basis strategy asks again this soon after a refused order.
    over: dict[str, Any] = {"web": {"enabled": True, "port": 0, "token_file": str(tmp_path / "web-token"),
                                    "update_ms": 200, **(web or {})},
                            "strategy": {"params": {"quote_ttl_s": "0.5"}}, **extra}
    return scenario_config(tmp_path, over)


def exchange_orders(sim: SimHandle) -> int:
    """Orders of our account the exchange has received, all symbols."""
    engine = sim.exchange.engine
    return sum(1 for s in SYMBOLS for o in engine.orders[s] if o.account_id == DEFAULT_ID)


class WebBot:
    def __init__(self, sim: SimHandle, cfg: Any, token: str = TOKEN) -> None:
        self.run = BotRun(sim, cfg)
        self.token = token
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WebBot:
        await self.run.start()
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
        await self.run.close()

    @property
    def bot(self) -> Bot:
        assert self.run.bot is not None
        return self.run.bot

    @property
    def url(self) -> str:
        return str(self.bot.oversight.web.url)

    def auth(self, token: str | None = "default") -> dict[str, str]:
        if token is None:
            return {}
        return {"Authorization": f"Bearer {self.token if token == 'default' else token}"}

    async def get(self, path: str, token: str | None = "default") -> tuple[int, Any, bytes]:
        assert self.session is not None
        async with self.session.get(self.url + path, headers=self.auth(token)) as resp:
            body = await resp.read()
            data = await resp.json(content_type=None) if resp.content_type == "application/json" else None
            return resp.status, data, body

    async def post(self, path: str, token: str | None = "default",
                   content_type: str = "application/json") -> tuple[int, Any, bytes]:
        assert self.session is not None
        headers = {**self.auth(token), "Content-Type": content_type}
        async with self.session.post(self.url + path, headers=headers, data=b"{}") as resp:
            body = await resp.read()
            data = await resp.json(content_type=None) if resp.content_type == "application/json" else None
            return resp.status, data, body


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None
