"""Loading strategies by dotted path, with clear errors; a user's own strategy end to end."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from executor.config import ConfigError, StrategyConfig, load_config
from executor.core.intents import Cancel, Intent, OrderType, Place
from executor.core.orders import Side
from executor.strategy.base import OrderView, Params, Strategy, StrategyContext
from executor.strategy.basis import BasisStrategy
from executor.strategy.loader import load_strategy, resolve_strategy_class
from tests.strategy.fakes import World

D = Decimal


class BuyTheDip(Strategy):
    """A user's minimal strategy: one maker bid ``offset`` below the bid, nothing else."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        p = Params(params)
        self.offset = p.decimal("offset", positive=True)
        self.qty = p.decimal("qty", "0.001", positive=True)
        p.finish()

    def on_book_ticker(self, symbol: str, view: StrategyContext) -> list[Intent]:
        book = view.market(symbol)
        if book is None or book.bid is None or view.open_orders(symbol):
            return []
        price = book.bid - self.offset
        return [Place(symbol, Side.BUY, OrderType.LIMIT_MAKER, self.qty, price,
                      reason=f"bid {book.bid} - offset {self.offset}")]

    def on_order_update(self, order: OrderView) -> list[Intent]:
        if order.filled > 0 and order.working:
            return [Cancel(order.client_id, reason="partly filled: enough")]
        return []


class NotAStrategy:
    pass


def not_a_class() -> None:
    pass


def test_default_config_loads_the_basis_strategy() -> None:
    cfg = load_config(local=None)
    s = load_strategy(cfg.strategy)
    assert isinstance(s, BasisStrategy)
    assert s.entry_bps == D(str(cfg.strategy.params["entry_bps"]))


def test_users_own_strategy_through_the_loader() -> None:
    s = load_strategy(StrategyConfig(path="tests.strategy.test_loader:BuyTheDip", params={"offset": "5"}))
    assert isinstance(s, BuyTheDip)
    w = World()
    s.bind(w.ctx)
    w.book("BTCUSDT", "60000.00", "60000.01")
    (p,) = s.on_book_ticker("BTCUSDT", w.ctx)
    assert isinstance(p, Place)
    assert (p.side, p.wire_type, p.price) == (Side.BUY, OrderType.LIMIT_MAKER, D("59995.00"))
    assert p.qty == D("0.001")
    assert p.reason == "bid 60000.00 - offset 5"
    o = w.order(price="59995", filled="0.0004")
    assert s.on_order_update(o) == [Cancel(o.client_id, reason="partly filled: enough")]
    assert s.on_book_ticker("BTCUSDT", w.ctx) == []  # one working order already
    assert s.on_timer(w.clock()) == [] and s.on_mark_price("BTCUSDT", w.ctx) == []


def test_path_string_with_params() -> None:
    s = load_strategy("tests.strategy.test_loader:BuyTheDip", {"offset": "1", "qty": "0.002"})
    assert isinstance(s, BuyTheDip) and s.qty == D("0.002")


def test_unbound_strategy_says_so() -> None:
    s = load_strategy("tests.strategy.test_loader:BuyTheDip", {"offset": "1"})
    with pytest.raises(RuntimeError, match="not bound"):
        _ = s.ctx


@pytest.mark.parametrize(("path", "message"), [
    ("", 'strategy.path: expected "package.module:ClassName", got \'\''),
    ("executor.strategy.basis.BasisStrategy",
     'did you mean "executor.strategy.basis:BasisStrategy"?'),
    ("executor.strategy.basis:", "expected \"package.module:ClassName\""),
    ("executor strategy:Basis", "expected \"package.module:ClassName\""),
    ("a:b:c", "expected \"package.module:ClassName\""),
    ("no_such_package.mod:Thing", "strategy.path: no module named 'no_such_package.mod'"),
    ("executor.strategy.nope:Thing", "strategy.path: no module named 'executor.strategy.nope'"),
    ("executor.strategy.basis:Nope",
     "strategy.path: module 'executor.strategy.basis' has no attribute 'Nope'"),
    ("tests.strategy.test_loader:NotAStrategy", "is not a subclass of executor.strategy.base.Strategy"),
    ("tests.strategy.test_loader:not_a_class", "is not a subclass of executor.strategy.base.Strategy"),
])
def test_bad_paths_are_config_errors(path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_strategy_class(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_module_that_fails_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_strat.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "needs_missing.py").write_text("import definitely_not_installed_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"'broken_strat' failed to import: RuntimeError: boom at import"):
        resolve_strategy_class("broken_strat:S")
    with pytest.raises(ConfigError, match=r"module 'needs_missing' failed to import: No module named "
                                          r"'definitely_not_installed_xyz'"):
        resolve_strategy_class("needs_missing:S")


@pytest.mark.parametrize(("params", "message"), [
    ({}, "strategy.params.offset: missing"),
    ({"offset": "-1"}, "strategy.params.offset: must be greater than 0, got -1"),
    ({"offset": 1.5}, 'strategy.params.offset: must be a decimal written as a string, e.g. "5", got 1.5'),
    ({"offset": "1", "ofset": "2"}, "strategy.params.ofset: unknown parameter (known: offset, qty)"),
])
def test_bad_params_name_the_key(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_strategy(StrategyConfig("tests.strategy.test_loader:BuyTheDip", params))
    assert str(info.value) == message


class Fragile(Strategy):
    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        if params.get("mode") == "value":
            raise ValueError("mode must be fast or slow")
        if params.get("mode") == "crash":
            raise KeyError("surprise")


def test_constructor_errors_are_reported_not_raised_raw() -> None:
    path = "tests.strategy.test_loader:Fragile"
    with pytest.raises(ConfigError, match=r"^strategy\.params: Fragile refused its parameters: mode must be"):
        load_strategy(path, {"mode": "value"})
    with pytest.raises(ConfigError, match=r"^strategy\.path: Fragile failed to start: KeyError: 'surprise'$"):
        load_strategy(path, {"mode": "crash"})
    assert isinstance(load_strategy(path, {}), Fragile)


def test_basis_params_errors_through_loader() -> None:
    params = dict(load_config(local=None).strategy.params)
    params["order_quote"] = "zero"
    with pytest.raises(ConfigError, match=r"^strategy.params.order_quote: not a decimal number: 'zero'$"):
        load_strategy(StrategyConfig("executor.strategy.basis:BasisStrategy", params))


def test_config_file_with_user_strategy(tmp_path: Path) -> None:
    extra = tmp_path / "mine.toml"
    extra.write_text('[strategy]\npath = "tests.strategy.test_loader:BuyTheDip"\n'
                     '[strategy.params]\noffset = "2"\n')
    s = load_strategy(load_config(extra, local=None).strategy)
    assert isinstance(s, BuyTheDip) and s.offset == D(2)
