"""Every configuration value is checked at start, with one line naming the key and the file,
and every relative path lands in the data folder whatever the working directory."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.config import ROOT, ConfigError, data_path, database_url, load_config
from executor.core.money import is_plain_decimal


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "extra.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, key", [
    ('[risk]\nmax_order_notional = "-5"\n', "risk.max_order_notional"),
    ('[risk]\nmax_order_notional = "0"\n', "risk.max_order_notional"),
    ('[risk]\nmax_open_orders = 0\n', "risk.max_open_orders"),
    ('[risk]\nmax_orders_per_minute = -1\n', "risk.max_orders_per_minute"),
    ('[risk]\nprice_band_bps = "0"\n', "risk.price_band_bps"),
    ('[risk]\nstale_after_s = "-1"\n', "risk.stale_after_s"),
    ('[risk]\nkill_switch_file = " "\n', "risk.kill_switch_file"),
    ('[risk.max_position]\nETH = "0"\n', "risk.max_position.ETH"),
    ('[risk.max_position]\neth = "1"\n', "risk.max_position.eth"),
    ('[orders]\nrequest_timeout_s = "0"\n', "orders.request_timeout_s"),
    ('[orders]\nclient_id_prefix = "too-long-prefix"\n', "orders.client_id_prefix"),
    # (database.url = "" is valid since the per-profile ledger: it means <profile>.db.)
    ('[logging]\ndir = ""\n', "logging.dir"),
    ('[sim]\nseed = -1\n', "sim.seed"),
    ('[sim]\nbook_update_hz = "-1"\n', "sim.book_update_hz"),
    ('[sim]\nmax_connection_age_s = 0\n', "sim.max_connection_age_s"),
    ('[sim.ports]\nspot_rest = 70000\n', "sim.ports.spot_rest"),
    ('[sim.start_prices]\nBTCUSDT = "0"\n', "sim.start_prices.BTCUSDT"),
    ('[sim.balances]\nUSDT = "-1"\n', "sim.balances.USDT"),
    ('data_dir = ""\n', "data_dir"),
    ('[alerts]\ndead_log_interval_s = 0\n', "alerts.dead_log_interval_s"),
    ('[futures.max_position]\nbtc = "1"\n', "futures.max_position.btc"),
    ('[futures]\nmax_gross_notional = "-1"\n', "futures.max_gross_notional"),
    ('[futures]\nmargin_type = "portfolio"\n', "futures.margin_type"),
    ('[web]\nport = 65536\n', "web.port"),
    ('[replay]\ntaker_fee = "-0.001"\n', "replay.taker_fee"),
    ('[logging.levels]\naiosqlite = "LOUD"\n', "logging.levels.aiosqlite"),
    ('[symbols]\nspot = ["btcusdt"]\n', "symbols.spot"),
])
def test_out_of_range_values_name_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, local=None)
    message = str(err.value)
    assert f"'{key}'" in message and str(path) in message and "\n" not in message


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789._-+eE ,", min_size=1, max_size=12))
def test_decimals_are_strict(text: str) -> None:
    """A money value is plain decimal notation or refused: no "5_00", "1e3", " 5"."""
    over = {"risk": {"max_order_notional": text}}
    if is_plain_decimal(text) and Decimal(text) > 0:
        assert load_config(local=None, overrides=over).risk.max_order_notional == Decimal(text)
    else:
        with pytest.raises(ConfigError, match=r"risk\.max_order_notional"):
            load_config(local=None, overrides=over)


def test_relative_paths_are_inside_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    cfg = load_config(local=None)
    data = ROOT / "data"
    assert cfg.data_dir == str(data)
    assert cfg.risk.kill_switch_file == str(data / "KILL")
    assert cfg.logging.dir == str(data / "logs")
    # The default ledger is per profile now (``url = ""`` -> ``<profile>.db``; profile sim).
    assert cfg.database.url == f"sqlite+aiosqlite:///{data / 'sim.db'}"
    assert data_path(cfg, "plots") == data / "plots" and data_path(cfg, "/x/y") == Path("/x/y")
    moved = load_config(local=None, overrides={"data_dir": str(tmp_path / "d"),
                                               "sim": {"market_file": "tape.jsonl"}})
    assert moved.risk.kill_switch_file == str(tmp_path / "d" / "KILL")
    assert moved.sim.market_file == str(tmp_path / "d" / "tape.jsonl")
    assert load_config(local=None, overrides={"data_dir": "elsewhere"}).data_dir == str(ROOT / "elsewhere")


def test_database_url_takes_plain_paths_and_urls(tmp_path: Path) -> None:
    assert database_url("l.db", tmp_path) == f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    assert database_url("/srv/l.db", tmp_path) == "sqlite+aiosqlite:////srv/l.db"
    assert database_url("sqlite+aiosqlite:///l.db", tmp_path) == f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    assert database_url("sqlite+aiosqlite:////srv/l.db?synchronous=full", tmp_path) == \
        "sqlite+aiosqlite:////srv/l.db?synchronous=full"
    assert database_url("sqlite+aiosqlite:///l.db?synchronous=full", tmp_path) == \
        f"sqlite+aiosqlite:///{tmp_path / 'l.db'}?synchronous=full"
    assert database_url("postgresql+asyncpg://u@h/db", tmp_path) == "postgresql+asyncpg://u@h/db"


@pytest.mark.parametrize("text, line", [
    ('[risk]\nmax_order_notional = 5.0\n', "'risk.max_order_notional' must be a decimal written as a string"),
    ('[risk]\nmax_open_orders = true\n', "'risk.max_open_orders' must be an integer, got True"),
    ('[risk]\nmax_open_orders = 0\n', "'risk.max_open_orders' must be greater than 0, got 0"),
    ('[web]\nenabled = 1\n', "'web.enabled' must be true or false, got 1"),
    ('[sim.ports]\nspot_rest = 70000\n', "'sim.ports.spot_rest' must be 0..65535 (0: a free port)"),
    ('[risk.limits]\nx = 1\n', "unknown key 'risk.limits'"),
    ('[risk]\nmax_position = "1"\n', "'risk.max_position' must be a table"),
    ('[futures]\nleverage = 4\nmax_leverage = 3\n', "'futures.leverage' must be 1..futures.max_leverage (3)"),
])
def test_schema_errors_are_one_line_in_the_house_phrasing(tmp_path: Path, text: str, line: str) -> None:
    """The schema is pydantic's; the message stays ours: ``<file>: '<key>' <what is wrong>``,
    with no pydantic text, URL or second line."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, local=None)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and line in message
    assert "\n" not in message and "pydantic" not in message and "Input should" not in message


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_ports_in_range_or_refused(port: int) -> None:
    over = {"sim": {"ports": {"spot_rest": port}}}
    if 0 <= port <= 65535:
        assert load_config(local=None, overrides=over).sim.ports.spot_rest == port
    else:
        with pytest.raises(ConfigError, match=r"'sim\.ports\.spot_rest' must be 0\.\.65535"):
            load_config(local=None, overrides=over)
