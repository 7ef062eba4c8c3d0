"""The embedded exchange's fast paths on the order request (``auth.parse_params`` without
percent-decoding, ``auth.check_timestamp`` in integers, HMAC from cached key pads, the
futures mark/touch cache) give
exactly what the general code gives: compared here with the general code, over many inputs."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from urllib.parse import parse_qsl

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.sim import errors
from executor.sim.auth import (
    check_timestamp,
    check_timestamp_exact,
    hmac_sha256_hex,
    parse_params,
)
from executor.sim.clock import SimClock
from executor.sim.exchange import SimExchange, default_sim_config


def reference_params(query: str, body: str) -> dict[str, str]:
    """``parse_params`` as it was before its fast path: parse_qsl on every part."""
    out: dict[str, str] = {}
    for part in (body, query):
        if not part:
            continue
        seen: set[str] = set()
        for key, value in parse_qsl(part, keep_blank_values=True, strict_parsing=False):
            if key in seen:
                raise errors.duplicate_param()
            seen.add(key)
            out[key] = value
    return out


def outcome(fn: object, *args: object) -> object:
    try:
        return ("ok", fn(*args))  # type: ignore[operator]
    except errors.BinanceError as exc:
        return ("error", exc.code, exc.body()["msg"])


FIELD_CHARS = st.sampled_from([*"ab=&%+2F0z ;.-_", "%2", "%41", "%zz", "%E2%82%AC"])
QUERY = st.lists(FIELD_CHARS, max_size=24).map("".join)


@settings(max_examples=400, deadline=None)
@given(query=QUERY, body=QUERY)
def test_parse_params_matches_parse_qsl(query: str, body: str) -> None:
    assert outcome(parse_params, query, body) == outcome(reference_params, query, body)


def test_parse_params_signed_order_body() -> None:
    body = ("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.0003&price=50000"
            "&newClientOrderId=x-1&recvWindow=5000&timestamp=1700000000000&signature=ab12")
    assert parse_params("", body) == reference_params("", body)
    assert parse_params("symbol=ETHUSDT&a", body + "&&") == reference_params("symbol=ETHUSDT&a", body + "&&")


NOW = 1_700_000_000_000
TIMESTAMPS = st.one_of(
    st.integers(NOW - 70_000, NOW + 3_000).map(str),
    st.integers(NOW * 1000 - 70_000_000, NOW * 1000 + 3_000_000).map(str),  # microseconds
    st.sampled_from(["", "12a", "0", "-1", "1" * 21, "0001700000000000", str(NOW) + ".5"]),
)
RECV_WINDOWS = st.one_of(
    st.none(),
    st.integers(0, 70_000).map(str),
    st.decimals(0, 70_000, places=3).map(str),
    st.sampled_from(["", "5000.1234", "abc", "060000", "60000.001", "1e3"]),
)


@settings(max_examples=600, deadline=None)
@given(ts=TIMESTAMPS, rw=RECV_WINDOWS, scale=st.sampled_from([0.5, 1.0, 2.0, 10.0]),
       now_offset=st.integers(-2_000, 2_000))
def test_check_timestamp_matches_decimal_checks(ts: str, rw: str | None, scale: float,
                                                now_offset: int) -> None:
    params = {"timestamp": ts} if rw is None else {"timestamp": ts, "recvWindow": rw}
    now = NOW + now_offset
    assert outcome(check_timestamp, params, now, scale) == outcome(check_timestamp_exact, params, now, scale)


class _StoppedClock(SimClock):
    """Exchange time that moves only by ``advance``: a real clock's millisecond may tick
    between two reads and make a fresh touch where the test expects the cached one."""

    def _now_float(self) -> float:
        return self._origin_ms


def test_futures_touch_is_recomputed_when_its_inputs_change() -> None:
    """The mark/touch cache: the same object within one exchange millisecond and book, a new
    one when the time, the spot index or a pinned basis changes."""
    sim = SimExchange(default_sim_config(book_update_hz=Decimal(0)), symbols=("BTCUSDT",),
                      clock=_StoppedClock(start_ms=NOW))
    market = sim.futures.market
    first = market.touch("BTCUSDT")
    assert first is not None and market.touch("BTCUSDT") is first
    sim.clock.advance(1500)
    later = market.touch("BTCUSDT")
    assert later is not None and later.time_ms == first.time_ms + 1500
    market.set_basis("BTCUSDT", Decimal("0.01"))
    pinned = market.state("BTCUSDT")
    assert pinned is not None
    assert pinned.mark == (pinned.index * Decimal("1.01")).quantize(Decimal("0.01"))
    market.set_basis("BTCUSDT", Decimal("-0.01"))
    lowered = market.state("BTCUSDT")
    assert lowered is not None and lowered.mark < pinned.mark


@settings(max_examples=300, deadline=None)
@given(secret=st.text(max_size=100), data=st.binary(max_size=300))
def test_hmac_matches_the_standard_library(secret: str, data: bytes) -> None:
    expected = hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
    assert hmac_sha256_hex(secret, data) == expected
    assert hmac_sha256_hex(secret, data) == expected  # from the cached pads
