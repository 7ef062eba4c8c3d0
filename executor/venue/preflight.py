"""Live preflight: is this key, account, clock and symbol list safe to trade real money with?

``run_preflight`` asks the venue four things and says, for each failure, what to change:
the API key's restrictions (``GET /sapi/v1/account/apiRestrictions``: trusted-IP only,
withdrawals off, spot trading on, futures on when futures are used), the account's
``canTrade``, the clock offset (under 500 ms) and every configured symbol's ``TRADING``
status. ``python run.py preflight`` runs it on its own; ``ensure_live_ready`` runs it
(after ``confirm_live``) before every live run and refuses to start on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, Any

from executor.config import Config
from executor.core.money import parse_decimal
from executor.exchange.binance_private import public_get

log = logging.getLogger(__name__)

MAX_CLOCK_OFFSET_MS = 500
CLOCK_SAMPLES = 3
EXIT_REFUSED = 3
CONFIRM_WORD = "LIVE"
KEY_SETTINGS = "Binance > Account > API Management > Edit restrictions"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False

    def line(self) -> str:
        tag = "SKIP" if self.skipped else ("PASS" if self.ok else "FAIL")
        text = f"{tag}  {self.name}: {self.detail}"
        if not self.ok and self.fix:
            text += f"\n      fix: {self.fix}"
        return text


@dataclass
class PreflightReport:
    venue: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok or c.skipped for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not (c.ok or c.skipped)]

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def render(self) -> str:
        head = f"preflight on {self.venue}: " + ("all checks passed" if self.ok
                                                  else f"{len(self.failures)} check(s) failed")
        return "\n".join([head, *(c.line() for c in self.checks)])


class LiveRefused(Exception):
    """A live run may not start; the text says why and what to do."""


def futures_used(cfg: Config) -> bool:
    """Whether this configuration trades or streams futures *user data* (needs enableFutures).

    Public mark prices need no key permission; the futures account's listenKey does.
    """
    return cfg.futures.user_stream or cfg.futures.trade


def _client_of(source: Any) -> Any:
    """The python-binance client behind a gateway (its ``_client``/``client``) or the client."""
    if hasattr(source, "get_account_api_permissions"):
        return source
    for attr in ("_client", "client"):
        inner = getattr(source, attr, None)
        if inner is not None and hasattr(inner, "get_account_api_permissions"):
            return inner
    raise TypeError(f"{type(source).__name__} is neither a python-binance client nor wraps one")


def _describe_error(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None)
    if code is not None and message is not None:
        return f"Binance error {code}: {message}"
    return f"{type(exc).__name__}: {exc}"


def _key_rejected_fix(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if code == -2015:
        return ("the key was refused (-2015): check the API key variables, add this machine's public IP "
                f"to the key's trusted IPs in {KEY_SETTINGS}, and make sure the key is enabled")
    if code == -2014:
        return "the API key has the wrong format: check the *_API_KEY variable for stray characters"
    if code == -1022:
        return "the signature was refused: the secret or private key does not belong to this API key"
    if code == -1021:
        return "the request timestamp was refused: synchronise this machine's clock (NTP)"
    return "check network access to the venue and the API key variables"


async def _check_restrictions(client: Any, futures: bool) -> list[Check]:
    name = "key restrictions"
    try:
        r = await client.get_account_api_permissions()
    except Exception as exc:  # noqa: BLE001 - any failure to read them is a refusal, named
        return [Check(name, False, f"could not read apiRestrictions ({_describe_error(exc)})",
                      _key_rejected_fix(exc))]
    checks = [
        Check("ipRestrict", r.get("ipRestrict") is True, f"ipRestrict={r.get('ipRestrict')}",
              f"in {KEY_SETTINGS} choose 'Restrict access to trusted IPs only' and enter this "
              "machine's public IP"),
        Check("enableWithdrawals", r.get("enableWithdrawals") is False,
              f"enableWithdrawals={r.get('enableWithdrawals')}",
              f"in {KEY_SETTINGS} untick 'Enable Withdrawals': a trading bot's key must not move funds out"),
        Check("enableSpotAndMarginTrading", r.get("enableSpotAndMarginTrading") is True,
              f"enableSpotAndMarginTrading={r.get('enableSpotAndMarginTrading')}",
              f"in {KEY_SETTINGS} tick 'Enable Spot & Margin Trading'"),
    ]
    if futures:
        checks.append(Check("enableFutures", r.get("enableFutures") is True,
                            f"enableFutures={r.get('enableFutures')}",
                            f"in {KEY_SETTINGS} tick 'Enable Futures' (a key created before the futures "
                            "account was opened cannot: create a new key)"))
    return checks


async def _check_account(client: Any) -> Check:
    name = "account canTrade"
    try:
        account = await client.get_account()
    except Exception as exc:  # noqa: BLE001 - any failure to read the account is a named FAIL line
        return Check(name, False, f"could not read the account ({_describe_error(exc)})",
                     _key_rejected_fix(exc))
    can = account.get("canTrade")
    return Check(name, can is True, f"canTrade={can}",
                 "the account may not trade: check Binance > Account for trading restrictions or "
                 "verification steps, and the key's 'Enable Spot & Margin Trading' permission")


async def _check_futures_key(client: Any) -> Check:
    """The futures account's own key (testnet/demo issue separate ones): can it read it?"""
    name = "futures key"
    try:
        account = await client.futures_account()
    except Exception as exc:  # noqa: BLE001 - any failure to read the futures account is a named FAIL line
        return Check(name, False, f"could not read the futures account ({_describe_error(exc)})",
                     "the futures testnet/demo issues its own keys: create one there and set the "
                     "BX_<PROFILE>_FUTURES_* variables, or set [futures] user_stream = false")
    return Check(name, True, f"futures account readable (canTrade={account.get('canTrade')})")


async def measure_clock_offset(fetch_server_ms: Callable[[], Awaitable[int]],
                               local_ms: Callable[[], float] = lambda: time.time() * 1000.0,
                               samples: int = CLOCK_SAMPLES) -> tuple[float, float]:
    """(offset ms = server - local at the round trip's midpoint, round trip ms), best of ``samples``."""
    best: tuple[float, float] | None = None
    for _ in range(samples):
        t0 = local_ms()
        server = await fetch_server_ms()
        t1 = local_ms()
        sample = (server - (t0 + t1) / 2.0, t1 - t0)
        if best is None or sample[1] < best[1]:
            best = sample
    assert best is not None
    return best


async def _check_clock(client: Any) -> Check:
    name = "clock offset"

    async def fetch() -> int:
        return int((await client.get_server_time())["serverTime"])

    try:
        offset, rtt = await measure_clock_offset(fetch)
    except Exception as exc:  # noqa: BLE001 - any failure to read the server time is a named FAIL line
        return Check(name, False, f"could not read the server time ({_describe_error(exc)})",
                     "check network access to the venue")
    return Check(name, abs(offset) < MAX_CLOCK_OFFSET_MS,
                 f"{offset:+.0f} ms (round trip {rtt:.0f} ms, limit ±{MAX_CLOCK_OFFSET_MS} ms)",
                 "synchronise this machine's clock: enable NTP (e.g. `timedatectl set-ntp true` or chrony)")


async def _check_symbol(client: Any, symbol: str) -> Check:
    name = f"symbol {symbol}"
    try:
        info = await public_get(client, "exchangeInfo", {"symbol": symbol})
    except Exception as exc:  # noqa: BLE001 - any failure to read exchangeInfo is a named FAIL line
        if getattr(exc, "code", None) == -1121:
            return Check(name, False, "not listed on this venue",
                         f"remove {symbol} from [symbols] spot or fix its spelling")
        return Check(name, False, f"could not read exchangeInfo ({_describe_error(exc)})",
                     "check network access to the venue")
    rows = [s for s in info.get("symbols", []) if s.get("symbol") == symbol]
    if not rows:
        return Check(name, False, "not listed on this venue", f"remove {symbol} from [symbols] spot")
    status = rows[0].get("status")
    return Check(name, status == "TRADING", f"status {status}",
                 f"{symbol} is not trading now: wait for it to return to TRADING or remove it from "
                 "[symbols] spot")


async def _check_futures_trading(client: Any, cfg: Config) -> list[Check]:
    """``[futures] trade``: every symbol has a TRADING perpetual, and the account's position
    mode, margin type and leverage are as configured or can be set by the bot at start
    (one-way mode and margin type cannot change while a position or an open order exists)."""
    fut = cfg.futures
    try:
        info = await client.futures_exchange_info()
        mode = await client.futures_get_position_mode()
        risk = {r["symbol"]: r for r in await client.futures_position_information(version=2)}
        open_orders = await client.futures_get_open_orders()
    except Exception as exc:  # noqa: BLE001 - any failure is one FAIL line of the preflight
        return [Check("futures account", False,
                      f"could not read the futures account ({_describe_error(exc)})",
                      "tick 'Enable Futures' on the key and open the USD-M futures account")]
    rows = {r.get("symbol"): r for r in info.get("symbols", [])}
    checks = []
    busy = {str(o.get("symbol")) for o in open_orders}
    held = {s for s, r in risk.items() if parse_decimal(str(r.get("positionAmt", "0")), "positionAmt")}
    for symbol in cfg.symbols.spot:
        row = rows.get(symbol)
        ok = row is not None and row.get("status") == "TRADING" and row.get("contractType") == "PERPETUAL"
        detail = "no USD-M perpetual" if row is None else f"perpetual status {row.get('status')}"
        checks.append(Check(f"perpetual {symbol}", ok, detail,
                            f"remove {symbol} from [symbols] spot or set [futures] trade = false"))
    dual = mode.get("dualSidePosition") is True
    stuck = dual and bool(held or busy)
    checks.append(Check("position mode", not stuck, "hedge mode" if dual else "one-way",
                        "close the futures positions and orders (or switch to one-way mode in Binance > "
                        "Futures > Preferences): the bot trades in one-way mode"))
    want = "isolated" if fut.margin_type.lower() == "isolated" else "cross"
    for symbol in cfg.symbols.spot:
        r = risk.get(symbol, {})
        have = str(r.get("marginType", "cross")).lower()
        blocked = have != want and (symbol in held or symbol in busy)
        checks.append(Check(f"margin type {symbol}", not blocked,
                            f"{have}" + ("" if have == want else f" (the bot sets {want} at start)"),
                            f"close the {symbol} futures position and orders, or set [futures] "
                            f"margin_type = \"{have}\""))
        checks.append(Check(f"leverage {symbol}", fut.leverage <= fut.max_leverage,
                            f"{r.get('leverage', '?')} (the bot sets {fut.leverage} at start, cap "
                            f"{fut.max_leverage})", "lower [futures] leverage to max_leverage or below"))
    return checks


def _has_sapi(client: Any) -> bool:
    from executor.venue.endpoints import DEAD_END

    return not str(getattr(client, "MARGIN_API_URL", "")).startswith(DEAD_END)


async def run_preflight(gateway_or_client: Any, cfg: Config, *, venue: str | None = None,
                        futures: bool | None = None, futures_client: Any = None) -> PreflightReport:
    """Run every check against the venue ``gateway_or_client`` talks to; never raises for a
    failed check (each becomes a FAIL line). ``venue`` names it in the report;
    ``futures_client`` (signed with the futures account's own key) adds its check."""
    client = _client_of(gateway_or_client)
    report = PreflightReport(venue or cfg.profile)
    use_futures = futures_used(cfg) if futures is None else futures
    if _has_sapi(client):
        report.checks.extend(await _check_restrictions(client, use_futures))
    else:
        report.checks.append(Check("key restrictions", True, "not checked: this venue has no /sapi "
                                   "endpoints (testnet/demo); they are checked on live", skipped=True))
    report.checks.append(await _check_account(client))
    report.checks.append(await _check_clock(client))
    for symbol in cfg.symbols.spot:
        report.checks.append(await _check_symbol(client, symbol))
    if futures_client is not None:
        report.checks.append(await _check_futures_key(futures_client))
    if cfg.futures.trade:
        report.checks.extend(await _check_futures_trading(futures_client or client, cfg))
    return report


def confirm_live(args: argparse.Namespace, stdin: IO[str] | None = None,
                 out: IO[str] | None = None) -> bool:
    """True when a live run is confirmed: ``--live`` or the word LIVE typed at a terminal.

    A non-interactive stdin without ``--live`` is a refusal: a script must say so itself.
    """
    if getattr(args, "live", False):
        return True
    stdin = stdin if stdin is not None else sys.stdin
    out = out if out is not None else sys.stderr
    if not (hasattr(stdin, "isatty") and stdin.isatty()):
        print("refusing to trade live: pass --live (stdin is not a terminal to confirm on)", file=out)
        return False
    print(f"This run trades REAL MONEY on Binance. Type {CONFIRM_WORD} to continue: ", end="", file=out)
    out.flush()
    answer = stdin.readline().strip()
    if answer != CONFIRM_WORD:
        print("not confirmed; nothing was sent", file=out)
        return False
    return True


async def ensure_live_ready(
    cfg: Config, args: argparse.Namespace, gateway_or_client: Any, *,
    stdin: IO[str] | None = None, out: IO[str] | None = None,
) -> PreflightReport | None:
    """The gate in front of every live run: confirmation, then preflight. Raises ``LiveRefused``.

    Returns the passing report (None for non-live profiles, which need neither).
    """
    if cfg.profile != "live":
        return None
    if not confirm_live(args, stdin, out):
        raise LiveRefused("live run not confirmed: pass --live or type LIVE when asked")
    report = await run_preflight(gateway_or_client, cfg, venue="live")
    for c in report.checks:
        (log.info if c.ok or c.skipped else log.error)("preflight %s", c.line())
    if not report.ok:
        raise LiveRefused(report.render() + "\nlive run refused: fix the failures above, then run "
                          "`python run.py preflight --profile live`")
    return report


async def preflight_command(cfg: Config, args: argparse.Namespace) -> int:
    """``python run.py preflight [--profile P]``: 0 when every check passes, 3 otherwise."""
    from executor.run.logs import register_secrets

    if cfg.profile == "sim":
        return await _preflight_sim(cfg)
    from executor.exchange.client import make_client
    from executor.venue.keys import load_credentials, load_futures_credentials
    from executor.venue.profiles import venue_for

    creds = load_credentials(cfg.profile)   # KeysError (a ConfigError) names what to set
    register_secrets(creds)
    # Testnet/demo futures accounts have keys of their own: missing ones are named here too.
    fcreds = load_futures_credentials(cfg.profile) if futures_used(cfg) else None
    if fcreds is not None:
        register_secrets(fcreds)
    venue = venue_for(cfg)
    client = make_client(venue.orders, creds, timeout_s=float(cfg.orders.request_timeout_s),
                         recv_window_ms=cfg.orders.recv_window_ms)
    fclient = None
    if fcreds is not None:
        fclient = make_client(venue.orders, fcreds, timeout_s=float(cfg.orders.request_timeout_s),
                              recv_window_ms=cfg.orders.recv_window_ms)
    try:
        report = await run_preflight(client, cfg, venue=venue.orders.name, futures_client=fclient)
    finally:
        await client.close_connection()
        if fclient is not None:
            await fclient.close_connection()
    print(report.render())
    return 0 if report.ok else EXIT_REFUSED


async def _preflight_sim(cfg: Config) -> int:
    """Preflight against a freshly started embedded exchange (shows what a pass looks like)."""
    from executor.exchange.client import make_client
    from executor.sim.exchange import SimExchange
    from executor.sim.server import SimServer

    sim = SimExchange.from_config(cfg.sim, symbols=cfg.symbols.spot)
    async with SimServer(sim, host=cfg.sim.host) as urls:
        creds = sim.credentials("HMAC")
        client = make_client(urls.endpoints(), creds, timeout_s=float(cfg.orders.request_timeout_s))
        try:
            report = await asyncio.wait_for(run_preflight(client, cfg, venue="sim"), 30)
        finally:
            await client.close_connection()
    print(report.render())
    return 0 if report.ok else EXIT_REFUSED
