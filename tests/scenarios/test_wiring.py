"""Small wiring checks of ``executor.run.app.Bot`` that need no exchange."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from executor.exchange.credentials import Credentials
from executor.exchange.ratelimit import BanGate
from executor.run.app import Bot
from executor.venue.endpoints import Endpoints
from executor.venue.profiles import Venue
from tests.scenarios.harness import scenario_config


class Watch:
    def __init__(self) -> None:
        self.expected: list[str] = []

    def expect_event(self, client_id: str) -> None:
        self.expected.append(client_id)


def test_no_stall_expectation_while_the_rest_gate_is_closed(tmp_path: Path) -> None:
    ep = Endpoints("sim", "http://x/api", "ws://x/", "ws://x/ws-api/v3", "http://x/fapi", "ws://x/")
    bot = Bot(scenario_config(tmp_path), Venue("sim", ep, ep), Credentials(api_key="k", api_secret="s"))
    watch = Watch()
    bot.user_streams = [watch]
    gate = BanGate()
    bot.gateway = SimpleNamespace(gate=gate)
    bot._expect_stream_event("a")
    assert watch.expected == ["a"]
    # After a 429 every request waits at the gate (up to Retry-After): an order "sent" now
    # leaves only later, so no executionReport can be expected within the stall window.
    gate.trip(60.0, banned=False, source="test")
    bot._expect_stream_event("b")
    assert watch.expected == ["a"]


async def test_cancel_all_ours_cut_short_leaves_no_unawaited_coroutine() -> None:
    import asyncio
    import contextlib
    import gc
    import warnings

    from executor.orders.manager import OrderManager

    listing = asyncio.Event()

    class Gateway:
        async def open_orders(self, symbol: str | None = None) -> list[dict[str, str]]:
            listing.set()
            await asyncio.Event().wait()  # the exchange never answers (a 429 gate, a hung socket)
            return []

    order = SimpleNamespace(client_id="bx-1", cancel_requested=False, unresolved=False)
    tracker = SimpleNamespace(working=lambda: [order])
    manager = OrderManager(gateway=Gateway(), store=None, reconciler=None, tracker=tracker,  # type: ignore[arg-type]
                           risk=None, view=None, rules={}, ids=SimpleNamespace(prefix="bx"),  # type: ignore[arg-type]
                           market=None)  # type: ignore[arg-type]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = asyncio.ensure_future(manager.cancel_all_ours("shutdown"))
        await asyncio.wait_for(listing.wait(), 2)
        task.cancel()  # the shutdown step's timeout
        with contextlib.suppress(asyncio.CancelledError):
            await task
        del task
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0)
    assert not [w for w in caught if "never awaited" in str(w.message)]
