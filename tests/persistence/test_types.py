"""Money stays exact through the database; times are integer UTC milliseconds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.persistence.migrate import ensure_schema
from executor.persistence.store import Store
from executor.persistence.types import (
    datetime_from_ms,
    decimal_to_text,
    json_dumps,
    ms_from_datetime,
    to_decimal,
)
from tests.persistence.conftest import url_for

# Wide exponents and long coefficients, signed zeros and trailing zeros included.
crafted = st.tuples(
    st.integers(0, 1),
    st.lists(st.integers(0, 9), min_size=1, max_size=60),
    st.integers(-120, 120),
).map(lambda t: Decimal((t[0], tuple(t[1]), t[2])))
money = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    crafted,
    st.sampled_from(
        [Decimal("0.00100000"), Decimal("-0"), Decimal("0E-8"), Decimal("1E+3"), Decimal("1E-60")]
    ),
)


def same(a: Decimal, b: Decimal) -> bool:
    """Identical, not just equal: sign, digits and exponent."""
    return a.as_tuple() == b.as_tuple()


@given(money)
def test_text_form_round_trips_identically(value: Decimal) -> None:
    text = decimal_to_text(value)
    assert same(Decimal(text), value)
    assert len(text) < 200


def test_text_form_is_plain_for_exchange_values() -> None:
    assert decimal_to_text(Decimal("0.00000001")) == "0.00000001"
    assert decimal_to_text(Decimal("60000.10000000")) == "60000.10000000"
    assert decimal_to_text("12") == "12"
    assert decimal_to_text(Decimal("1E+3")) == "1E+3"


def test_floats_and_non_finite_values_are_refused() -> None:
    with pytest.raises(TypeError, match="float"):
        to_decimal(0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        to_decimal(True)
    with pytest.raises(ValueError, match="finite"):
        to_decimal(Decimal("NaN"))
    with pytest.raises(ValueError, match="finite"):
        to_decimal("Infinity")
    with pytest.raises(ValueError, match="not a decimal"):
        to_decimal("1,5")


def test_json_keeps_decimals_exact() -> None:
    assert json_dumps({"b": Decimal("0.10"), "a": 1}) == '{"a":1,"b":"0.10"}'


def test_ms_conversions() -> None:
    dt = datetime(2026, 11, 25, 1, 2, 3, 456789, tzinfo=UTC)
    ms = ms_from_datetime(dt)
    assert ms % 1000 == 456
    assert datetime_from_ms(ms) == dt.replace(microsecond=456000)
    assert ms_from_datetime(dt.astimezone(timezone(timedelta(hours=5)))) == ms
    with pytest.raises(ValueError, match="naive"):
        ms_from_datetime(datetime(2026, 1, 1))


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = url_for(tmp_path_factory.mktemp("types") / "types.db")
    asyncio.run(ensure_schema(url))
    return url


_counter = iter(range(1, 10**9))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(money, min_size=4, max_size=20))
def test_decimals_round_trip_exactly_through_the_database(migrated_db: str, values: list[Decimal]) -> None:
    async def roundtrip() -> None:
        store = await Store.open(migrated_db, upgrade=False)
        try:
            symbol = f"S{next(_counter)}"
            rows = [(i, values[i % len(values)], values[(i + 1) % len(values)]) for i in range(len(values))]
            async with store.batch() as b:
                for trade_id, price, qty in rows:
                    b.add_fill(symbol, trade_id, price, qty, "stream", quote_qty=qty, commission=price)
            got = {f.trade_id: f for f in await store.fills(symbol=symbol)}
            for trade_id, price, qty in rows:
                f = got[trade_id]
                assert same(f.price, price) and same(f.qty, qty)
                assert same(f.quote_qty, qty) and same(f.commission, price)
            await store.set_balances([(symbol, values[0], values[1])], "rest_snapshot", force=True)
            bal = (await store.get_balances())[symbol]
            assert same(bal.free, values[0]) and same(bal.locked, values[1])
        finally:
            await store.close()

    asyncio.run(roundtrip())


async def test_computed_quote_qty_is_exact(store: Store) -> None:
    price = Decimal("12345678901234567890.123456789")
    qty = Decimal("0.000000001234567890123456789")
    await store.add_fill("X", 1, price, qty, "order_response")
    (fill,) = await store.fills(symbol="X")
    with localcontext() as ctx:
        ctx.prec = 100
        exact = price * qty
    assert fill.quote_qty == exact
    assert price * qty != exact  # the default 28-digit context would have rounded
