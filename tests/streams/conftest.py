"""Helpers for the user-stream tests: a recording consumer and stream builders on the sim."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from executor.exchange.binance_events import Event, ExecutionReport
from executor.exchange.user_stream import SpotUserStream
from executor.exchange.ws_sign import WsSigner


@dataclass
class Recorder:
    """Stands in for the reconciler: records delivered events and gap fills, in order."""

    events: list[Event] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # "event:<type>" / "gap:<reason>"
    gap_reasons: list[str] = field(default_factory=list)
    fail_gap_fills: int = 0
    on_gap: Callable[[str], Any] | None = None

    async def deliver(self, event: Event) -> None:
        self.events.append(event)
        self.log.append(f"event:{type(event).__name__}")

    async def gap_fill(self, reason: str) -> None:
        self.log.append(f"gap:{reason}")
        if self.fail_gap_fills > 0:
            self.fail_gap_fills -= 1
            raise RuntimeError("gap fill failed (test)")
        self.gap_reasons.append(reason)
        if self.on_gap is not None:
            result = self.on_gap(reason)
            if asyncio.iscoroutine(result):
                await result

    def reports(self, client_id: str | None = None) -> list[ExecutionReport]:
        return [e for e in self.events if isinstance(e, ExecutionReport)
                and (client_id is None or e.original_client_id == client_id)]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(loop(), timeout)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def spot_stream(sim: Any, client: Any, recorder: Recorder) -> AsyncIterator[SpotUserStream]:
    stream = SpotUserStream(sim.endpoints.spot_ws_api, WsSigner(client), recorder.deliver, recorder.gap_fill,
                            probe_every_s=0.2, response_timeout_s=1.0, stall_after_s=0.5, limiter=None)
    await stream.start()
    await stream.wait_ready(5)
    try:
        yield stream
    finally:
        await stream.close()


async def market_buy(client: Any, client_id: str, qty: str = "0.001", symbol: str = "BTCUSDT") -> Any:
    return await client.create_order(symbol=symbol, side="BUY", type="MARKET", quantity=qty,
                                     newClientOrderId=client_id)


# The reconciler's migrated-ledger fixtures, for the end-to-end tests with the real Reconciler.
from tests.reconcile.conftest import make_store, template_db  # noqa: E402,F401


@pytest.fixture
def ledger_backend() -> str:
    """The stream tests exercise the streams, not the ledger: SQLite only."""
    return "sqlite"
