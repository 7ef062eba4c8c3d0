"""The web API against a bot trading on the embedded exchange: every route's token check,
decimal strings for money, the controls changing what the bot does and landing in the ledger,
/metrics in Prometheus' format, the failure rate limit and the token file."""

from __future__ import annotations

import logging
import stat
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from executor.audit.query import AuditDB, Scope
from executor.audit.render import render_table, report_dict
from executor.audit.report import build_report
from executor.persistence.store import Store
from tests.scenarios.harness import SIM_OPTIONS
from tests.web.harness import TOKEN, WebBot, exchange_orders, wait_until, web_config

GET_ROUTES = ["/api/v1/status", "/api/v1/balances", "/api/v1/positions", "/api/v1/orders?state=open",
              "/api/v1/orders?state=all&limit=5", "/api/v1/fills?limit=5", "/api/v1/fills?since=0&limit=3",
              "/api/v1/pnl?period=run", "/api/v1/pnl?period=day", "/api/v1/pnl?period=all", "/api/v1/runs",
              "/api/v1/reconciliations", "/api/v1/snapshot", "/api/v1/events", "/metrics"]
POST_ROUTES = ["/api/v1/pause", "/api/v1/resume", "/api/v1/cancel-all", "/api/v1/kill"]


def _is_decimal_text(value: object) -> bool:
    return isinstance(value, str) and "E" not in value.upper() and Decimal(value) == Decimal(value)


@pytest.mark.sim_options(**SIM_OPTIONS)
async def test_routes_tokens_controls_and_metrics(sim, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BX_WEB_TOKEN", TOKEN)
    cfg = web_config(tmp_path, {"max_auth_failures": 1000})
    async with WebBot(sim, cfg) as w:
        bot = w.bot
        assert w.url.startswith("http://127.0.0.1:")
        await wait_until(lambda: bot.tracker.stats.fills >= 3, 20, "3 fills")

        status, data, _ = await w.get("/api/v1/ping", token=None)
        assert (status, data) == (200, {"ok": True})
        for path in [*GET_ROUTES, "/api/v1/no-such-route"]:
            for token in (None, "wrong-token-wrong-token"):
                status, _, body = await w.get(path, token=token)
                assert (status, body) == (401, b""), (path, token)
        for path in POST_ROUTES:
            for token in (None, "wrong-token-wrong-token"):
                status, _, body = await w.post(path, token=token)
                assert (status, body) == (401, b""), (path, token)
            status, _, _ = await w.post(path, content_type="application/x-www-form-urlencoded")
            assert status == 415, path  # a form post cannot act, even with the token
        assert not bot.manager.paused and not bot.risk.kill_switch.is_engaged()

        for path in GET_ROUTES:
            if path == "/api/v1/events":
                continue  # a stream: read below
            status, data, body = await w.get(path)
            assert status == 200, path
            assert body
        status, pnl, _ = await w.get("/api/v1/pnl?period=run")
        assert pnl["period"] == "run" and pnl["fills"] >= 3
        usdt = pnl["totals"]["USDT"]
        assert all(_is_decimal_text(usdt[k]) for k in ("realized", "unrealized", "fees", "total"))
        assert Decimal(usdt["total"]) == Decimal(usdt["realized"]) + Decimal(usdt["unrealized"])
        _, bal, _ = await w.get("/api/v1/balances")
        assert {b["asset"] for b in bal["balances"]} >= {"USDT", "BTC"}
        assert all(_is_decimal_text(b["free"]) for b in bal["balances"])
        _, st, _ = await w.get("/api/v1/status")
        assert st["run_id"] == bot.run_id and st["paused"] is False
        assert {s["kind"] for s in st["streams"]} == {"market", "user"}
        _, orders, _ = await w.get("/api/v1/orders?state=all&limit=5")
        assert len(orders["orders"]) == 5 and _is_decimal_text(orders["orders"][0]["quantity"])
        _, fills, _ = await w.get("/api/v1/fills?limit=2")
        assert len(fills["fills"]) == 2 and _is_decimal_text(fills["fills"][0]["price"])
        status, _, _ = await w.get("/api/v1/pnl?period=week")
        assert status == 400
        assert w.session is not None
        async with w.session.get(w.url + "/api/v1/events", headers=w.auth()) as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            line = await resp.content.readline()
            assert line.startswith(b"data: {")

        # /metrics: Prometheus' own parser reads it; the counters match the bot's.
        status, _, body = await w.get("/metrics")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        sent = {s.labels["outcome"]: s.value for s in families["bx_orders"].samples}
        assert sent["sent"] >= 3 and sent["filled"] >= 1
        assert families["bx_fills"].samples[0].value >= 3
        for name in ("bx_tick_to_order_seconds", "bx_decision_to_ack_seconds"):
            count = [s for s in families[name].samples if s.name == name + "_count"]
            assert count and count[0].value >= 1, name
        assert {s.labels["stream"] for s in families["bx_stream_last_message_age_seconds"].samples}
        assert "bx_stream_reconnects" in families and "bx_gap_fills" in families
        assert next(s.value for s in families["bx_request_weight_used"].samples) > 0

        # Pause: no new order reaches the exchange while the strategy keeps asking.
        status, res, _ = await w.post("/api/v1/pause")
        assert status == 200 and res["paused"] is True
        await bot.manager.drain(10)
        before = exchange_orders(sim)
        asked = bot.manager.counts["paused"]
        books = bot.loop.counts["book"]
        await wait_until(lambda: bot.manager.counts["paused"] >= asked + 4
                         and bot.loop.counts["book"] >= books + 6, 20,
                         "the strategy to try 4 orders while paused")
        await bot.manager.drain(10)
        assert exchange_orders(sim) == before
        _, st, _ = await w.get("/api/v1/status")
        assert st["paused"] is True
        status, res, _ = await w.post("/api/v1/resume")
        assert res["paused"] is False
        await wait_until(lambda: exchange_orders(sim) > before, 20, "orders again after resume")

        status, res, _ = await w.post("/api/v1/cancel-all")
        assert status == 200 and "cancel" in res["detail"]
        status, res, _ = await w.post("/api/v1/kill")
        assert res["kill_switch"] is True and bot.risk.kill_switch.is_engaged()
        await bot.manager.drain(10)
        killed_at = exchange_orders(sim)
        refused = bot.manager.refusals["kill_switch"]
        await wait_until(lambda: bot.manager.refusals["kill_switch"] >= refused + 4, 20,
                         "kill-switch refusals")
        await bot.manager.drain(10)
        assert exchange_orders(sim) == killed_at
        run_id = bot.run_id

    store = await Store.open(cfg.database.url)
    try:
        actions = await store.operator_actions(run_id=run_id)
    finally:
        await store.close()
    assert [(a["action"], a["source"]) for a in actions] == [
        ("pause", "web"), ("resume", "web"), ("cancel-all", "web"), ("kill", "web")]
    assert all(a["at_ms"] > 0 and a["detail"] for a in actions)
    # ... and `audit` shows them.
    with AuditDB.from_url(cfg.database.url) as db:
        rep = build_report(db, Scope())
    text = render_table(rep)
    assert "OPERATOR ACTIONS (4)" in text
    assert [ln.split()[4:6] for ln in text.split("OPERATOR ACTIONS (4)")[1].splitlines()[3:7]] == [
        ["pause", "web"], ["resume", "web"], ["cancel-all", "web"], ["kill", "web"]]
    assert [a["action"] for a in report_dict(rep)["operator_actions"]] == \
        ["pause", "resume", "cancel-all", "kill"]


async def test_token_file_rate_limit_and_non_loopback_warning(
        sim, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BX_WEB_TOKEN", raising=False)
    caplog.set_level(logging.INFO)
    # 127.0.0.2 is loopback on Linux but not the default address: configured explicitly, it warns.
    cfg = web_config(tmp_path, {"max_auth_failures": 3, "host": "127.0.0.2"})
    token_file = tmp_path / "web-token"
    async with WebBot(sim, cfg, token="") as w:
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        w.token = token_file.read_text().strip()
        assert len(w.token) >= 32
        assert w.url.startswith("http://127.0.0.2:")
        assert str(token_file) in caplog.text and w.token not in caplog.text
        assert "not loopback" in caplog.text
        status, _, _ = await w.get("/api/v1/status")
        assert status == 200
        for _ in range(3):
            status, _, _ = await w.get("/api/v1/status", token="x" * 40)
            assert status == 401
        # The fourth failure within a minute: refused before its token is even looked at.
        status, _, body = await w.get("/api/v1/status")
        assert (status, body) == (429, b"")
        status, _, _ = await w.get("/api/v1/ping", token=None)
        assert status == 200
        page = await w.get("/", token=None)
        assert page[0] == 200 and b"binance-executor" in page[2]
    # The same file serves the next start (a scraper's configured token keeps working).
    assert token_file.read_text().strip() == w.token
