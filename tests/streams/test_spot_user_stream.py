"""The supervised spot user stream over the WS API, against the embedded exchange."""

from __future__ import annotations

from typing import Any

from executor.core.events import AccountPosition
from executor.exchange.user_stream import SpotUserStream
from tests.streams.conftest import Recorder, market_buy, wait_until


async def test_receives_execution_reports_and_positions(spot_stream: SpotUserStream, client: Any,
                                                         recorder: Recorder) -> None:
    await wait_until(lambda: recorder.gap_reasons == ["start"])
    await market_buy(client, "t-1")
    await wait_until(lambda: any(r.status == "FILLED" for r in recorder.reports("t-1")))
    await wait_until(lambda: any(isinstance(e, AccountPosition) for e in recorder.events))
    assert spot_stream.health.subscribes == 1
    assert spot_stream.subscription_id is not None
