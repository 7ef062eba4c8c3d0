"""Config loading: strict validation naming the key and the file, exit code 2 from the CLI."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from executor.cli import main
from executor.config import ROOT, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "extra.toml"
    path.write_text(text)
    return path


def test_default_config_loads_with_exact_decimals() -> None:
    cfg = load_config(local=None)
    assert cfg.profile == "sim"
    assert {"BTCUSDT", "ETHUSDT"} <= set(cfg.symbols.spot)
    assert cfg.risk.max_position["BTC"] == Decimal("0.05")
    assert isinstance(cfg.risk.price_band_bps, Decimal)
    assert cfg.database.url.startswith("sqlite+aiosqlite:///")


def test_overlay_replaces_only_named_keys(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[risk]\nmax_open_orders = 3\n'), local=None)
    assert cfg.risk.max_open_orders == 3
    assert cfg.risk.max_orders_per_minute == load_config(local=None).risk.max_orders_per_minute


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[risk]\nmax_open_orderz = 3\n', "unknown key 'risk.max_open_orderz'"),
        ('[risk]\nmax_open_orders = "3"\n', "'risk.max_open_orders' must be an integer"),
        ('[risk]\nmax_order_notional = 0.1\n', "'risk.max_order_notional' must be a decimal"),
        ('[risk]\nmax_order_notional = "abc"\n', "not a decimal number"),
        ('profile = "prod"\n', "'profile' must be one of"),
        ('[logging]\njson = "yes"\n', "'logging.json' must be true or false"),
        ('[scheduler]\ndaily_reconnect_s = 90000\n', "scheduler.daily_reconnect_s"),
        ('[symbols]\nspot = []\n', "at least one symbol"),
    ],
)
def test_bad_values_name_key_and_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, local=None)
    assert fragment in str(err.value)
    assert str(path) in str(err.value)


def test_missing_key_is_named(tmp_path: Path) -> None:
    default = tmp_path / "default.toml"
    text = (ROOT / "config" / "default.toml").read_text().replace('url = ""', '# url = ""')
    default.write_text(text)
    with pytest.raises(ConfigError, match=r"missing key 'database.url'"):
        load_config(default=default, local=None)


def test_invalid_toml_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[risk\n"), local=None)


def test_cli_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[risk]\nmax_open_orderz = 3\n')
    assert main(["--config", str(path), "db", "current"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "risk.max_open_orderz" in err[0] and str(path) in err[0]


def test_help_works_at_every_level() -> None:
    for argv in ([], ["sim"], ["audit"], ["db"], ["preflight"], ["run"]):
        out = subprocess.run([sys.executable, "run.py", *argv, "--help"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "usage:" in out.stdout
