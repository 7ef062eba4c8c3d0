import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor.core.ids import (
    BINANCE_CLIENT_ID_RE,
    ClientId,
    ClientIdFactory,
    IdKind,
    is_ours,
    make_run_tag,
    parse_client_id,
)


def test_ids_are_sequential_distinct_and_parse_back() -> None:
    run = make_run_tag(1785571200000, 12345)
    ids = ClientIdFactory("bx", run)
    first, second, cancel = ids.next_order_id(), ids.next_order_id(), ids.next_cancel_id()
    assert first == f"bx-{run}-o1" and second == f"bx-{run}-o2" and cancel == f"bx-{run}-c1"
    assert parse_client_id(second, "bx") == ClientId("bx", run, IdKind.ORDER, 2)
    assert parse_client_id(cancel) == ClientId("bx", run, IdKind.CANCEL, 1)
    assert str(parse_client_id(cancel)) == cancel


def test_ours_and_external() -> None:
    ours = ClientIdFactory("bx", "abc").next_order_id()
    assert is_ours(ours, "bx")
    assert not is_ours(ours, "other")
    for external in ["6gCrw2kRUAF9CvJDGP16IP", "web_3b1f2c", "bot-20260801-0001", "bx-manual", "bx-abc-o",
                     "bx-abc-x1", "bx-ABC-o1", "", None, 42, "bx-abc-o1 "]:
        assert not is_ours(external, "bx"), external


def test_run_tags_differ_across_runs() -> None:
    assert make_run_tag(1785571200000, 1) != make_run_tag(1785571200000, 2)
    assert make_run_tag(1785571200000, 1) != make_run_tag(1785571200001, 1)
    a = ClientIdFactory("bx", make_run_tag(1785571200000, 7)).next_order_id()
    b = ClientIdFactory("bx", make_run_tag(1785571260000, 7)).next_order_id()
    assert a != b


@pytest.mark.parametrize("prefix", ["", "a-b", "toolongprefix", "bx!", "é"])
def test_bad_prefix_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        ClientIdFactory(prefix, "abc")


def test_bad_run_and_exhausted_sequence() -> None:
    with pytest.raises(ValueError, match="run tag"):
        ClientIdFactory("bx", "ABC")
    with pytest.raises(ValueError, match="run tag"):
        make_run_tag(-1, 0)
    ids = ClientIdFactory("bx", "abc", next_order_seq=9_999_999_999)
    assert ids.next_order_id().endswith("o9999999999")
    with pytest.raises(ValueError, match="sequence"):
        ids.next_order_id()


@given(
    prefix=st.text(alphabet="abcXYZ019_", min_size=1, max_size=8),
    started_ms=st.integers(0, 2**45),  # beyond year 3000
    nonce=st.integers(0, 2**32),
    seq=st.integers(1, 9_999_999_999),
    cancel=st.booleans(),
)
def test_every_id_satisfies_binance_and_round_trips(prefix: str, started_ms: int, nonce: int, seq: int,
                                                     cancel: bool) -> None:
    run = make_run_tag(started_ms, nonce)
    ids = ClientIdFactory(prefix, run, next_order_seq=seq, next_cancel_seq=seq)
    value = ids.next_cancel_id() if cancel else ids.next_order_id()
    assert BINANCE_CLIENT_ID_RE.fullmatch(value)
    parsed = parse_client_id(value, prefix)
    assert parsed == ClientId(prefix, run, IdKind.CANCEL if cancel else IdKind.ORDER, seq)


@given(prefix=st.from_regex(r"[A-Za-z0-9_]{1,8}", fullmatch=True),
       run=st.from_regex(r"[a-z0-9]{1,14}", fullmatch=True), first=st.integers(1, 9_999_999_990))
def test_made_ids_are_exactly_the_client_id_text(prefix: str, run: str, first: int) -> None:
    # The factory joins a per-kind head made once with the sequence (the tick path's form):
    # the same text as ``str(ClientId(...))``, and it parses back to the same id.
    ids = ClientIdFactory(prefix, run, next_order_seq=first, next_cancel_seq=first)
    for seq in range(first, first + 3):
        order, cancel = ids.next_order_id(), ids.next_cancel_id()
        assert order == str(ClientId(prefix, run, IdKind.ORDER, seq))
        assert cancel == str(ClientId(prefix, run, IdKind.CANCEL, seq))
        assert parse_client_id(order, prefix) == ClientId(prefix, run, IdKind.ORDER, seq)
        assert BINANCE_CLIENT_ID_RE.fullmatch(order) and BINANCE_CLIENT_ID_RE.fullmatch(cancel)
