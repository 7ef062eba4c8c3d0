"""``GroupFold.add_slippage_groups`` (the set-based report's slippage, one loop over the
distinct groups) against the per-fill reference: ``_slip`` / ``_slip_key`` /
``Hist.add_exact`` for each group, ``n`` times. Same histogram keys and counts, same count,
and the same exact totals (value and exponent), on generated groups: texts and Decimals,
missing, zero and negative quotes, crossed quotes, counts above one, several places."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.audit.fold import GroupFold, _slip, _slip_key
from executor.core.orders import Side

D = Decimal


def _num(c: int, places: int) -> Decimal:
    return D(c).scaleb(-places)


_price = st.builds(_num, st.integers(1, 10**9), st.integers(0, 8))
_quote = st.one_of(
    st.none(),
    st.just(D(0)),
    st.builds(_num, st.integers(-10**6, 10**9), st.integers(0, 8)),
)
_group = st.tuples(st.booleans(), _price, _quote, _quote, st.integers(1, 5))


def _as_text(x: Decimal | None) -> str | None:
    return None if x is None else str(x)


def _reference(groups: list[tuple]) -> GroupFold:
    g = GroupFold()
    for buy, price, bid, ask, n in groups:
        side = Side.BUY if buy else Side.SELL
        for _ in range(n):
            if bid is not None and ask is not None and bid > 0 and ask > 0:
                mid = _slip(side, price, _mid(bid, ask))
                g.slip_mid.add_exact(_slip_key(mid), mid)
            r = ask if buy else bid
            if r is not None and r > 0:
                touch = _slip(side, price, r)
                g.slip_touch.add_exact(_slip_key(touch), touch)
    return g


def _mid(bid: Decimal, ask: Decimal) -> Decimal:
    from executor.audit.fold import _CTX

    return _CTX.divide(_CTX.add(bid, ask), 2)


def _same(a: object, b: object) -> bool:
    return a == b and (not isinstance(a, Decimal) or a.as_tuple() == b.as_tuple())  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(st.lists(_group, max_size=40), st.booleans())
def test_groups_equal_the_per_fill_reference(groups: list[tuple], texts: bool) -> None:
    ref = _reference(groups)
    fast = GroupFold()
    # Texts as the SQLite path gives them (None for a missing quote), or Decimals (PostgreSQL).
    as_text = [(b, str(p), _as_text(bi), _as_text(a), n) for b, p, bi, a, n in groups]
    rows = as_text if texts else groups
    half = len(rows) // 2
    fast.add_slippage_groups(rows[:half])  # two calls: the totals carry on
    fast.add_slippage_groups(iter(rows[half:]))
    for h_ref, h_fast in ((ref.slip_mid, fast.slip_mid), (ref.slip_touch, fast.slip_touch)):
        assert h_fast.counts == h_ref.counts
        assert h_fast.n == h_ref.n
        assert _same(h_fast.total, h_ref.total), (h_fast.total, h_ref.total)
        assert h_fast.stats(3) == h_ref.stats(3)


_at_touch = st.tuples(st.booleans(), _price, st.sampled_from(["same", "other places", "spread"]),
                      st.integers(1, 5))


@settings(max_examples=300, deadline=None)
@given(st.lists(_at_touch, min_size=1, max_size=30), st.lists(_group, max_size=10), st.booleans())
def test_fills_at_their_touch_equal_the_per_fill_reference(
    at_touch: list[tuple], others: list[tuple], texts: bool
) -> None:
    """Fills whose price is their touch (``add_slippage_groups`` counts those whose texts are
    equal without dividing): the same keys, counts and exact totals as the reference, mixed
    with other groups in any order, and with the equal value written with other places
    (which must take the general path: its zero has another exponent)."""
    groups = []
    for buy, price, how, n in at_touch:
        touch = price
        if how == "other places":  # the price written with one more place than its touch
            price = price.quantize(D(1).scaleb(price.as_tuple().exponent - 1))
        other = touch + (D("0.5") if how == "spread" else D(0)) * (-1 if buy else 1)
        bid, ask = (other, touch) if buy else (touch, other)
        groups.append((buy, price, bid, ask, n))
    groups += others
    groups.sort(key=lambda g: hash((g[0], str(g[1]), g[4])))
    ref = _reference(groups)
    fast = GroupFold()
    fast.add_slippage_groups(
        [(b, str(p), _as_text(bi), _as_text(a), n) for b, p, bi, a, n in groups] if texts else groups
    )
    for h_ref, h_fast in ((ref.slip_mid, fast.slip_mid), (ref.slip_touch, fast.slip_touch)):
        assert h_fast.counts == h_ref.counts
        assert h_fast.n == h_ref.n
        assert _same(h_fast.total, h_ref.total), (h_fast.total, h_ref.total)
