"""A known secret used for real signed traffic never reaches any log file."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from executor.config import load_config
from executor.run.logs import Redactor, setup_logging
from executor.venue.preflight import run_preflight
from executor.venue.profiles import make_client


@pytest.fixture
def exchange(sim):
    """(SimExchange, SimUrls) of the shared ``sim`` fixture (tests/conftest.py)."""
    return sim.exchange, sim.urls


@pytest.mark.parametrize("json_lines", [False, True])
async def test_signed_traffic_at_debug_leaves_no_secret_in_logs(exchange, tmp_path: Path,
                                                                json_lines: bool) -> None:
    sim, urls = exchange
    creds = sim.credentials("HMAC")
    assert creds.api_secret
    cfg = load_config(local=None, overrides={"profile": "live"})
    root_level = logging.getLogger().level
    console = io.StringIO()
    setup = setup_logging(cfg, json=json_lines, level="DEBUG", log_dir=tmp_path / "logs", stream=console,
                          redactor=Redactor(), secrets=[creds])
    try:
        client = make_client(urls.endpoints(), creds)
        client.verbose = True            # python-binance logs every request URL (with signature)
        client.logger.setLevel(logging.DEBUG)
        try:
            sim.clock.skew_ms = 2000     # one failing check, so failures get logged too
            report = await run_preflight(client, cfg)
        finally:
            await client.close_connection()
        log = logging.getLogger("executor.test")
        log.info("report:\n%s", report.render())
        log.info("credentials in use: %s / %r", creds, creds)
        try:
            raise RuntimeError("signing failed for secret " + creds.api_secret)
        except RuntimeError:
            log.exception("unexpected")
        for handler in setup.handlers:
            handler.flush()
    finally:
        setup.close()
        logging.getLogger().setLevel(root_level)
    files = list((tmp_path / "logs").iterdir())
    assert len(files) == 1
    text = files[0].read_text() + console.getvalue()
    assert "signature=***" in text            # the verbose request lines were there, scrubbed
    assert "/sapi/v1/account/apiRestrictions" in text
    assert creds.api_secret not in text
    assert "signing failed for secret ***" in text
