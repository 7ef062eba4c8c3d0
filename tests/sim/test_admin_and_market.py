"""The /sim admin routes (ground truth and switches from outside) and the market sources."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from binance.exceptions import BinanceAPIException

from executor.sim.exchange import SimExchange
from executor.sim.market import load_replay

D = Decimal


async def admin(sim: Any, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(
        method, sim.urls.admin + path, json=body
    ) as resp:
        return resp.status, await resp.json()


async def test_state_and_balances(sim: Any) -> None:
    status, state = await admin(sim, "GET", "/state")
    assert status == 200 and state["symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert set(state["books"]["BTCUSDT"]) == {"u", "s", "b", "B", "a", "A"}
    status, bal = await admin(sim, "GET", "/balances")
    assert bal["USDT"] == {"free": "10000.00000000", "locked": "0.00000000"}


async def test_deposit_and_withdraw_publish_balance_events(sim: Any) -> None:
    got: list[dict[str, Any]] = []
    sim.exchange.bus.subscribe("default", "spot", got.append)
    status, bal = await admin(sim, "POST", "/deposit", {"asset": "BTC", "amount": "1.5"})
    assert status == 200 and bal["BTC"]["free"] == "1.60000000"
    assert [e["e"] for e in got] == ["balanceUpdate", "outboundAccountPosition"]
    assert got[0]["a"] == "BTC" and got[0]["d"] == "1.50000000"
    assert got[1]["B"] == [{"a": "BTC", "f": "1.60000000", "l": "0.00000000"}]
    status, bal = await admin(sim, "POST", "/withdraw", {"asset": "BTC", "amount": "0.6"})
    assert status == 200 and bal["BTC"]["free"] == "1.00000000" and got[2]["d"] == "-0.60000000"
    status, err = await admin(sim, "POST", "/withdraw", {"asset": "BTC", "amount": "5"})
    assert status == 400 and "insufficient" in err["error"]
    status, err = await admin(sim, "POST", "/deposit", {"asset": "BTC", "amount": "abc"})
    assert status == 400 and "amount" in err["error"]


async def test_forced_price_fills_a_resting_order_and_shows_in_ground_truth(sim: Any, client: Any) -> None:
    await admin(sim, "POST", "/market", {"symbol": "BTCUSDT", "bid": "60000.00", "ask": "60000.01"})
    order = await client.order_limit_sell(symbol="BTCUSDT", quantity="0.01", price="61000.00")
    status, book = await admin(sim, "POST", "/market", {"symbol": "BTCUSDT", "price": "61500"})
    assert status == 200 and book["b"] == "61500.00000000"
    _, orders = await admin(sim, "GET", "/orders?symbol=BTCUSDT")
    assert [(o["orderId"], o["status"]) for o in orders] == [(order["orderId"], "FILLED")]
    _, trades = await admin(sim, "GET", "/trades")
    assert trades[0]["isMaker"] is True and trades[0]["price"] == "61000.00000000"
    _, bal = await admin(sim, "GET", "/balances")
    assert bal["USDT"]["free"] == "10609.39000000"     # 610 minus the 0.1 % maker fee


async def test_clock_and_fault_switches(sim: Any, client: Any) -> None:
    before = sim.exchange.clock.now_ms()
    status, clock = await admin(sim, "POST", "/clock", {"advance_ms": 3_600_000})
    assert status == 200 and clock["now_ms"] >= before + 3_600_000
    await admin(sim, "POST", "/faults", {"burst_429": 1})
    with pytest.raises(BinanceAPIException) as err:
        await client.get_server_time()
    assert err.value.status_code == 429
    switches = {"order_failures": [{"http_status": 503}], "drop": "market"}
    status, out = await admin(sim, "POST", "/faults", switches)
    assert status == 200 and out["order_failures"] == 1 and out["dropped"] == 0
    status, out = await admin(sim, "POST", "/limits", {"weight_per_minute": 100})
    assert out["weight_per_minute"] == 100 == sim.exchange.ratelimiter.limits.weight_per_minute


def write_replay(path: Path) -> Path:
    lines = [
        {"u": 5, "s": "BTCUSDT", "b": "60000.00", "B": "1.5", "a": "60000.10", "A": "2"},
        {"stream": "ethusdt@bookTicker",
         "data": {"u": 9, "s": "ETHUSDT", "b": "3000.00", "B": "10", "a": "3000.01", "A": "8"}},
        {"t": 1000, "u": 6, "s": "BTCUSDT", "b": "60001.00", "B": "1", "a": "60001.10", "A": "1"},
        {"t": 1500, "u": 7, "s": "DOGEUSDT", "b": "0.1", "B": "1", "a": "0.2", "A": "1"},
    ]
    path.write_text("# recorded\n" + "\n".join(json.dumps(x) for x in lines) + "\n\n")
    return path


def test_replay_file_drives_the_books(tmp_path: Path) -> None:
    file = write_replay(tmp_path / "book.jsonl")
    assert [r["s"] for r in load_replay(file, {"BTCUSDT", "ETHUSDT"})] == ["BTCUSDT", "ETHUSDT", "BTCUSDT"]
    sim = SimExchange.for_tests(market_file=str(file), book_update_hz=0)
    market = sim.market
    assert market.book("BTCUSDT").bid == D("60000.00") and market.book("ETHUSDT").ask == D("3000.01")
    seen: list[tuple[str, int, str]] = []
    market.subscribe(lambda b: seen.append((b.symbol, b.u, b.ticker()["b"])))
    for _ in range(4):
        market.tick()
    u0 = seen[0][1]
    assert [(s, u - u0 if s == "BTCUSDT" else None, b) for s, u, b in seen] == [
        ("BTCUSDT", 0, "60000.00000000"), ("ETHUSDT", None, "3000.00000000"),
        ("BTCUSDT", 1, "60001.00000000"), ("BTCUSDT", 2, "60000.00000000")]   # loops at the end


def test_bad_replay_line_names_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.jsonl"
    file.write_text('{"s":"BTCUSDT","b":"1"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: not a bookTicker line"):
        load_replay(file, {"BTCUSDT"})


def test_synthetic_market_is_seeded_and_well_formed() -> None:
    a, b = SimExchange.for_tests(seed=3).market, SimExchange.for_tests(seed=3).market
    for _ in range(50):
        a.tick()
        b.tick()
    assert a.book("BTCUSDT").ticker() == b.book("BTCUSDT").ticker()
    c = SimExchange.for_tests(seed=4).market
    for _ in range(50):
        c.tick()
    assert c.book("BTCUSDT").ticker() != a.book("BTCUSDT").ticker()
    for book in (a.book("BTCUSDT"), a.book("ETHUSDT")):
        spec = a.specs[book.symbol]
        assert book.ask > book.bid and (book.ask - book.bid) % spec.tick == 0
        assert book.bid_qty >= spec.step and book.ask_qty >= spec.step
        assert abs(book.bid / D(60000 if book.symbol == "BTCUSDT" else 3000) - 1) < D("0.05")


@pytest.mark.sim_options(time_scale=50, balances={"USDT": "5"})
async def test_sim_options_marker_configures_the_fixture(sim: Any) -> None:
    assert sim.exchange.clock.time_scale == 50
    assert sim.exchange.default_account.free("USDT") == D(5)
