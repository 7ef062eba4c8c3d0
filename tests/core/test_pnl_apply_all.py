"""``AverageBook.apply_all`` (the audit report's loop) is ``apply`` move by move: the same
quantity, cost and gross, to the last digit and exponent, on generated moves with flips,
partial closes, zero moves and an opening inventory, at the audit's precision (50 digits)
and at a small one (where every close rounds)."""

from decimal import Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.core.pnl import PREC, AverageBook

D = Decimal

_move = st.tuples(
    st.integers(-500_000, 500_000).map(lambda u: D(u) / 100_000),  # signed qty, zero included
    st.integers(1, 10**9).map(lambda c: D(c) / 10**st_scale(c)),  # price
)


def st_scale(c: int) -> int:
    return 2 + c % 7  # 2 to 8 places, so the exponents differ between moves


def _same(a: Decimal, b: Decimal) -> bool:
    return a == b and a.as_tuple() == b.as_tuple()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_move, max_size=60),
    st.integers(-3, 3).map(lambda u: D(u) / 7),
    st.integers(1, 10**6).map(lambda c: D(c) / 100),
    st.sampled_from([PREC, 6]),
)
def test_apply_all_is_apply_move_by_move(moves: list, open_q: Decimal, open_p: Decimal, prec: int) -> None:
    with localcontext() as ctx:
        ctx.prec = prec
        ref, fast = AverageBook(open_q, open_p), AverageBook(open_q, open_p)
        for dq, price in moves:
            ref.apply(dq, price)
        fast.apply_all(moves)
    for x, y in ((ref.qty, fast.qty), (ref.cost, fast.cost), (ref.gross, fast.gross)):
        assert _same(x, y), (x, y)
