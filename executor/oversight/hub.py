"""What watches and steers a running bot from outside: live figures, controls, alerts, web.

``Oversight(bot)`` is built at the start of ``Bot.start`` (so a missing alert secret or an
unusable token file stops the bot before it trades) and ``start()``-ed once the bot runs:

* ``operator`` (``executor.oversight.control.Operator``): pause, resume, cancel-all, kill;
* ``watch`` (``executor.oversight.watch.LedgerWatch``): PnL per period, positions, balances, equity,
  fed from the ledger (the terminal status, the web server and the alerts show them);
* ``alerter`` (``executor.alerts``): fills (optional), operator actions, the kill switch
  (also when its file appears from outside; recorded as an operator action from
  ``kill_file``), a market stream silent for ``[alerts] stale_after_s``, a reconciliation
  that found differences or failed, an unclean end of this run or of the one before, and a
  daily summary at 00:00 UTC;
* ``web`` (``executor.web.server.WebServer``) when ``[web] enabled``.

It only reads the bot's public parts; the trading path never waits for any of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from decimal import Decimal
from typing import Any

from executor.alerts import Alerter
from executor.alerts.dispatcher import channels_from_config, settings_from_config
from executor.oversight.control import Operator
from executor.oversight.metrics import MetricsSample

__all__ = ["Oversight"]

log = logging.getLogger(__name__)


def _env() -> dict[str, str]:
    from executor.venue.keys import default_env_files, read_env_files

    return {**read_env_files(default_env_files()), **os.environ}


class Oversight:
    def __init__(self, bot: Any) -> None:
        self.bot = bot
        cfg = bot.cfg
        # .env is read only when something here needs a secret from it.
        needed = cfg.web.enabled or cfg.alerts.webhook or cfg.alerts.telegram
        env = _env() if needed else dict(os.environ)
        self.alerter = Alerter(channels_from_config(cfg.alerts, env), settings_from_config(cfg.alerts))
        self.token: str | None = None
        self.token_file: Any = None
        if cfg.web.enabled:
            from executor.web.auth import load_token

            self.token, self.token_file = load_token(cfg.web.token_file, env)
        self.operator: Operator | None = None
        self.watch: Any = None
        self.web: Any = None
        self.started_ms = time.time_ns() // 1_000_000
        self._tasks: list[asyncio.Task[None]] = []
        self._stale: set[str] = set()
        self._kill_known = False

    # -- lifecycle

    async def start(self) -> None:
        bot, cfg = self.bot, self.bot.cfg
        self.operator = Operator(store=bot.store, manager=bot.manager, risk=bot.risk, notify=self._on_action)
        self._kill_known = self.operator.kill_switch_engaged
        self.alerter.start()
        # The terminal status, the web and the alerts all show the watch's figures.
        from executor.oversight.watch import LedgerWatch

        pairs = {s: (r.base_asset, r.quote_asset) for s, r in bot.rules.items()}
        self.watch = LedgerWatch(bot.store, pairs, bot.run_id, self.marks)
        await self.watch.start()
        self.watch.on_fill.append(self._on_fill)
        self.watch.on_reconciliation.append(self._on_reconciliation)
        # The monitor also records a kill switch engaged from its file as an operator action.
        self._tasks.append(asyncio.create_task(self._monitor(), name="oversight-monitor"))
        if self.alerter.enabled:
            if cfg.alerts.daily_summary:
                self._tasks.append(asyncio.create_task(self._daily(), name="oversight-daily"))
            await self._check_previous_run()
        if self.web is not None:
            from executor.web.api import BotSource

            self.web.attach(BotSource(run_id=bot.run_id, profile=cfg.profile, venue=bot.venue.describe(),
                                      symbols=list(bot.symbols), started_ms=self.started_ms, store=bot.store,
                                      watch=self.watch, operator=self.operator, streams=self.streams,
                                      jobs=self.jobs, metrics=self.metrics_sample))
            where = f"in {self.token_file.resolve()}" if self.token_file is not None else "from BX_WEB_TOKEN"
            log.info("web dashboard at %s/ (bearer token %s; /metrics for Prometheus)", self.web.url, where)

    async def bind(self) -> None:
        """Bind the web server's port (``[web]`` on) before the bot connects anywhere: a port in
        use is a ``ConfigError`` then, not a failure after trading started."""
        if not self.bot.cfg.web.enabled:
            return
        from executor.web.server import WebServer

        web_cfg = self.bot.cfg.web
        assert self.token is not None
        self.web = WebServer(self.token, host=web_cfg.host, port=web_cfg.port,
                             max_auth_failures=web_cfg.max_auth_failures, update_ms=web_cfg.update_ms)
        await self.web.start()

    async def stop(self, ended: str = "clean", reason: str = "") -> None:
        if ended != "clean" and self.alerter.enabled:
            text = f"run {self.bot.run_id} ended {ended}: {reason or 'no reason'}"
            self.alerter.send("unclean_shutdown", text, run_id=self.bot.run_id, ended=ended)
        if self.web is not None:
            with contextlib.suppress(Exception):
                await self.web.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.watch is not None:
            await self.watch.stop()
        await self.alerter.close(3.0)

    # -- what the web and the metrics read

    def marks(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for symbol in self.bot.symbols:
            st = self.bot.market.get(symbol)
            if st is not None and st.mark is not None:
                out[symbol] = st.mark
        return out

    def streams(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        out: list[dict[str, Any]] = []
        for stream in self.bot.streams:
            for h in stream.health():
                age = None if h.last_message_mono is None else round(now - h.last_message_mono, 2)
                out.append({"name": h.name, "kind": "market", "state": h.state, "reconnects": h.reconnects,
                            "age_s": age, "frames": h.frames})
        for stream in [*self.bot.user_streams, *self.bot.futures_streams]:
            h = stream.health
            out.append({"name": h.name, "kind": "user", "state": h.state, "reconnects": h.reconnects,
                        "age_s": None if h.last_event_mono is None else round(now - h.last_event_mono, 2),
                        "events": h.events, "gap_fills": h.gap_fills})
        return out

    def jobs(self) -> list[dict[str, Any]]:
        sched = self.bot.scheduler
        if sched is None:
            return []
        return [{"name": s.name, "runs": s.runs, "ok": s.ok, "errors": s.errors, "running": s.running,
                 "last_start_ms": None if s.last_start is None else int(s.last_start * 1000)}
                for s in sched.stats.values()]

    def metrics_sample(self) -> MetricsSample:
        from executor.exchange.ratelimit import WEIGHT

        bot = self.bot
        counts = bot.manager.counts if bot.manager is not None else {}
        stats = bot.tracker.stats if bot.tracker is not None else None
        orders = {"sent": counts.get("sent", 0), "accepted": counts.get("accepted", 0),
                  "rejected": counts.get("rejected", 0), "unknown": counts.get("unknown", 0),
                  "rate_limited": counts.get("rate_limited", 0), "paused": counts.get("paused", 0),
                  "filled": stats.by_final_status.get("FILLED", 0) if stats else 0,
                  "refused": sum(bot.manager.refusals.values()) if bot.manager is not None else 0}
        streams = self.streams()
        used: dict[str, int] = {}
        limit: dict[str, int] = {}
        budget = getattr(bot.gateway, "budget", None)
        if budget is not None:
            for key, v in budget.snapshot().items():
                kind, _, window = key.partition("/")
                if kind == WEIGHT:
                    used[window] = v["used"] + v["in_flight"]
                    limit[window] = v["limit"]
        return MetricsSample(
            orders=orders, fills=stats.fills if stats else 0,
            stream_reconnects={s["name"]: s["reconnects"] for s in streams},
            stream_age_s={s["name"]: s["age_s"] for s in streams if s["age_s"] is not None},
            gap_fills={s["name"]: s["gap_fills"] for s in streams if "gap_fills" in s},
            weight_used=used, weight_limit=limit,
            paused=self.operator.paused if self.operator else False,
            kill_switch=self.operator.kill_switch_engaged if self.operator else False)

    # -- alerts

    def _on_action(self, action: str, text: str) -> None:
        if action == "kill":
            self._kill_known = True
        self.alerter.send(action, text, run_id=self.bot.run_id)

    def _on_fill(self, fill: Any) -> None:
        if self.bot.cfg.alerts.fills:
            side = fill.side.value if fill.side is not None else "?"
            self.alerter.send("fill", f"fill {fill.symbol} {side} {fill.qty} @ {fill.price} "
                              f"(fee {fill.commission} {fill.commission_asset or ''})".rstrip(),
                              symbol=fill.symbol, trade_id=fill.trade_id, side=side, qty=str(fill.qty),
                              price=str(fill.price))

    def _on_reconciliation(self, row: dict[str, Any]) -> None:
        if row.get("found") or row.get("outcome") == "error":
            what = (f"found {row.get('found')} difference(s)" if row.get("found")
                    else f"failed: {row.get('error')}")
            self.alerter.send("reconciliation", f"reconciliation #{row['id']} ({row['reason']}) {what}",
                              id=row["id"], reason=row["reason"], found=row.get("found"),
                              outcome=row.get("outcome"))

    async def _check_previous_run(self) -> None:
        try:
            runs = await self.bot.store.runs(2)
        except Exception as exc:  # noqa: BLE001 - best effort: the alert about the previous run is optional
            log.info("oversight: could not read the previous run (%s)", type(exc).__name__)
            return
        if len(runs) > 1 and runs[1].get("ended") in ("abandoned", "error", "killed"):
            prev = runs[1]
            self.alerter.send("unclean_shutdown", f"previous run {prev['id']} ended {prev['ended']}: "
                              f"{prev.get('end_reason') or 'no reason recorded'}", run_id=prev["id"],
                              ended=prev["ended"])

    async def check_once(self) -> None:
        """One round of the monitor: stale market streams and the kill switch file."""
        limit = float(self.bot.cfg.alerts.stale_after_s)
        for s in self.streams():
            if s["kind"] != "market" or s["age_s"] is None:
                continue
            name = s["name"]
            if s["age_s"] > limit and name not in self._stale:
                self._stale.add(name)
                self.alerter.send("stream_stale", f"stream {name} silent for {s['age_s']:.0f} s "
                                  f"(limit {limit:g} s)", stream=name, age_s=s["age_s"])
            elif s["age_s"] <= limit and name in self._stale:
                self._stale.discard(name)
                self.alerter.send("stream_recovered", f"stream {name} is receiving again", stream=name)
        assert self.operator is not None
        engaged = self.operator.kill_switch_engaged
        if engaged and self.operator.killed:
            self._kill_known = True  # engaged through the controls: announced and recorded there
        if engaged and not self._kill_known:
            self._kill_known = True
            reason = self.bot.risk.kill_switch.reason()
            self.alerter.send("kill", f"kill switch engaged from its file ({reason or 'no reason given'})",
                              run_id=self.bot.run_id)
            with contextlib.suppress(Exception):
                await self.bot.store.add_operator_action("kill", "kill_file", reason or None)
        elif not engaged and self._kill_known:
            self._kill_known = False
            self.operator.killed = False
            self.alerter.send("kill_released", "kill switch released (its file is gone)",
                              run_id=self.bot.run_id)

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.check_once()
            except Exception:
                log.exception("oversight monitor round failed")

    async def daily_summary(self, day_start_ms: int, day_end_ms: int) -> str:
        """Send the summary of [day_start_ms, day_end_ms); returns its text."""
        from executor.figures import pnl

        fills = await self.bot.store.fills(since_ms=day_start_ms, until_ms=day_end_ms)
        pairs = {s: (r.base_asset, r.quote_asset) for s, r in self.bot.rules.items()}
        fig = pnl(fills, self.marks(), pairs, period="day", since_ms=day_start_ms)
        day = dt.datetime.fromtimestamp(day_start_ms / 1000, dt.UTC).date().isoformat()
        parts = [f"{q}: realized {t['realized']:.4f}, unrealized {t['unrealized']:.4f}, "
                 f"fees {t['fees']:.4f}" for q, t in fig.totals.items()] or ["no fills"]
        text = f"daily summary {day} (run {self.bot.run_id}): {fig.fills} fill(s); " + "; ".join(parts)
        self.alerter.send("daily_summary", text, day=day, fills=fig.fills,
                          totals={q: {k: str(v) for k, v in t.items()} for q, t in fig.totals.items()})
        return text

    async def _daily(self) -> None:
        while True:
            now = dt.datetime.now(dt.UTC)
            midnight = dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
            await asyncio.sleep(max((midnight - now).total_seconds(), 1.0))
            end = int(midnight.timestamp() * 1000)
            try:
                await self.daily_summary(end - 86_400_000, end)
            except Exception:
                log.exception("daily summary failed")
