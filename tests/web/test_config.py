"""``--web HOST:PORT``, the ``[web]`` and ``[alerts]`` checks: one clear line, exit code 2."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from executor.alerts import channels_from_config
from executor.cli import _overrides, build_parser, main
from executor.config import AlertsConfig, ConfigError, load_config
from executor.exchange.credentials import Credentials
from executor.run.app import Bot
from executor.venue.endpoints import Endpoints
from executor.venue.profiles import Venue
from tests.web.harness import TOKEN, web_config


def cfg_for(*argv: str):  # type: ignore[no-untyped-def]
    return load_config(local=None, overrides=_overrides(build_parser().parse_args(list(argv))))


def test_web_is_off_by_default_and_on_with_the_flag() -> None:
    default = cfg_for()
    assert (default.web.enabled, default.web.host) == (False, "127.0.0.1")
    on = cfg_for("--web", "127.0.0.1:9001")
    assert (on.web.enabled, on.web.host, on.web.port) == (True, "127.0.0.1", 9001)
    assert cfg_for("run", "--web", "[::1]:0").web.host == "::1"


@pytest.mark.parametrize("value", ["8080", "host:", ":80", "h:99999", "h:x"])
def test_bad_web_address_is_one_line_and_exit_2(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    # --duration must be > 0 since the config value checks; 1 is never reached (bad --web exits first).
    assert main(["--web", value, "--duration", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("config error: --web: expected HOST:PORT")


def test_web_and_alert_values_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"web\.port"):
        load_config(local=None, overrides={"web": {"port": 70000}})
    with pytest.raises(ConfigError, match=r"web\.update_ms"):
        load_config(local=None, overrides={"web": {"update_ms": 10}})
    with pytest.raises(ConfigError, match=r"unknown key 'alerts\.telegramm'"):
        load_config(local=None, overrides={"alerts": {"telegramm": True}})


def test_alert_channels_need_their_secrets_and_name_only_the_variable() -> None:
    assert channels_from_config(AlertsConfig(), env={}) == []
    with pytest.raises(ConfigError, match="BX_ALERT_WEBHOOK_URL"):
        channels_from_config(AlertsConfig(webhook=True), env={})
    with pytest.raises(ConfigError, match="BX_TELEGRAM_BOT_TOKEN and BX_TELEGRAM_CHAT_ID") as err:
        channels_from_config(AlertsConfig(telegram=True), env={"BX_TELEGRAM_BOT_TOKEN": "sekrit-token-1"})
    assert "sekrit" not in str(err.value)
    env = {"BX_ALERT_WEBHOOK_URL": "https://hooks.example/abc", "BX_TELEGRAM_BOT_TOKEN": "1:t",
           "BX_TELEGRAM_CHAT_ID": "42"}
    both = SimpleNamespace(webhook=True, telegram=True, telegram_base_url="http://127.0.0.1:1")
    names = [c.name for c in channels_from_config(both, env)]
    assert names == ["webhook", "telegram"]


async def test_a_web_port_in_use_stops_the_bot_before_it_connects(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BX_WEB_TOKEN", TOKEN)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = web_config(tmp_path, {"port": port})
        ep = Endpoints("sim", "http://127.0.0.1:9/api", "ws://127.0.0.1:9/", "ws://127.0.0.1:9/ws-api/v3",
                       "http://127.0.0.1:9/fapi", "ws://127.0.0.1:9/")
        bot = Bot(cfg, Venue("sim", ep, ep), Credentials(api_key="k", api_secret="s"))
        with pytest.raises(ConfigError, match=f"web: cannot listen on 127.0.0.1:{port}"):
            await bot.start()
    assert not (tmp_path / "ledger.db").exists()  # nothing was opened, nothing connected
