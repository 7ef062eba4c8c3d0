"""Preflight decisions against a scripted client: every refusal, the pass, and confirm_live."""

from __future__ import annotations

import argparse
import io
import time
from typing import Any

import pytest
from binance.exceptions import BinanceAPIException

from executor.config import load_config
from executor.venue.endpoints import DEAD_END
from executor.venue.preflight import (
    LiveRefused,
    confirm_live,
    ensure_live_ready,
    measure_clock_offset,
    run_preflight,
)

GOOD_RESTRICTIONS = {"ipRestrict": True, "enableWithdrawals": False, "enableSpotAndMarginTrading": True,
                     "enableFutures": True, "enableReading": True, "createTime": 1}


def _api_error(code: int, msg: str, status: int = 400) -> BinanceAPIException:
    class _Resp:
        status_code = status
        text = ""
    return BinanceAPIException(_Resp(), status, f'{{"code":{code},"msg":"{msg}"}}')


class FakeClient:
    MARGIN_API_URL = "https://api.binance.com/sapi"

    def __init__(self, **kw: Any) -> None:
        self.restrictions: dict[str, Any] | Exception = dict(GOOD_RESTRICTIONS)
        self.account: dict[str, Any] | Exception = {"canTrade": True}
        self.skew_ms = 0
        self.status = {"BTCUSDT": "TRADING", "ETHUSDT": "TRADING"}
        self.__dict__.update(kw)
        self.calls: list[str] = []

    async def get_account_api_permissions(self) -> dict[str, Any]:
        self.calls.append("apiRestrictions")
        if isinstance(self.restrictions, Exception):
            raise self.restrictions
        return self.restrictions

    async def get_account(self) -> dict[str, Any]:
        self.calls.append("account")
        if isinstance(self.account, Exception):
            raise self.account
        return self.account

    async def get_server_time(self) -> dict[str, int]:
        return {"serverTime": int(time.time() * 1000) + self.skew_ms}

    async def _get(self, path: str, data: dict[str, str]) -> dict[str, Any]:
        symbol = data["symbol"]
        if symbol not in self.status:
            raise _api_error(-1121, "Invalid symbol.")
        return {"symbols": [{"symbol": symbol, "status": self.status[symbol]}]}


@pytest.fixture
def cfg():
    return load_config(local=None, overrides={"profile": "live"})


async def test_pass(cfg) -> None:
    report = await run_preflight(FakeClient(), cfg)
    assert report.ok, report.render()
    names = [c.name for c in report.checks]
    assert names == ["ipRestrict", "enableWithdrawals", "enableSpotAndMarginTrading", "account canTrade",
                     "clock offset", "symbol BTCUSDT", "symbol ETHUSDT"]
    assert "all checks passed" in report.render()


@pytest.mark.parametrize(("field", "value", "check", "fix_words"), [
    ("ipRestrict", False, "ipRestrict", "trusted IPs"),
    ("enableWithdrawals", True, "enableWithdrawals", "untick 'Enable Withdrawals'"),
    ("enableSpotAndMarginTrading", False, "enableSpotAndMarginTrading",
     "tick 'Enable Spot & Margin Trading'"),
])
async def test_each_restriction_refusal(cfg, field: str, value: bool, check: str, fix_words: str) -> None:
    client = FakeClient()
    client.restrictions[field] = value
    report = await run_preflight(client, cfg)
    assert not report.ok
    assert [c.name for c in report.failures] == [check]
    assert fix_words in report.check(check).fix
    assert "API Management" in report.check(check).fix
    assert "FAIL" in report.render() and fix_words in report.render()


async def test_futures_permission_checked_only_when_futures_are_used(cfg) -> None:
    client = FakeClient()
    client.restrictions["enableFutures"] = False
    assert (await run_preflight(client, cfg)).ok
    report = await run_preflight(client, cfg, futures=True)
    assert [c.name for c in report.failures] == ["enableFutures"]
    assert "Enable Futures" in report.failures[0].fix


async def test_futures_user_stream_in_config_makes_preflight_check_futures(cfg, tmp_path) -> None:
    extra = tmp_path / "futures.toml"
    extra.write_text("[futures]\nuser_stream = true\n")
    client = FakeClient()
    client.restrictions["enableFutures"] = False
    report = await run_preflight(client, load_config(extra, local=None))
    assert [c.name for c in report.failures] == ["enableFutures"]


async def test_unreadable_restrictions_is_a_refusal_naming_the_ip_whitelist(cfg) -> None:
    client = FakeClient(restrictions=_api_error(-2015, "Invalid API-key, IP, or permissions for action."))
    report = await run_preflight(client, cfg)
    assert [c.name for c in report.failures] == ["key restrictions"]
    assert "-2015" in report.failures[0].detail and "trusted IPs" in report.failures[0].fix


async def test_account_cannot_trade(cfg) -> None:
    report = await run_preflight(FakeClient(account={"canTrade": False}), cfg)
    assert [c.name for c in report.failures] == ["account canTrade"]


@pytest.mark.parametrize(("skew", "ok"), [(0, True), (450, True), (-450, True), (700, False), (-900, False)])
async def test_clock_offset_limit(cfg, skew: int, ok: bool) -> None:
    report = await run_preflight(FakeClient(skew_ms=skew), cfg)
    assert report.check("clock offset").ok is ok
    if not ok:
        assert "NTP" in report.check("clock offset").fix


@pytest.mark.parametrize("status", ["BREAK", "HALT", "CANCEL_ONLY", "PRE_TRADING", "END_OF_DAY"])
async def test_symbol_not_trading(cfg, status: str) -> None:
    client = FakeClient()
    client.status["ETHUSDT"] = status
    report = await run_preflight(client, cfg)
    assert [c.name for c in report.failures] == ["symbol ETHUSDT"]
    assert status in report.failures[0].detail


async def test_symbol_not_listed(cfg) -> None:
    client = FakeClient()
    del client.status["ETHUSDT"]
    report = await run_preflight(client, cfg)
    assert [c.name for c in report.failures] == ["symbol ETHUSDT"]
    assert "not listed" in report.failures[0].detail


async def test_venue_without_sapi_skips_restrictions(cfg) -> None:
    client = FakeClient(MARGIN_API_URL=f"{DEAD_END}/testnet-has-no-sapi")
    report = await run_preflight(client, cfg, venue="testnet")
    assert report.ok and report.check("key restrictions").skipped
    assert "apiRestrictions" not in client.calls


async def test_gateway_wrapping_a_client_is_accepted(cfg) -> None:
    class Gateway:
        def __init__(self, client: FakeClient) -> None:
            self._client = client

    assert (await run_preflight(Gateway(FakeClient()), cfg)).ok


async def test_clock_measurement_takes_the_fastest_round_trip() -> None:
    ticks = iter([0.0, 100.0, 200.0, 210.0, 300.0, 400.0])
    answers = iter([1000, 1205, 1300])

    async def fetch() -> int:
        return next(answers)

    offset, rtt = await measure_clock_offset(fetch, local_ms=lambda: next(ticks))
    assert (offset, rtt) == (1000.0, 10.0)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_confirm_live() -> None:
    out = io.StringIO()
    assert confirm_live(argparse.Namespace(live=True), io.StringIO(""), out)
    assert not confirm_live(argparse.Namespace(live=False), io.StringIO("LIVE\n"), out)   # not a tty
    assert "pass --live" in out.getvalue()
    assert confirm_live(argparse.Namespace(live=False), Tty("LIVE\n"), out)
    assert not confirm_live(argparse.Namespace(live=False), Tty("yes\n"), out)
    assert not confirm_live(argparse.Namespace(live=False), Tty(""), out)
    assert "REAL MONEY" in out.getvalue()


async def test_ensure_live_ready(cfg) -> None:
    good = FakeClient()
    assert (await ensure_live_ready(cfg, argparse.Namespace(live=True), good)).ok
    unconfirmed = FakeClient()
    with pytest.raises(LiveRefused, match="not confirmed"):
        await ensure_live_ready(cfg, argparse.Namespace(live=False), unconfirmed, stdin=io.StringIO(""),
                                out=io.StringIO())
    assert unconfirmed.calls == []     # refused before any request
    bad = FakeClient()
    bad.restrictions["enableWithdrawals"] = True
    with pytest.raises(LiveRefused, match="Enable Withdrawals"):
        await ensure_live_ready(cfg, argparse.Namespace(live=True), bad)
    paper = load_config(local=None, overrides={"profile": "testnet"})
    assert await ensure_live_ready(paper, argparse.Namespace(live=False), FakeClient()) is None
