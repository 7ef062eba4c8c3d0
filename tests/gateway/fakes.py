"""Test doubles for the gateway: a manual clock and a scripted python-binance client."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from binance.exceptions import BinanceAPIException


class ManualTime:
    """Time that moves only when the test says; ``sleep`` waits for ``advance``."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start
        self.sleepers: list[float] = []
        self._moved = asyncio.Event()

    def now(self) -> float:
        return self.t

    def now_ms(self) -> float:
        return self.t * 1000.0

    async def sleep(self, seconds: float) -> None:
        target = self.t + max(0.0, seconds)
        self.sleepers.append(target)
        try:
            while self.t < target:
                moved = self._moved
                await moved.wait()
        finally:
            self.sleepers.remove(target)

    def advance(self, seconds: float) -> None:
        self.t += seconds
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Yield to the loop until ``condition`` holds (bounded by ``timeout``)."""
    async def spin() -> None:
        while not condition():
            await asyncio.sleep(0.001)
    await asyncio.wait_for(spin(), timeout)


def api_error(status: int, code: int | None, msg: str = "", headers: dict[str, str] | None = None
              ) -> BinanceAPIException:
    body = json.dumps({"code": code, "msg": msg}) if code is not None else "<html>oops</html>"
    response = SimpleNamespace(headers=headers or {}, text=body)
    return BinanceAPIException(response, status, body)


class ScriptedClient:
    """Stands in for AsyncClient: each method pops the next scripted result.

    A scripted item is either a value to return, an exception to raise, or a callable
    taking the call's kwargs. Calls are recorded as (method, kwargs).
    """

    def __init__(self, server_ms: Callable[[], float]) -> None:
        self.timestamp_offset = 0
        self.response: Any = None
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.scripts: dict[str, deque[Any]] = {}
        self._server_ms = server_ms
        self.response_headers: dict[str, str] = {}

    def script(self, method: str, *items: Any) -> None:
        self.scripts.setdefault(method, deque()).extend(items)

    async def _run(self, method: str, kwargs: dict[str, Any]) -> Any:
        self.calls.append((method, kwargs))
        queue = self.scripts.get(method)
        item = queue.popleft() if queue else {}
        if callable(item) and not isinstance(item, BaseException):
            item = item(kwargs)
        if isinstance(item, BaseException):
            self.response = SimpleNamespace(headers=getattr(getattr(item, "response", None), "headers", {}))
            raise item
        self.response = SimpleNamespace(headers=dict(self.response_headers))
        return item

    def called(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    async def create_order(self, **kw: Any) -> Any:
        return await self._run("create_order", kw)

    async def cancel_order(self, **kw: Any) -> Any:
        return await self._run("cancel_order", kw)

    async def get_order(self, **kw: Any) -> Any:
        return await self._run("get_order", kw)

    async def get_open_orders(self, **kw: Any) -> Any:
        return await self._run("get_open_orders", kw)

    async def get_my_trades(self, **kw: Any) -> Any:
        return await self._run("get_my_trades", kw)

    async def get_account(self, **kw: Any) -> Any:
        return await self._run("get_account", kw)

    async def get_exchange_info(self, **kw: Any) -> Any:
        return await self._run("get_exchange_info", kw)

    async def _get(self, path: str, **kw: Any) -> Any:
        return await self._run("_get:" + path, kw)

    async def get_server_time(self) -> Any:
        self.calls.append(("get_server_time", {}))
        queue = self.scripts.get("get_server_time")
        if queue:
            item = queue.popleft()
            if isinstance(item, BaseException):
                raise item
            return item
        return {"serverTime": int(self._server_ms())}

    async def close_connection(self) -> None:
        pass
