"""USDⓈ-M futures ground truth: wallets, positions, listenKeys and funding settlement.

``FuturesSide`` is attached to every ``SimExchange`` as ``sim.futures`` by ``attach`` (called
from ``SimExchange.__init__``; idempotent), so the spot core needs no futures knowledge.
It owns the futures wallet balances and positions per account (exact Decimal), the
listenKey registry (60 minutes of exchange time per POST/PUT, -1125 once lapsed), and
publishes ACCOUNT_UPDATE on the bus's "futures" channel for funding settlements and admin
transfers. ``fill`` books a futures trade (ORDER_TRADE_UPDATE + ACCOUNT_UPDATE) for tests;
there is no futures order book. ``tick`` (driven by the futures stream host) notices lapsed
keys, crossed funding times and accounts to liquidate.

Liquidation (cross margin, one-way mode; isolated margin is accounted as cross): an account
whose margin balance (wallet + unrealized PnL at the mark) is below its maintenance margin
(``executor.core.liquidation``: the first bracket of Binance's documented leverageBracket,
maintMarginRatio 0.0065, for every notional) has its open futures orders expired (``er`` 5)
and then, worst unrealized PnL first, each position closed at the mark by an exchange order
(``clientOrderId`` "autoclose-<ms><seq>", LIMIT IOC at the mark, as Binance's forceOrders
shows them), until it is healthy again: ORDER_TRADE_UPDATE x NEW, then x CALCULATED / X FILLED,
then ACCOUNT_UPDATE m ORDER; the fill books realized PnL and the taker commission like any
trade (no insurance-fund clearance fee). positionRisk serves the liquidation price of the
same formula.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from executor.core.liquidation import FIRST_BRACKET, Bracket, PositionRisk, is_liquidatable
from executor.core.liquidation import liquidation_price as _liquidation_price
from executor.core.liquidation import maintenance_margin as _maintenance_margin
from executor.core.money import format_decimal
from executor.sim.futures_market import FuturesMarket, MarkState

if TYPE_CHECKING:
    from executor.sim.futures_orders import FuturesOrders

LISTEN_KEY_VALIDITY_MS = 60 * 60 * 1000
MAKER_FEE = Decimal("0.0002")
TAKER_FEE = Decimal("0.0004")
ZERO = Decimal(0)
_Q8 = Decimal("0.00000001")
Event = dict[str, Any]


def _d8(x: Decimal) -> str:
    return f"{x.quantize(_Q8):.8f}"


def _fixed(x: Decimal, places: int) -> str:
    """``x`` with the symbol's display precision (Binance writes "0.010", "60100.00"), widened
    rather than rounded if ``x`` has more digits; never exponent notation."""
    exponent = x.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        return format_decimal(x)
    return f"{x:.{places}f}"


d8 = _d8              # public names for the futures order engine
fixed = _fixed
QTY_PLACES = 3      # exchangeInfo quantityPrecision
PRICE_PLACES = 2    # exchangeInfo pricePrecision


@dataclass
class FuturesPosition:
    symbol: str
    amount: Decimal = ZERO
    entry_price: Decimal = ZERO
    realized: Decimal = ZERO

    def row(self, mark: Decimal | None) -> dict[str, str]:
        """The ``P[]`` element of ACCOUNT_UPDATE."""
        unrealized = (mark - self.entry_price) * self.amount if mark is not None and self.amount else ZERO
        return {"s": self.symbol, "pa": format_decimal(self.amount),
                "ep": format_decimal(self.entry_price), "bep": format_decimal(self.entry_price),
                "cr": _d8(self.realized), "up": _d8(unrealized),
                "mt": "cross", "iw": "0", "ps": "BOTH"}


@dataclass
class FuturesWallet:
    account_id: str
    balances: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, FuturesPosition] = field(default_factory=dict)
    update_time: int = 0

    def balance(self, asset: str) -> Decimal:
        return self.balances.get(asset, ZERO)


@dataclass
class _Key:
    key: str
    account_id: str
    expires_ms: int
    expired: bool = False


class ListenKeys:
    """Futures listenKeys: one active key per account, valid 60 exchange-minutes from the
    last POST/PUT. A lapsed key stays known as expired so PUT answers -1125."""

    def __init__(self, now_ms: Callable[[], int], seed: int = 0) -> None:
        self._now_ms = now_ms
        self._seed = seed
        self._counter = itertools.count(1)
        self._keys: dict[str, _Key] = {}
        self._active: dict[str, str] = {}          # account -> key
        self._on_expired: dict[str, list[Callable[[str], None]]] = {}
        self._on_closed: dict[str, list[Callable[[str], None]]] = {}

    def _new_key(self, account_id: str) -> str:
        raw = hashlib.sha256(f"sim-listenkey|{self._seed}|{account_id}|{next(self._counter)}".encode())
        return raw.hexdigest()

    def create_or_extend(self, account_id: str) -> str:
        """POST: return the account's active key extended by 60 minutes, or a new one."""
        self.sweep()
        now = self._now_ms()
        key = self._active.get(account_id)
        if key is not None:
            self._keys[key].expires_ms = now + LISTEN_KEY_VALIDITY_MS
            return key
        key = self._new_key(account_id)
        self._keys[key] = _Key(key, account_id, now + LISTEN_KEY_VALIDITY_MS)
        self._active[account_id] = key
        return key

    def keepalive(self, key: str, account_id: str | None = None) -> bool:
        """PUT: extend by 60 minutes; False if the key is unknown, expired or not the caller's."""
        self.sweep()
        entry = self._keys.get(key)
        if entry is None or entry.expired or (account_id is not None and entry.account_id != account_id):
            return False
        entry.expires_ms = self._now_ms() + LISTEN_KEY_VALIDITY_MS
        return True

    def close(self, key: str) -> bool:
        """DELETE: end the stream. Sockets on it are closed; no listenKeyExpired is sent."""
        entry = self._keys.pop(key, None)
        if entry is None:
            return False
        if self._active.get(entry.account_id) == key:
            del self._active[entry.account_id]
        for callback in self._on_closed.pop(key, []):
            callback(key)
        self._on_expired.pop(key, None)
        return True

    def account_of(self, key: str) -> str | None:
        """The account of a currently valid key, else None."""
        self.sweep()
        entry = self._keys.get(key)
        return entry.account_id if entry is not None and not entry.expired else None

    def expires_at(self, key: str) -> int | None:
        entry = self._keys.get(key)
        return entry.expires_ms if entry is not None and not entry.expired else None

    def active_key(self, account_id: str) -> str | None:
        self.sweep()
        return self._active.get(account_id)

    def watch(self, key: str, on_expired: Callable[[str], None],
              on_closed: Callable[[str], None]) -> Callable[[], None]:
        """Call ``on_expired`` when ``key`` lapses and ``on_closed`` when it is deleted."""
        self._on_expired.setdefault(key, []).append(on_expired)
        self._on_closed.setdefault(key, []).append(on_closed)

        def unwatch() -> None:
            for table, cb in ((self._on_expired, on_expired), (self._on_closed, on_closed)):
                if cb in table.get(key, []):
                    table[key].remove(cb)
        return unwatch

    def expire_now(self, key: str | None = None, account_id: str | None = None) -> list[str]:
        """Fault: make ``key`` (or the account's active key, or every key) lapse now."""
        for entry in self._keys.values():
            if not entry.expired and (key in (None, entry.key)) and (account_id in (None, entry.account_id)):
                entry.expires_ms = self._now_ms() - 1
        return [k for k, _ in self.sweep()]

    def sweep(self) -> list[tuple[str, str]]:
        """Mark lapsed keys expired and notify watchers; returns the (key, account) pairs."""
        now = self._now_ms()
        lapsed = [e for e in self._keys.values() if not e.expired and e.expires_ms <= now]
        for entry in lapsed:
            entry.expired = True
            if self._active.get(entry.account_id) == entry.key:
                del self._active[entry.account_id]
            for callback in self._on_expired.pop(entry.key, []):
                callback(entry.key)
            self._on_closed.pop(entry.key, None)
        return [(e.key, e.account_id) for e in lapsed]


class FuturesSide:
    """Everything futures for one exchange: prices, wallets, listenKeys, funding."""

    def __init__(self, now_ms: Callable[[], int], publish: Callable[[str, str, Event], None],
                 market: FuturesMarket, seed: int = 0) -> None:
        self._now_ms = now_ms
        self._publish = publish
        self.market = market
        self.listen_keys = ListenKeys(now_ms, seed)
        self.wallets: dict[str, FuturesWallet] = {}
        self._last_funding_ms = now_ms()
        self.funding_history: list[dict[str, Any]] = []
        self._order_seq = 0
        self.orders: FuturesOrders    # set by ``attach``: orders, trades, account settings
        self.ratelimiter: Any = None  # the futures REST limiter (rest_futures_orders.limiter_of)
        self._tran_seq = 0
        self.income: list[dict[str, Any]] = []       # GET /fapi/v1/income rows, oldest first

    def wallet(self, account_id: str) -> FuturesWallet:
        wallet = self.wallets.get(account_id)
        if wallet is None:
            wallet = self.wallets[account_id] = FuturesWallet(account_id, update_time=self._now_ms())
        return wallet

    # -- changes that emit ACCOUNT_UPDATE ---------------------------------------------------

    def _account_update(self, wallet: FuturesWallet, reason: str, assets: dict[str, Decimal],
                        positions: list[FuturesPosition], now: int) -> Event:
        balances = [{"a": a, "wb": _d8(wallet.balance(a)), "cw": _d8(wallet.balance(a)), "bc": _d8(bc)}
                    for a, bc in assets.items()]
        rows = [p.row(self._mark(p.symbol)) for p in positions]
        event = {"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {"m": reason, "B": balances, "P": rows}}
        self._publish(wallet.account_id, "futures", event)
        return event

    def _mark(self, symbol: str) -> Decimal | None:
        state = self.market.state(symbol)
        return state.mark if state else None

    def transfer(self, account_id: str, asset: str, amount: Decimal) -> Event:
        """Admin transfer into (amount > 0) or out of the futures wallet."""
        wallet = self.wallet(account_id)
        amount = Decimal(amount)
        if wallet.balance(asset) + amount < 0:
            raise ValueError(f"futures wallet has {wallet.balance(asset)} {asset}, cannot withdraw {-amount}")
        now = self._now_ms()
        wallet.balances[asset] = wallet.balance(asset) + amount
        wallet.update_time = now
        reason = "DEPOSIT" if amount >= 0 else "WITHDRAW"
        self.record_income(account_id, "", "TRANSFER", amount, time_ms=now, asset=asset)
        return self._account_update(wallet, reason, {asset: amount}, [], now)

    def set_position(self, account_id: str, symbol: str, amount: Decimal, entry_price: Decimal) -> None:
        """Ground truth for tests: give an account a position (no event, like a fixture)."""
        if symbol not in self.market.symbols:
            raise ValueError(f"unknown futures symbol {symbol}")
        position = FuturesPosition(symbol, Decimal(amount), Decimal(entry_price))
        self.wallet(account_id).positions[symbol] = position

    def next_ids(self) -> tuple[int, int]:
        """A fresh (orderId, tradeId) pair; one sequence for every futures order and trade."""
        self._order_seq += 1
        return 8_000_000 + self._order_seq, 700_000_000 + self._order_seq

    def record_income(self, account_id: str, symbol: str, income_type: str, amount: Decimal, *,
                      time_ms: int, info: str = "", trade_id: str = "", asset: str = "USDT") -> None:
        """One ``GET /fapi/v1/income`` row (tranId from one sequence per exchange)."""
        self._tran_seq += 1
        self.income.append({"account": account_id, "symbol": symbol, "incomeType": income_type,
                            "income": _d8(amount), "asset": asset, "info": info or income_type,
                            "time": time_ms, "tranId": 9_000_000_000 + self._tran_seq, "tradeId": trade_id})

    def book_trade(self, account_id: str, symbol: str, side: str, qty: Decimal, price: Decimal, *,
                   maker: bool, trade_id: int | None = None) -> tuple[FuturesPosition, Decimal, Decimal]:
        """Move the one-way position by one trade and book realized PnL and the commission
        (USDT) in the wallet, with their income rows. Returns (position, realized, commission).
        Publishes nothing: the caller sends ORDER_TRADE_UPDATE, then ``publish_order_update``."""
        wallet = self.wallet(account_id)
        pos = wallet.positions.setdefault(symbol, FuturesPosition(symbol))
        signed = qty if side == "BUY" else -qty
        realized = ZERO
        if pos.amount == 0 or (pos.amount > 0) == (signed > 0):
            pos.entry_price = (abs(pos.amount) * pos.entry_price + qty * price) / (abs(pos.amount) + qty)
        else:
            closed = min(abs(pos.amount), qty)
            realized = closed * (price - pos.entry_price) * (1 if pos.amount > 0 else -1)
            if qty > abs(pos.amount):
                pos.entry_price = price          # flipped: the remainder opened at this price
        pos.amount += signed
        if pos.amount == 0:
            pos.entry_price = ZERO
        pos.entry_price = pos.entry_price.quantize(_Q8)
        realized = realized.quantize(_Q8)
        pos.realized += realized
        commission = (qty * price * (MAKER_FEE if maker else TAKER_FEE)).quantize(_Q8)
        wallet.balances["USDT"] = wallet.balance("USDT") + realized - commission
        now = self._now_ms()
        wallet.update_time = now
        tid = "" if trade_id is None else str(trade_id)
        if realized:
            self.record_income(account_id, symbol, "REALIZED_PNL", realized, time_ms=now, trade_id=tid)
        if commission:
            self.record_income(account_id, symbol, "COMMISSION", -commission, time_ms=now, trade_id=tid)
        return pos, realized, commission

    def publish_order_update(self, account_id: str, symbol: str) -> Event:
        """ACCOUNT_UPDATE with reason ORDER for ``symbol``'s position after a trade."""
        wallet = self.wallet(account_id)
        pos = wallet.positions.setdefault(symbol, FuturesPosition(symbol))
        return self._account_update(wallet, "ORDER", {"USDT": ZERO}, [pos], self._now_ms())

    def fill(self, account_id: str, symbol: str, side: str, qty: Decimal, price: Decimal, *,
             client_order_id: str, maker: bool = False, order_type: str = "LIMIT") -> list[Event]:
        """Ground truth for tests: a futures order filled in one trade (one-way mode).

        Moves the position, books realized PnL and the commission (USDT) in the wallet and
        publishes ORDER_TRADE_UPDATE (TRADE, FILLED) then ACCOUNT_UPDATE (m=ORDER)."""
        if symbol not in self.market.symbols:
            raise ValueError(f"unknown futures symbol {symbol}")
        if side not in ("BUY", "SELL") or qty <= 0 or price <= 0:
            raise ValueError("side must be BUY or SELL, qty and price positive")
        qty, price = Decimal(qty), Decimal(price)
        order_id, trade_id = self.next_ids()
        _, realized, commission = self.book_trade(account_id, symbol, side, qty, price, maker=maker,
                                                  trade_id=trade_id)
        now = self._now_ms()
        order = {"s": symbol, "c": client_order_id, "S": side, "o": order_type, "f": "GTC",
                 "q": _fixed(qty, QTY_PLACES),
                 "p": _fixed(price, PRICE_PLACES) if order_type == "LIMIT" else "0",
                 "ap": f"{price:.5f}", "sp": "0", "x": "TRADE", "X": "FILLED", "i": order_id,
                 "l": _fixed(qty, QTY_PLACES), "z": _fixed(qty, QTY_PLACES),
                 "L": _fixed(price, PRICE_PLACES), "N": "USDT", "n": _d8(commission), "T": now, "t": trade_id,
                 "b": "0",
                 "a": "0", "m": maker, "R": False, "wt": "CONTRACT_PRICE", "ot": order_type, "ps": "BOTH",
                 "cp": False, "rp": _d8(realized), "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_MAKER",
                 "pm": "NONE", "gtd": 0, "er": "0"}
        trade_event = {"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": order}
        self._publish(account_id, "futures", trade_event)
        return [trade_event, self.publish_order_update(account_id, symbol)]

    def settle_funding(self, funding_time_ms: int | None = None) -> list[Event]:
        """Charge/credit funding on every open position at the current mark and rate.
        Longs pay shorts when the rate is positive. Cross margin: ``P`` is empty."""
        now = self._now_ms() if funding_time_ms is None else funding_time_ms
        states: dict[str, MarkState | None] = {s: self.market.state(s, now) for s in self.market.symbols}
        events = []
        for wallet in self.wallets.values():
            total = ZERO
            for pos in wallet.positions.values():
                state = states.get(pos.symbol)
                if not pos.amount or state is None:
                    continue
                fee = (-pos.amount * state.mark * state.funding_rate).quantize(_Q8)
                total += fee
                self.record_income(wallet.account_id, pos.symbol, "FUNDING_FEE", fee, time_ms=now)
                self.funding_history.append({"account": wallet.account_id, "symbol": pos.symbol,
                                             "time": now, "rate": state.funding_rate, "amount": fee})
            if total:
                wallet.balances["USDT"] = wallet.balance("USDT") + total
                wallet.update_time = now
                events.append(self._account_update(wallet, "FUNDING_FEE", {"USDT": ZERO}, [], now))
        return events

    def tick(self) -> None:
        """Notice lapsed listenKeys, funding times crossed since the last tick and accounts
        below their maintenance margin."""
        self.listen_keys.sweep()
        now = self._now_ms()
        boundary = now - now % (8 * 3600 * 1000)
        if boundary > self._last_funding_ms:
            self._last_funding_ms = boundary
            self.settle_funding(boundary)
        self.check_liquidations()

    # -- margin and liquidation (see the module docstring) -----------------------------------

    def bracket(self, symbol: str) -> Bracket:
        """The notional bracket of ``symbol``: one for every perpetual and notional."""
        return FIRST_BRACKET

    def position_risks(self, account_id: str) -> list[PositionRisk]:
        """The account's open positions at their current marks (a position without a mark is left out)."""
        out = []
        for pos in self.wallet(account_id).positions.values():
            mark = self._mark(pos.symbol) if pos.amount else None
            if mark is not None:
                out.append(PositionRisk(pos.symbol, pos.amount, pos.entry_price, mark))
        return out

    def maint_margin(self, account_id: str, symbol: str) -> Decimal:
        pos = self.wallet(account_id).positions.get(symbol)
        mark = self._mark(symbol)
        if pos is None or not pos.amount or mark is None:
            return ZERO
        return _maintenance_margin(pos.amount, mark, self.bracket(symbol)).quantize(_Q8)

    def liquidation_price(self, account_id: str, symbol: str) -> Decimal | None:
        """positionRisk's ``liquidationPrice`` (None: no position, or none reachable)."""
        risks = self.position_risks(account_id)
        mine = next((r for r in risks if r.symbol == symbol), None)
        if mine is None:
            return None
        return _liquidation_price(mine, self.wallet(account_id).balance("USDT"), risks, self.bracket(symbol))

    def check_liquidations(self) -> list[str]:
        """Liquidate every account below its maintenance margin; returns the autoclose ids."""
        closed: list[str] = []
        for wallet in list(self.wallets.values()):
            while True:
                risks = self.position_risks(wallet.account_id)
                if not is_liquidatable(wallet.balance("USDT"), risks, FIRST_BRACKET):
                    break
                worst = min(risks, key=lambda r: r.unrealized)
                order = self.orders.liquidate(wallet.account_id, worst.symbol, worst.mark)
                closed.append(order.client_order_id)
        return closed

    # -- REST views --------------------------------------------------------------------------

    def balance_rows(self, account_id: str, alias: str) -> list[dict[str, Any]]:
        """``GET /fapi/v3/balance``."""
        wallet = self.wallet(account_id)
        assets = sorted(set(wallet.balances) | {"USDT"})
        unpnl = self._unrealized(wallet)
        return [{"accountAlias": alias, "asset": a, "balance": _d8(wallet.balance(a)),
                 "crossWalletBalance": _d8(wallet.balance(a)),
                 "crossUnPnl": _d8(unpnl if a == "USDT" else ZERO),
                 "availableBalance": _d8(wallet.balance(a)), "maxWithdrawAmount": _d8(wallet.balance(a)),
                 "marginAvailable": True, "updateTime": wallet.update_time} for a in assets]

    def _unrealized(self, wallet: FuturesWallet) -> Decimal:
        total = ZERO
        for pos in wallet.positions.values():
            mark = self._mark(pos.symbol)
            if mark is not None:
                total += (mark - pos.entry_price) * pos.amount
        return total

    def account_view(self, account_id: str) -> dict[str, Any]:
        """``GET /fapi/v2/account``."""
        wallet = self.wallet(account_id)
        unpnl = self._unrealized(wallet)
        usdt = wallet.balance("USDT")
        maint = sum((self.maint_margin(account_id, s) for s in self.market.symbols), ZERO)
        assets = [{"asset": a, "walletBalance": _d8(b),
                   "unrealizedProfit": _d8(unpnl if a == "USDT" else ZERO),
                   "marginBalance": _d8(b + (unpnl if a == "USDT" else ZERO)),
                   "maintMargin": _d8(maint if a == "USDT" else ZERO),
                   "initialMargin": "0.00000000", "positionInitialMargin": "0.00000000",
                   "openOrderInitialMargin": "0.00000000", "crossWalletBalance": _d8(b),
                   "crossUnPnl": _d8(unpnl if a == "USDT" else ZERO), "availableBalance": _d8(b),
                   "maxWithdrawAmount": _d8(b), "marginAvailable": True, "updateTime": wallet.update_time}
                  for a, b in sorted(wallet.balances.items())]
        positions = []
        for symbol in self.market.symbols:
            pos = wallet.positions.get(symbol, FuturesPosition(symbol))
            mark = self._mark(symbol)
            up = (mark - pos.entry_price) * pos.amount if mark is not None and pos.amount else ZERO
            positions.append({"symbol": symbol, "initialMargin": "0",
                              "maintMargin": _d8(self.maint_margin(account_id, symbol)),
                              "unrealizedProfit": _d8(up), "positionInitialMargin": "0",
                              "openOrderInitialMargin": "0", "leverage": "20", "isolated": False,
                              "entryPrice": format_decimal(pos.entry_price),
                              "breakEvenPrice": format_decimal(pos.entry_price),
                              "maxNotional": "250000", "positionSide": "BOTH",
                              "positionAmt": _fixed(pos.amount, QTY_PLACES),
                              "notional": _d8(pos.amount * mark) if mark is not None else "0",
                              "isolatedWallet": "0", "updateTime": wallet.update_time, "bidNotional": "0",
                              "askNotional": "0"})
        return {"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True,
                "feeBurn": False, "tradeGroupId": -1, "updateTime": 0, "multiAssetsMargin": False,
                "totalInitialMargin": "0.00000000", "totalMaintMargin": _d8(maint),
                "totalWalletBalance": _d8(usdt), "totalUnrealizedProfit": _d8(unpnl),
                "totalMarginBalance": _d8(usdt + unpnl), "totalPositionInitialMargin": "0.00000000",
                "totalOpenOrderInitialMargin": "0.00000000", "totalCrossWalletBalance": _d8(usdt),
                "totalCrossUnPnl": _d8(unpnl), "availableBalance": _d8(usdt), "maxWithdrawAmount": _d8(usdt),
                "assets": assets, "positions": positions}


# -- attaching to a SimExchange -------------------------------------------------------------

def _spot_mid(sim: Any) -> Callable[[str], Decimal | None]:
    """The index source: the spot market's fair price of the same symbol (``Market.index``:
    the book's mid without this venue's dislocation)."""
    def mid(symbol: str) -> Decimal | None:
        index = getattr(sim.market, "index", None)
        if index is not None:
            return index(symbol)
        book = sim.market.books.get(symbol)
        return None if book is None else (Decimal(book.bid) + Decimal(book.ask)) / 2
    return mid


def _spot_specs(sim: Any) -> dict[str, Any]:
    market = getattr(sim, "market", None)
    specs = getattr(market, "specs", None) or {}
    return {s: spec for s, spec in specs.items() if s.endswith("USDT")}


DEFAULT_FUTURES_USDT = Decimal("10000")


def attach(sim: Any) -> FuturesSide:
    """Create ``sim.futures`` (once) and the fault switchboard's binding. Idempotent."""
    existing = getattr(sim, "futures", None)
    if isinstance(existing, FuturesSide):
        return existing
    seed = int(getattr(sim, "seed", 0) or 0)
    specs = _spot_specs(sim)
    ticks = {s: getattr(spec, "tick", Decimal("0.01")) for s, spec in specs.items()}
    market = FuturesMarket(sim.clock.now_ms, _spot_mid(sim), list(specs), seed, tick=ticks)
    side = FuturesSide(sim.clock.now_ms, sim.bus.publish, market, seed)
    from executor.sim.futures_orders import FuturesOrders  # imports this module's types
    side.orders = FuturesOrders(side, sim.clock.now_ms, sim.bus.publish)
    spot_market = getattr(sim, "market", None)
    if spot_market is not None and hasattr(spot_market, "subscribe"):
        # The perpetual's touch follows the spot mid: every book update may cross resting orders.
        spot_market.subscribe(lambda book: side.orders.match(getattr(book, "symbol", None)))
    accounts = getattr(sim, "accounts", None)
    default = getattr(accounts, "default", None) if accounts is not None else None
    if default is not None:
        side.wallet(default.id).balances["USDT"] = DEFAULT_FUTURES_USDT
    sim.futures = side
    if hasattr(sim, "faults") and hasattr(sim.faults, "bind"):
        sim.faults.bind(sim)
    return side
