"""The README's "Writing a strategy" example, verbatim, works through the loader.

Keep ``EXAMPLE`` identical to the README snippet: this test is what keeps it true.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest

from executor.core.intents import Cancel, OrderType, Place
from executor.core.orders import Side
from executor.strategy.loader import load_strategy
from tests.strategy.fakes import World

D = Decimal

EXAMPLE = '''\
# my_strategies/dip.py
from executor.core.intents import Cancel, OrderType, Place
from executor.core.orders import Side
from executor.strategy.base import Params, Strategy


class BuyTheDip(Strategy):
    """Keep one post-only bid `offset` below the best bid; cancel it after `ttl_s` seconds."""

    def __init__(self, params):
        super().__init__(params)
        p = Params(params)
        self.offset = p.decimal("offset", positive=True)      # quote currency, e.g. "25"
        self.qty = p.decimal("qty", "0.001", positive=True)
        self.ttl_s = float(p.decimal("ttl_s", "10", positive=True))
        p.finish()                                             # a misspelt key is an error

    def on_book_ticker(self, symbol, view):
        book = view.market(symbol)
        if book is None or book.bid is None or view.is_stale(symbol, mark=False):
            return []
        if view.open_orders(symbol, Side.BUY):                 # one bid at a time
            return []
        price = book.bid - self.offset
        return [Place(symbol, Side.BUY, OrderType.LIMIT_MAKER, self.qty, price,
                      reason=f"bid {book.bid} - offset {self.offset}")]

    def on_timer(self, now):
        return [Cancel(o.client_id, reason=f"older than {self.ttl_s} s")
                for o in self.ctx.open_orders()
                if o.age(now) > self.ttl_s and not o.cancel_requested]
'''


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "my_strategies"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "dip.py").write_text(EXAMPLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        check_example()
    finally:  # forget the module, so nothing else imports a file from a deleted tmp folder
        for name in ("my_strategies.dip", "my_strategies"):
            sys.modules.pop(name, None)


def check_example() -> None:
    s = load_strategy("my_strategies.dip:BuyTheDip", {"offset": "25", "qty": "0.001"})
    w = World()
    s.bind(w.ctx)
    assert s.on_book_ticker("BTCUSDT", w.ctx) == []  # no book yet
    w.book("BTCUSDT", "60000.00", "60000.01")
    (p,) = s.on_book_ticker("BTCUSDT", w.ctx)
    assert isinstance(p, Place)
    assert (p.side, p.wire_type, p.price) == (Side.BUY, OrderType.LIMIT_MAKER, D("59975.00"))
    assert p.qty == D("0.001")
    assert p.reason == "bid 60000.00 - offset 25"
    o = w.order(price="59975", age=0)
    assert s.on_book_ticker("BTCUSDT", w.ctx) == []
    w.clock.advance(11)
    assert s.on_timer(w.clock()) == [Cancel(o.client_id, reason="older than 10.0 s")]
