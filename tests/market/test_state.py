"""MarketState: exact values, the sequence rule, conflation, change notification, staleness."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor.exchange.market_stream import MalformedFrame, parse_book_ticker, parse_mark_price
from executor.market import APPLIED, CONFLATED, DROPPED, MarketState
from tests.fixtures import FIXTURES_FILE

FIXTURES = json.loads(FIXTURES_FILE.read_text())
D = Decimal


def _book(state: MarketState, symbol: str, u: int, bid: str = "1", now: float = 0.0) -> int:
    return state.apply_book(symbol, u, D(bid), D("1"), D(bid) + 1, D("1"), now, 1e9 + now)


def test_fixture_book_ticker_parses_to_exact_decimals() -> None:
    state = MarketState()
    args = parse_book_ticker(FIXTURES["bookTicker_combined"]["data"])
    assert state.apply_book(*args, 5.0, 1_700_000_000.0) == APPLIED
    s = state["BNBUSDT"]
    assert (s.bid, s.bid_qty, s.ask, s.ask_qty) == (D("25.35190000"), D("31.21000000"),
                                                     D("25.36520000"), D("40.66000000"))
    assert str(s.bid) == "25.35190000"  # trailing zeros kept: exact wire value
    assert s.update_id == 400900217
    assert (s.book_recv_mono, s.book_recv_wall) == (5.0, 1_700_000_000.0)
    assert s.mid == (D("25.35190000") + D("25.36520000")) / 2


def test_fixture_mark_price_parses_to_exact_decimals() -> None:
    state = MarketState()
    args = parse_mark_price(FIXTURES["markPrice"])
    assert state.apply_mark(*args, 1.0, 2.0) == APPLIED
    s = state["BTCUSDT"]
    assert s.mark == D("11794.15000000") and s.index == D("11784.62659091")
    assert s.estimated_settle == D("11784.25641265") and s.funding_rate == D("0.00038167")
    assert s.next_funding_ms == 1562306400000 and s.mark_event_ms == 1562305380000
    assert s.has_mark and not s.has_book


def test_mark_without_funding_is_accepted() -> None:
    data = dict(FIXTURES["markPrice"], r="", T=0)
    _, _, _, _, _, rate, nxt = parse_mark_price(data)
    assert rate is None and nxt is None


@pytest.mark.parametrize("change", [
    {"b": 25.3519},          # float: exactness already lost
    {"A": None},
    {"u": "400900217"},
    {"u": 1.0},
    {"s": 5},
    {"s": ""},
])
def test_malformed_book_ticker_rejected(change: dict[str, object]) -> None:
    with pytest.raises(MalformedFrame):
        parse_book_ticker({**FIXTURES["bookTicker"], **change})


def test_book_numbers_are_raw_until_read_then_decimal() -> None:
    state = MarketState()
    state.apply_book(*parse_book_ticker(FIXTURES["bookTicker"]), 1.0, 2.0)
    s = state["BNBUSDT"]
    assert s._bid == "25.35190000"  # not parsed by the reader
    assert isinstance(s.bid, Decimal) and isinstance(s._ask_qty, Decimal)  # one read parses all four


@pytest.mark.parametrize("change", [{"b": "NaN"}, {"a": "Infinity"}, {"A": "abc"}, {"B": ""}])
def test_unusable_book_numbers_read_as_missing_and_stale(change: dict[str, str]) -> None:
    state = MarketState()
    state.apply_book(*parse_book_ticker({**FIXTURES["bookTicker"], **change}), 1.0, 2.0)
    s = state["BNBUSDT"]
    assert (s.bid, s.bid_qty, s.ask, s.ask_qty, s.mid) == (None, None, None, None, None)
    assert not s.has_book and s.invalid_books == 1
    assert state.is_stale("BNBUSDT", now=1.0, max_age=5, mark=False)
    # The next good update is used normally.
    state.apply_book(*parse_book_ticker({**FIXTURES["bookTicker"], "u": 400900218}), 1.0, 2.0)
    assert s.bid == D("25.35190000") and not state.is_stale("BNBUSDT", now=1.0, max_age=5, mark=False)


@pytest.mark.parametrize("missing", ["u", "s", "b", "B", "a", "A"])
def test_book_ticker_missing_field_rejected(missing: str) -> None:
    data = {k: v for k, v in FIXTURES["bookTicker"].items() if k != missing}
    with pytest.raises(MalformedFrame, match=missing):
        parse_book_ticker(data)


@pytest.mark.parametrize("change", [{"p": 1.5}, {"E": 1.5}, {"p": "x"}, {"r": "1e"}])
def test_malformed_mark_price_rejected(change: dict[str, object]) -> None:
    with pytest.raises(MalformedFrame):
        parse_mark_price({**FIXTURES["markPrice"], **change})


def test_old_or_duplicate_update_ids_are_dropped() -> None:
    state = MarketState(["BTCUSDT"])
    assert _book(state, "BTCUSDT", 10, "100") == APPLIED
    assert _book(state, "BTCUSDT", 10, "999") == DROPPED
    assert _book(state, "BTCUSDT", 9, "999") == DROPPED
    assert state["BTCUSDT"].bid == D("100") and state.dropped == 2


def test_resync_accepts_a_restarted_sequence_once() -> None:
    state = MarketState()
    _book(state, "BTCUSDT", 1000, "100")
    state.resync(["BTCUSDT"], book=True)
    assert _book(state, "BTCUSDT", 3, "101") != DROPPED
    assert _book(state, "BTCUSDT", 2, "102") == DROPPED
    assert state["BTCUSDT"].bid == D("101")


def test_unconsumed_overwrite_is_conflated_and_counted() -> None:
    state = MarketState()
    assert _book(state, "BTCUSDT", 1) == APPLIED
    assert _book(state, "BTCUSDT", 2) == CONFLATED
    assert _book(state, "ETHUSDT", 1) == APPLIED
    changes = state.take_changes()
    assert changes.books == {"BTCUSDT", "ETHUSDT"} and not changes.marks
    assert _book(state, "BTCUSDT", 3) == APPLIED  # the previous value was seen
    assert state.conflated == 1 and state.book_updates == 4


@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 50), st.booleans()),
                max_size=200))
def test_sequence_rule_and_dirty_sets_hold_for_any_feed(feed: list[tuple[str, int, bool]]) -> None:
    state = MarketState()
    best: dict[str, int] = {}
    unseen: set[str] = set()  # model of the dirty set
    for symbol, u, take in feed:
        result = _book(state, symbol, u)
        if u <= best.get(symbol, -1):
            assert result == DROPPED
        else:
            assert result == (CONFLATED if symbol in unseen else APPLIED)
            best[symbol] = u
            unseen.add(symbol)
        if take:
            assert state.take_changes().books == unseen
            unseen = set()
        assert len(state._dirty_books) <= 3  # bounded by symbols, never by updates
    for symbol, u in best.items():
        assert state[symbol].update_id == u
    assert state.book_updates + state.dropped == len(feed)


async def test_wait_changes_wakes_on_update_and_times_out_empty() -> None:
    state = MarketState()
    assert not await state.wait_changes(timeout=0.01)
    waiter = asyncio.create_task(state.wait_changes(timeout=5))
    await asyncio.sleep(0)
    state.apply_mark("BTCUSDT", 1, D("1"), D("1"), None, None, None, 0.0, 0.0)
    changes = await asyncio.wait_for(waiter, 5)
    assert changes.marks == {"BTCUSDT"} and changes.symbols == {"BTCUSDT"}
    assert not state.pending()


def test_is_stale_needs_fresh_book_and_mark() -> None:
    state = MarketState(["BTCUSDT"])
    assert state.is_stale("BTCUSDT", now=10.0, max_age=5.0)
    assert state.is_stale("NOPE", now=10.0, max_age=5.0)
    _book(state, "BTCUSDT", 1, now=8.0)
    assert state.is_stale("BTCUSDT", now=10.0, max_age=5.0)  # no mark yet
    assert not state.is_stale("BTCUSDT", now=10.0, max_age=5.0, mark=False)
    state.apply_mark("BTCUSDT", 1, D("1"), None, None, None, None, 9.0, 0.0)
    assert not state.is_stale("BTCUSDT", now=10.0, max_age=5.0)
    assert state.is_stale("BTCUSDT", now=13.5, max_age=5.0)  # book is 5.5 s old
    assert not state.is_stale("BTCUSDT", now=13.5, max_age=5.0, book=False)
