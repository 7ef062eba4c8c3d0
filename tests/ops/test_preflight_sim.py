"""Preflight through an unmodified python-binance client against the embedded exchange."""

from __future__ import annotations

import aiohttp
import pytest

from executor.config import load_config
from executor.sim.rest_sapi import RestrictionError, reset_restrictions, set_restrictions
from executor.venue.preflight import run_preflight
from executor.venue.profiles import make_client


@pytest.fixture
def exchange(sim):
    """(SimExchange, SimUrls) of the shared ``sim`` fixture (tests/conftest.py)."""
    return sim.exchange, sim.urls


@pytest.fixture
def cfg():
    return load_config(local=None, overrides={"profile": "live"})


async def _preflight(exchange, cfg, kind: str = "HMAC", **kw):
    sim, urls = exchange
    client = make_client(urls.endpoints(), sim.credentials(kind))
    try:
        return await run_preflight(client, cfg, venue="sim", **kw)
    finally:
        await client.close_connection()


@pytest.mark.parametrize("kind", ["HMAC", "Ed25519"])
async def test_pass_case(exchange, cfg, kind: str) -> None:
    report = await _preflight(exchange, cfg, kind, futures=True)
    assert report.ok, report.render()
    assert [c.name for c in report.checks] == [
        "ipRestrict", "enableWithdrawals", "enableSpotAndMarginTrading", "enableFutures",
        "account canTrade", "clock offset", "symbol BTCUSDT", "symbol ETHUSDT"]


@pytest.mark.parametrize(("changes", "failed"), [
    ({"ipRestrict": False}, ["ipRestrict"]),
    ({"enableWithdrawals": True}, ["enableWithdrawals"]),
    ({"enableSpotAndMarginTrading": False}, ["enableSpotAndMarginTrading"]),
    ({"enableFutures": False}, ["enableFutures"]),
    ({"ipRestrict": False, "enableWithdrawals": True}, ["ipRestrict", "enableWithdrawals"]),
])
async def test_restriction_refusals_set_through_the_admin_route(exchange, cfg, changes, failed) -> None:
    sim, urls = exchange
    key = sim.credentials("HMAC").api_key
    async with aiohttp.ClientSession() as http, http.post(urls.admin + "/keys/restrictions",
                         json={"apiKey": key, "restrictions": changes}) as resp:
        assert resp.status == 200, await resp.text()
        assert all(body_value == changes[k] for k, body_value in (await resp.json())[0].items()
                   if k in changes)
    report = await _preflight(exchange, cfg, futures=True)
    assert [c.name for c in report.failures] == failed
    assert all(c.fix for c in report.failures)
    # restrictions are per key: the Ed25519 key of the same account is untouched
    assert (await _preflight(exchange, cfg, "Ed25519", futures=True)).ok


async def test_admin_route_rejects_bad_input_and_reads_back(exchange) -> None:
    _sim, urls = exchange
    async with aiohttp.ClientSession() as http:
        for body in ({"restrictions": {"ipRestrict": "no"}}, {"restrictions": {"canFly": True}},
                     {"apiKey": "nosuchkey", "restrictions": {}}):
            async with http.post(urls.admin + "/keys/restrictions", json=body) as resp:
                assert resp.status == 400
                assert "error" in await resp.json()
        body = {"account": "default", "restrictions": {"enableWithdrawals": True}}
        async with http.post(urls.admin + "/keys/restrictions", json=body) as resp:
            assert resp.status == 200 and len(await resp.json()) == 3   # HMAC, Ed25519, RSA keys
        async with http.get(urls.admin + "/keys/restrictions") as resp:
            rows = await resp.json()
            assert {r["kind"] for r in rows} == {"HMAC", "Ed25519", "RSA"}
            assert all(r["restrictions"]["enableWithdrawals"] is True for r in rows)
        async with http.post(urls.admin + "/keys/restrictions", json={"reset": True}) as resp:
            assert all(r["enableWithdrawals"] is False for r in await resp.json())


async def test_model_helpers(exchange) -> None:
    sim, _ = exchange
    key = sim.credentials("RSA").api_key
    [after] = set_restrictions(sim, {"ipRestrict": False}, api_key=key)
    assert after["ipRestrict"] is False
    assert sim.accounts.by_api_key(key)[1].api_restrictions["ipRestrict"] is False
    reset_restrictions(sim, api_key=key)
    assert sim.accounts.by_api_key(key)[1].api_restrictions["ipRestrict"] is True
    with pytest.raises(RestrictionError):
        set_restrictions(sim, {"ipRestrict": 1})


async def test_account_cannot_trade(exchange, cfg) -> None:
    sim, _ = exchange
    sim.default_account.can_trade = False
    report = await _preflight(exchange, cfg)
    assert [c.name for c in report.failures] == ["account canTrade"]


@pytest.mark.parametrize("skew_ms", [900, 3000])
async def test_clock_skew_refused(exchange, cfg, skew_ms: int) -> None:
    sim, _ = exchange
    sim.clock.skew_ms = skew_ms   # exchange ahead of us; still inside recvWindow for signing
    report = await _preflight(exchange, cfg)
    assert [c.name for c in report.failures] == ["clock offset"]
    measured = int(report.check("clock offset").detail.split(" ms")[0])
    assert abs(measured - skew_ms) < 100


async def test_symbol_not_listed(exchange) -> None:
    cfg = load_config(local=None, overrides={"profile": "live", "symbols": {"spot": ["BTCUSDT", "SOLUSDT"]}})
    report = await _preflight(exchange, cfg)
    assert [c.name for c in report.failures] == ["symbol SOLUSDT"]
    assert "not listed" in report.failures[0].detail


async def test_unknown_key_is_refused_with_the_whitelist_hint(exchange, cfg) -> None:
    from executor.exchange.credentials import Credentials

    _sim, urls = exchange
    client = make_client(urls.endpoints(), Credentials(api_key="A" * 64, api_secret="b" * 64))
    try:
        report = await run_preflight(client, cfg)
    finally:
        await client.close_connection()
    assert report.check("key restrictions").ok is False
    assert "-2015" in report.check("key restrictions").detail
    assert "trusted IPs" in report.check("key restrictions").fix


def test_cli_preflight_on_the_sim_profile_passes(capsys) -> None:
    from executor.cli import main

    assert main(["preflight"]) == 0
    out = capsys.readouterr().out
    assert "preflight on sim: all checks passed" in out and "PASS  ipRestrict" in out


async def test_futures_key_check(exchange, cfg) -> None:
    # Testnet/demo futures accounts have keys of their own; preflight reads the futures account
    # with that key, and a key the futures host does not know is a named failure.
    sim, urls = exchange
    client = make_client(urls.endpoints(), sim.credentials("HMAC"))
    good = make_client(urls.endpoints(), sim.credentials("Ed25519"))
    from executor.exchange.credentials import Credentials

    bad = make_client(urls.endpoints(), Credentials("nope" * 8, api_secret="secret" * 8))
    try:
        ok = await run_preflight(client, cfg, venue="sim", futures_client=good)
        assert ok.check("futures key").ok, ok.render()
        refused = await run_preflight(client, cfg, venue="sim", futures_client=bad)
        c = refused.check("futures key")
        assert not c.ok and "could not read the futures account" in c.detail
        assert "BX_<PROFILE>_FUTURES_*" in c.fix
    finally:
        for c_ in (client, good, bad):
            await c_.close_connection()


async def test_futures_trading_checks(exchange) -> None:
    from decimal import Decimal

    sim, _ = exchange
    trade = load_config(local=None, overrides={"profile": "live", "futures": {"trade": True}})
    report = await _preflight(exchange, trade, futures=True)
    assert report.ok, report.render()
    assert [c.name for c in report.checks][-7:] == [
        "perpetual BTCUSDT", "perpetual ETHUSDT", "position mode", "margin type BTCUSDT", "leverage BTCUSDT",
        "margin type ETHUSDT", "leverage ETHUSDT"]
    # An open position: hedge mode and another margin type could not be changed by the bot.
    sim.futures.orders.set_dual_side("default", True)
    sim.futures.set_position("default", "BTCUSDT", Decimal("0.010"), Decimal("60000"))
    isolated = load_config(local=None, overrides={"profile": "live",
                                                  "futures": {"trade": True, "margin_type": "isolated"}})
    report = await _preflight(exchange, isolated, futures=True)
    assert [c.name for c in report.failures] == ["position mode", "margin type BTCUSDT"]
    assert all(c.fix for c in report.failures)
