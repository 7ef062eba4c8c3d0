"""``observe`` (the reconciler's fast path) folds exactly like ``apply(state, Observation(...))``."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.core.orders import Observation, OrderState, OrderStatus, apply, observe

_STATUS_STRINGS = [s.value for s in OrderStatus] + ["PENDING_NEW", "bogus", ""]
statuses = st.one_of(st.sampled_from(list(OrderStatus)), st.sampled_from(_STATUS_STRINGS))
amounts = st.integers(min_value=0, max_value=50).map(lambda n: Decimal(n) / 4)
order_ids = st.one_of(st.none(), st.integers(min_value=1, max_value=3))
observations = st.tuples(statuses, amounts, amounts, order_ids)


def _step_apply(state: OrderState, obs: tuple[object, Decimal, Decimal, int | None]) -> object:
    try:
        return apply(state, Observation(*obs))  # type: ignore[arg-type]
    except Exception as exc:  # the exception type is what is compared
        return type(exc)


def _step_observe(state: OrderState, obs: tuple[object, Decimal, Decimal, int | None]) -> object:
    try:
        return observe(state, *obs)  # type: ignore[arg-type]
    except Exception as exc:
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(st.lists(observations, max_size=12), st.sampled_from(list(OrderStatus)))
def test_observe_folds_like_apply(seq: list[tuple[object, Decimal, Decimal, int | None]],
                                  start: OrderStatus) -> None:
    state_a = state_o = OrderState(status=start)
    for obs in seq:
        new_a = _step_apply(state_a, obs)
        new_o = _step_observe(state_o, obs)
        assert new_a == new_o, obs
        if isinstance(new_a, type):  # both raised the same exception type: state unchanged
            continue
        assert isinstance(new_o, OrderState)
        # apply returns the very same object when nothing moved; observe promises the same.
        assert (new_a is state_a) == (new_o is state_o), obs
        assert type(new_o.status) is OrderStatus
        state_a, state_o = new_a, new_o  # type: ignore[assignment]


def test_local_status_is_refused_like_observation() -> None:
    for status in (OrderStatus.PENDING_SEND, OrderStatus.UNKNOWN, OrderStatus.NOT_PLACED, "nope"):
        try:
            observe(OrderState(), status, Decimal(0), Decimal(0), None)  # type: ignore[arg-type]
        except ValueError:
            continue
        raise AssertionError(f"observe accepted {status!r}")


def test_replay_returns_same_object() -> None:
    s = observe(OrderState(), OrderStatus.FILLED, Decimal("1"), Decimal("10"), 7)
    assert observe(s, OrderStatus.NEW, Decimal("1"), Decimal("10"), 7) is s
    assert observe(s, OrderStatus.NEW, Decimal("1"), Decimal("10"), 7) == OrderState(
        OrderStatus.FILLED, Decimal("1"), Decimal("10"), 7)
