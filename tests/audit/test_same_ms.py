"""``audit verify`` within one exchange millisecond: a balance observed between deltas of the
same millisecond is explained whatever order the exchange applied them in."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from executor.audit.verify import _Asset

amounts = st.lists(st.decimals("-1000", "1000", places=3).filter(lambda d: d != 0), min_size=1, max_size=8)


@given(deltas=amounts, data=st.data())
def test_every_order_within_a_millisecond_is_explained(deltas: list[Decimal], data: st.DataObject) -> None:
    asset = _Asset(Decimal("5000"), None)
    for d in deltas:
        asset.add(d, 42)
    order = data.draw(st.permutations(deltas))
    k = data.draw(st.integers(0, len(order)))
    assert asset.explains(Decimal("5000") + sum(order[:k], Decimal(0)), 42)
    assert asset.explains(asset.total, 43)


@given(deltas=amounts)
def test_a_total_no_order_reaches_is_not_explained(deltas: list[Decimal]) -> None:
    asset = _Asset(Decimal("5000"), None)
    for d in deltas:
        asset.add(d, 42)
    beyond = Decimal("5000") + sum(abs(d) for d in deltas) + 1
    assert not asset.explains(beyond, 42)
    assert not asset.explains(Decimal("5000"), 43) or asset.total == Decimal("5000")
