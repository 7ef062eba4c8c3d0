"""Futures keys: testnet and demo futures hosts take their own keys (``BX_<PROFILE>_FUTURES_*``).

With the futures user stream on, a testnet/demo run refuses to start without them (the
error names the variables) and never sends the spot key to the futures host; with them,
the futures listenKey/account calls use them and spot keeps its own. Live and sim are
unchanged. None of the secrets reaches a log record.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)

import executor.run.app as app
import executor.venue.keys as keys
from executor.config import Config, load_config
from executor.exchange.credentials import Credentials
from executor.run.app import Bot, BotOptions, futures_keys_needed, run_bot
from executor.run.logs import REDACTOR
from executor.run.shutdown import Shutdown
from executor.venue.endpoints import TESTNET
from executor.venue.keys import KeysError, load_credentials, load_futures_credentials
from executor.venue.profiles import Venue
from tests.conftest import SimHandle

FUTURES_SUFFIXES = ("API_KEY", "API_SECRET", "PRIVATE_KEY_FILE", "PRIVATE_KEY_PASS")


class SpyEnv(dict[str, str]):
    """An environment mapping that records every name read."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.read: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.append(key)
        return super().get(key, default)


def cfg_for(tmp_path: Path, profile: str, user_stream: bool = True) -> Config:
    return load_config(local=None, overrides={
        "profile": profile,
        "futures": {"user_stream": user_stream},
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"},
        "logging": {"dir": str(tmp_path / "logs")},
        "risk": {"kill_switch_file": str(tmp_path / "KILL")},
    })


# ---------------------------------------------------------------------- loading


@pytest.mark.parametrize("profile", ["testnet", "demo"])
def test_missing_futures_keys_name_every_variable(profile: str, tmp_path: Path) -> None:
    spot_only = {f"BX_{profile.upper()}_API_KEY": "spot-key",
                 f"BX_{profile.upper()}_API_SECRET": "spot-secret-value"}
    with pytest.raises(KeysError) as err:
        load_futures_credentials(profile, environ=spot_only, env_files=[tmp_path / ".env"])
    text = str(err.value)
    for suffix in FUTURES_SUFFIXES:
        assert f"BX_{profile.upper()}_FUTURES_{suffix}" in text
    assert "issues its own keys" in text and "user_stream" in text
    assert "spot-secret-value" not in text


@pytest.mark.parametrize("profile", ["testnet", "demo"])
def test_futures_keys_come_only_from_the_futures_variables(profile: str, tmp_path: Path) -> None:
    p = f"BX_{profile.upper()}_"
    env = SpyEnv({p + "API_KEY": "spot-key", p + "API_SECRET": "spot-secret",
                  p + "FUTURES_API_KEY": "fut-key", p + "FUTURES_API_SECRET": "fut-secret"})
    futures = load_futures_credentials(profile, environ=env, env_files=[])
    assert futures is not None and (futures.api_key, futures.api_secret) == ("fut-key", "fut-secret")
    assert env.read and all(n.startswith(p + "FUTURES_") for n in env.read), env.read
    env.read.clear()
    spot = load_credentials(profile, environ=env, env_files=[])
    assert spot is not None and (spot.api_key, spot.api_secret) == ("spot-key", "spot-secret")
    assert not any("FUTURES" in n for n in env.read), env.read


def test_futures_keys_from_dotenv_and_both_kinds_refused(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("BX_TESTNET_FUTURES_API_KEY=fk\nBX_TESTNET_FUTURES_API_SECRET=fs\n")
    os.chmod(dotenv, 0o600)
    creds = load_futures_credentials("testnet", environ={}, env_files=[dotenv])
    assert creds is not None and creds.api_secret == "fs"
    with pytest.raises(KeysError, match="BX_TESTNET_FUTURES_API_SECRET and BX_TESTNET_FUTURES_PRIVATE"):
        load_futures_credentials("testnet", environ={"BX_TESTNET_FUTURES_PRIVATE_KEY_FILE": "/x.pem"},
                                 env_files=[dotenv])


@pytest.mark.parametrize("profile", ["live", "sim"])
def test_live_and_sim_read_no_futures_variables(profile: str) -> None:
    env = SpyEnv({"BX_LIVE_FUTURES_API_KEY": "x", "BX_LIVE_FUTURES_API_SECRET": "y"})
    assert load_futures_credentials(profile, environ=env, env_files=[]) is None
    assert env.read == []


def test_keys_needed_only_for_testnet_and_demo_with_the_futures_stream(tmp_path: Path) -> None:
    on, off = BotOptions(), BotOptions(user_stream=False)
    assert futures_keys_needed(cfg_for(tmp_path, "testnet"), on)
    assert futures_keys_needed(cfg_for(tmp_path, "demo"), on)
    assert not futures_keys_needed(cfg_for(tmp_path, "testnet", user_stream=False), on)
    assert not futures_keys_needed(cfg_for(tmp_path, "testnet"), off)
    assert not futures_keys_needed(cfg_for(tmp_path, "testnet"), BotOptions(futures_user_stream=False))
    assert not futures_keys_needed(cfg_for(tmp_path, "live"), on)
    assert not futures_keys_needed(cfg_for(tmp_path, "sim"), on)


# ---------------------------------------------------------------------- the bot


async def test_bot_refuses_to_start_without_futures_keys(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, "testnet")
    spot = Credentials(api_key="spot-key", api_secret="spot-secret")
    bot = Bot(cfg, Venue("testnet", TESTNET, TESTNET), spot)
    with pytest.raises(KeysError) as err:
        await bot.start()
    assert "BX_TESTNET_FUTURES_API_KEY" in str(err.value)
    # Refused before anything opened or connected.
    assert bot.store is None and bot.gateway is None


async def test_run_bot_refuses_testnet_futures_without_futures_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "default_env_files", lambda: [])
    for name in list(os.environ):
        if name.startswith(("BX_TESTNET_", "BX_DEMO_", "BX_LIVE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BX_TESTNET_API_KEY", "spot-key")
    monkeypatch.setenv("BX_TESTNET_API_SECRET", "spot-secret")
    with pytest.raises(KeysError) as err:
        await run_bot(cfg_for(tmp_path, "testnet"), argparse.Namespace(duration=0.1),
                      options=BotOptions(status_out=io.StringIO()), install_signals=False)
    for suffix in FUTURES_SUFFIXES:
        assert f"BX_TESTNET_FUTURES_{suffix}" in str(err.value)
    assert not (tmp_path / "ledger.db").exists()


@pytest.mark.parametrize("profile", ["live", "sim"])
def test_live_and_sim_futures_use_the_order_client(profile: str, tmp_path: Path) -> None:
    bot = Bot(cfg_for(tmp_path, profile), Venue(profile, *([None] * 2)),  # type: ignore[arg-type]
              Credentials(api_key="k", api_secret="s"))
    order_client = object()
    bot.gateway = SimpleNamespace(client=order_client)
    assert bot._make_futures_client() is order_client


def _encrypted_pem(creds: Credentials, passphrase: str) -> str:
    assert creds.private_key_pem
    key = load_pem_private_key(creds.private_key_pem.encode(), None)
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                             BestAvailableEncryption(passphrase.encode())).decode()


async def test_testnet_run_routes_futures_keys_and_logs_no_secret(
        sim: SimHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """``run_bot`` on profile testnet (its venue swapped for the embedded exchange): spot
    signs with the HMAC key, the futures listenKey and account calls use the futures
    Ed25519 key from ``BX_TESTNET_FUTURES_*`` (an encrypted PEM file)."""
    spot, futures = sim.creds, sim.ed25519_creds
    passphrase = "futures-pass-phrase-7731"
    pem_path = tmp_path / "futures.pem"
    pem_path.write_text(_encrypted_pem(futures, passphrase))
    os.chmod(pem_path, 0o600)
    monkeypatch.setattr(keys, "default_env_files", lambda: [])
    for name in list(os.environ):
        if name.startswith(("BX_TESTNET_", "BX_DEMO_", "BX_LIVE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BX_TESTNET_API_KEY", spot.api_key)
    monkeypatch.setenv("BX_TESTNET_API_SECRET", spot.api_secret or "")
    monkeypatch.setenv("BX_TESTNET_FUTURES_API_KEY", futures.api_key)
    monkeypatch.setenv("BX_TESTNET_FUTURES_PRIVATE_KEY_FILE", str(pem_path))
    monkeypatch.setenv("BX_TESTNET_FUTURES_PRIVATE_KEY_PASS", passphrase)
    import executor.venue.profiles as profiles

    monkeypatch.setattr(profiles, "venue_for", lambda cfg: Venue("testnet", sim.endpoints, sim.endpoints))
    bots: list[Bot] = []

    class Recording(Bot):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            bots.append(self)

    monkeypatch.setattr(app, "Bot", Recording)
    caplog.set_level(logging.DEBUG)
    cfg = cfg_for(tmp_path, "testnet")
    code = await run_bot(cfg, argparse.Namespace(duration=0.2), install_signals=False, shutdown=Shutdown(),
                         options=BotOptions(status_out=io.StringIO(), status_tty=False, scheduler=False,
                                            ready_timeout_s=10.0))
    assert code == 0
    [bot] = bots
    assert spot.api_key == bot.gateway._client.API_KEY
    assert bot.futures_client is not bot.gateway._client
    assert futures.api_key == bot.futures_client.API_KEY
    [stream] = bot.futures_streams
    assert stream.keys._client is bot.futures_client and stream.keys.calls >= 1
    assert bot.futures_recon is not None and bot.futures_recon.client is bot.futures_client
    # The futures account was read and signed with the futures key (start-up and shutdown).
    assert bot.futures_recon.snapshots >= 1
    # Every secret is known to the redaction filter, and none was ever logged.
    loaded = bot.futures_credentials
    assert loaded is not None and loaded.private_key_pass == passphrase and loaded.private_key_pem
    pem_lines = [ln for ln in loaded.private_key_pem.splitlines() if not ln.startswith("-----")]
    assert REDACTOR.redact(f"x {passphrase} {spot.api_secret} {loaded.private_key_pem}") == "x *** *** ***"
    file_lines = [ln for ln in pem_path.read_text().splitlines() if not ln.startswith("-----")]
    text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for secret in (passphrase, spot.api_secret or "", *pem_lines, *file_lines):
        assert secret not in text
